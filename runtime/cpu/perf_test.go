package cpu_test

import (
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/gemmac/gemmac/codegen"
	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/cpu"
)

// TestPerfModel times prefill and decode of a real checkpoint
// (GEMMAC_PERF_MODEL=dir; GEMMAC_PERF_THREADS, GEMMAC_PERF_REPS,
// GEMMAC_PERF_PROFILE=1 for per-kernel times, GEMMAC_PERF_PERCALL=1 for
// kernel calls made from Go). It is skipped otherwise.
func TestPerfModel(t *testing.T) {
	dir := os.Getenv("GEMMAC_PERF_MODEL")
	if dir == "" {
		t.Skip("GEMMAC_PERF_MODEL not set")
	}
	threads, _ := strconv.Atoi(os.Getenv("GEMMAC_PERF_THREADS"))
	reps, _ := strconv.Atoi(os.Getenv("GEMMAC_PERF_REPS"))
	reps = max(reps, 1)
	chunk, _ := strconv.Atoi(os.Getenv("GEMMAC_PERF_CHUNK"))
	ckpt, err := frontend.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const prompt, gen = 128, 16
	c, k := compile(t, ckpt, cpucodegen.Options{Target: codegen.HostTarget(), Context: prompt + gen, Chunk: chunk})
	e, err := cpu.New(c.Artifact, k, ckpt, cpu.Options{Threads: threads, GoWorkers: os.Getenv("GEMMAC_PERF_GOPOOL") != "", PerCall: os.Getenv("GEMMAC_PERF_PERCALL") != ""})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if os.Getenv("GEMMAC_PERF_PROFILE") != "" {
		e.EnableProfile()
	}
	st, err := e.NewState()
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]int32, prompt)
	for i := range toks {
		toks[i] = int32(3 + i*7919%(ckpt.Config.VocabSize-3))
	}
	var pre, dec []float64
	for r := 0; r < reps; r++ {
		t0 := time.Now()
		if _, err := st.Forward(toks, 0, false); err != nil {
			t.Fatal(err)
		}
		pre = append(pre, float64(prompt)/time.Since(t0).Seconds())
		for i := 0; i < gen; i++ {
			t0 := time.Now()
			if _, err := st.Forward(toks[i:i+1], prompt+i, false); err != nil {
				t.Fatal(err)
			}
			dec = append(dec, 1/time.Since(t0).Seconds())
		}
	}
	med := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	t.Logf("gopool=%q threads %d: prefill tok/s median %.1f %v", os.Getenv("GEMMAC_PERF_GOPOOL"), e.Threads(), med(pre), fmtf(pre))
	t.Logf("decode tok/s median %.2f %v", med(dec), fmtf(dec))
	if os.Getenv("GEMMAC_PERF_PROFILE") != "" {
		for _, kt := range e.Profile() {
			t.Logf("%9.3f ms %6d calls %8.1f us/call  %s", kt.Time.Seconds()*1e3, kt.Calls, kt.Time.Seconds()*1e6/float64(kt.Calls), kt.Kernel)
		}
	}
}

func fmtf(v []float64) string {
	s := ""
	for _, x := range v {
		s += strconv.FormatFloat(x, 'f', 1, 64) + " "
	}
	return s
}
