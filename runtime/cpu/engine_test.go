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

// TestThreadsAtMostCPUs checks that the default pool has no more workers
// than CPUs when GOMAXPROCS is set higher (its workers spin while they wait:
// one too many slows every call), and follows a lower GOMAXPROCS.
func TestThreadsAtMostCPUs(t *testing.T) {
	if _, err := codegen.FindToolchain(); err != nil {
		t.Skipf("no LLVM 14: %v", err)
	}
	ckpt, err := frontend.Open("../../../shared/testdata/models/tiny")
	if err != nil {
		t.Skipf("no test model: %v", err)
	}
	defer ckpt.Close()
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
