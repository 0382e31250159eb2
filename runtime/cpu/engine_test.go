package cpu_test

import (
	"runtime"
	"testing"

	"github.com/gemmac/gemmac/codegen"
	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/cpu"
)

// compile builds the checkpoint's kernels for this machine and loads them.
func compile(t *testing.T, ckpt *frontend.Checkpoint, opts cpucodegen.Options) (*cpucodegen.Compiled, *cpu.Kernels) {
	t.Helper()
	c, err := cpucodegen.Build(ckpt.Config, ckpt.WeightDTypes(), opts)
	if err != nil {
		t.Fatal(err)
	}
	cache, _ := cpucodegen.CacheDir()
	so, err := c.SharedObject(cache)
	if err != nil {
		t.Fatal(err)
	}
	k, err := cpu.LoadKernels(so, c.Artifact.Kernels)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// openTiny opens the tiny test model, closed when the test ends; it skips
// the test without LLVM 14 or the test data.
func openTiny(t *testing.T) *frontend.Checkpoint {
	t.Helper()
	if _, err := codegen.FindToolchain(); err != nil {
		t.Skipf("no LLVM 14: %v", err)
	}
	ckpt, err := frontend.Open("../../../shared/testdata/models/tiny")
	if err != nil {
		t.Skipf("no test model: %v", err)
	}
	t.Cleanup(func() { ckpt.Close() })
	return ckpt
}

// TestThreadsAtMostCPUs checks that the default pool has no more workers
// than CPUs when GOMAXPROCS is set higher (its workers spin while they wait:
// one too many slows every call), and follows a lower GOMAXPROCS.
func TestThreadsAtMostCPUs(t *testing.T) {
	ckpt := openTiny(t)
	c, k := compile(t, ckpt, cpucodegen.Options{Target: codegen.HostTarget(), Context: 32})
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{runtime.NumCPU() + 3, 1} {
		runtime.GOMAXPROCS(procs)
		e, err := cpu.New(c.Artifact, k, ckpt, cpu.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if want := min(procs, runtime.NumCPU()); e.Threads() != want {
			t.Errorf("GOMAXPROCS %d on %d CPUs: %d threads, want %d", procs, runtime.NumCPU(), e.Threads(), want)
		}
		e.Close()
	}
}

// TestRunnerMatchesPerCall checks that a program run in one native call
// (the runner) gives bit-identical logits to the same calls made one by one
// from Go, and to the profiled engine (which times each call from Go), on
// one thread and on several, for prefill and decode past the sliding window.
func TestRunnerMatchesPerCall(t *testing.T) {
	ckpt := openTiny(t)
	const context = 48
	c, k := compile(t, ckpt, cpucodegen.Options{Target: codegen.HostTarget(), Context: context})
	tokens := make([]int32, context)
	for i := range tokens {
		tokens[i] = int32(1 + i*37%(ckpt.Config.VocabSize-1))
	}
	const prompt = 20
	// run prefills the prompt, then decodes the rest one token at a time,
	// and returns every logit.
	run := func(opts cpu.Options, profile bool) []float32 {
		e, err := cpu.New(c.Artifact, k, ckpt, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		if profile {
			e.EnableProfile()
		}
		st, err := e.NewState()
		if err != nil {
			t.Fatal(err)
		}
		out, err := st.Forward(tokens[:prompt], 0, true)
		if err != nil {
			t.Fatal(err)
		}
		for pos := prompt; pos < context; pos++ {
			logits, err := st.Forward(tokens[pos:pos+1], pos, false)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, logits...)
		}
		return out
	}
	for _, threads := range []int{1, 2, 3} {
		want := run(cpu.Options{Threads: threads, PerCall: true}, false)
		for name, got := range map[string][]float32{
			"runner":   run(cpu.Options{Threads: threads}, false),
			"profiled": run(cpu.Options{Threads: threads}, true),
		} {
			if len(got) != len(want) {
				t.Fatalf("%d threads, %s: %d logits, per call %d", threads, name, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%d threads, %s: logit %d = %v, per call %v", threads, name, i, got[i], want[i])
				}
			}
		}
	}
}
