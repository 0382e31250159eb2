package codegen

import (
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	gir "github.com/gemmac/gemmac/ir"
)

// BenchmarkLaidPanels times f32 matmuls on the 2B's shapes with weights laid
// out in panels (ir.LayPanels) against the same kernels on rows, two threads,
// cold weights: the two kernels alternate call by call, so a neighbour on a
// shared machine slows both alike. It reports each side's median call and
// the share of pairs the panels won.
//
//	go test ./codegen -run XXX -bench LaidPanels -benchtime 60x
func BenchmarkLaidPanels(b *testing.B) {
	const F = gir.F32
	pairs := [][2]Spec{
		{Matmul{R: 1, K: 2304, N: 2048, WType: F}, Matmul{R: 1, K: 2304, N: 2048, WType: F, Panels: true}},
		{Matmul{R: 1, K: 9216, N: 2304, WType: F}, Matmul{R: 1, K: 9216, N: 2304, WType: F, Panels: true}},
		{GeGLU{R: 1, K: 2304, F: 9216, WType: F}, GeGLU{R: 1, K: 2304, F: 9216, WType: F, Panels: true}},
		{Matmul{R: 128, K: 2304, N: 2304, WType: F}, Matmul{R: 128, K: 2304, N: 2304, WType: F, Panels: true}},
		{GeGLU{R: 128, K: 2304, F: 2304, WType: F}, GeGLU{R: 128, K: 2304, F: 2304, WType: F, Panels: true}},
		{Matmul{R: 128, K: 9216, N: 2304, WType: F}, Matmul{R: 128, K: 9216, N: 2304, WType: F, Panels: true}},
	}
	m := NewModule(HostTarget())
	for _, p := range pairs {
		m.MustAdd(p[0])
		m.MustAdd(p[1])
	}
	l := buildLib(b, m)
	for _, p := range pairs {
		b.Run(p[0].Name(), func(b *testing.B) {
			R, K, N, nw, wb := gemmDims(p[0])
			argv, keep := arenaArgs(R, K, N, nw, wb, true)
			ms, won := alternatePairs(b, func(side, i int) {
				callSplit(b, l, p[side], argv[(2*i+side)%len(argv)])
			})
			runtime.KeepAlive(keep)
			b.ReportMetric(ms[0], "rows_ms")
			b.ReportMetric(ms[1], "panels_ms")
			b.ReportMetric(won, "%panels_won")
		})
	}
}

// callSplit runs s over its items on two threads, split at a granule.
func callSplit(b *testing.B, l *lib, s Spec, args []uintptr) {
	half := s.Items() / 2 / s.Granule() * s.Granule()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		l.call(b, s.Name(), args, half, s.Items())
	}()
	l.call(b, s.Name(), args, 0, half)
	wg.Wait()
}

// alternatePairs times b.N pairs of run(0, i) and run(1, i), each side
// first in half of them, so that a neighbour on a shared machine slows both
// alike. It returns each side's median run in milliseconds and the
// percentage of pairs side 1 won.
func alternatePairs(b *testing.B, run func(side, i int)) (ms [2]float64, won float64) {
	var times [2][]float64
	for i := 0; i < b.N; i++ {
		for o := 0; o < 2; o++ {
			side := (i + o) % 2
			t0 := time.Now()
			run(side, i)
			times[side] = append(times[side], time.Since(t0).Seconds()*1e3)
		}
	}
	for i := range times[0] {
		if times[1][i] < times[0][i] {
			won++
		}
	}
	return [2]float64{median(times[0]), median(times[1])}, 100 * won / float64(b.N)
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
