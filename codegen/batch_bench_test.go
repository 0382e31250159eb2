package codegen

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	gir "github.com/gemmac/gemmac/ir"
)

// Batched decode matmuls on Gemma-2 2B shapes: the same weights streamed
// for 1 row (the decode step) and for R rows (a batched step of R
// sequences). Compare ns/op across rows: a memory-bound R-row kernel costs
// little more than the 1-row one.

var (
	batchBenchOnce sync.Once
	batchBenchLib  *lib
)

// batchBenchRows are the row counts measured (GEMMAC_BATCH_ROWS overrides
// the batched one).
func batchBenchRows() []int {
	r := 4
	if v := os.Getenv("GEMMAC_BATCH_ROWS"); v != "" {
		r, _ = strconv.Atoi(v)
	}
	return []int{1, r}
}

func batchShape(s Spec, rows int) Spec {
	switch s := s.(type) {
	case Matmul:
		s.R = rows
		return s
	case GeGLU:
		s.R = rows
		return s
	}
	panic("not a matmul")
}

var batchKnobsOnce sync.Once

// batchBenchKnobs applies the tuning knobs GEMMAC_BATCH_ACC
// (batchAccumulators), GEMMAC_BATCH_PF (batchPrefetch) and GEMMAC_BATCH_AT
// (batchAcrossTiles).
func batchBenchKnobs() {
	batchKnobsOnce.Do(func() {
		if v := os.Getenv("GEMMAC_BATCH_ACC"); v != "" {
			batchAccumulators, _ = strconv.Atoi(v)
		}
		if v := os.Getenv("GEMMAC_BATCH_PF"); v != "" {
			batchPrefetch, _ = strconv.Atoi(v)
		}
		if v := os.Getenv("GEMMAC_BATCH_AT"); v != "" {
			batchAcrossTiles = v != "0"
		}
	})
}

func getBatchBenchLib(b *testing.B) *lib {
	batchBenchOnce.Do(func() {
		batchBenchKnobs()
		m := NewModule(HostTarget())
		for _, d := range decodeShapes {
			for _, r := range batchBenchRows() {
				m.MustAdd(batchShape(d.spec, r))
			}
		}
		batchBenchLib = buildLib(b, m)
	})
	if batchBenchLib == nil {
		b.Fatal("benchmark library failed to build")
	}
	return batchBenchLib
}

// benchBatchGemm streams the weights from DRAM on every call (rotating
// through as many copies as the arena holds) for any row count.
func benchBatchGemm(b *testing.B, s Spec, threads int) {
	l := getBatchBenchLib(b)
	argv, keep := batchArgs(s)
	_, _, _, nw, wb := gemmDims(s)
	runKernelBench(b, l, s, argv, threads, wb*int64(nw), 0)
	runtime.KeepAlive(keep)
}

// BenchmarkDecodeBatch2B runs every 2B decode shape for 1 row and for a
// batch of rows, on 2 threads.
func BenchmarkDecodeBatch2B(b *testing.B) {
	for _, d := range decodeShapes {
		for _, r := range batchBenchRows() {
			b.Run(d.name+"_r"+strconv.Itoa(r), func(b *testing.B) { benchBatchGemm(b, batchShape(d.spec, r), 2) })
		}
	}
}

// BenchmarkDecodeBatchRatio2B alternates the 1-row and the batched kernel of
// each 2B decode shape call by call and reports the ratio of their fastest
// calls (ratio_min) and medians (ratio_med): robust on a shared machine,
// where whole benchmark runs drift.
func BenchmarkDecodeBatchRatio2B(b *testing.B) {
	rows := batchBenchRows()
	for _, d := range decodeShapes {
		b.Run(d.name, func(b *testing.B) {
			l := getBatchBenchLib(b)
			var calls [2]func()
			for i, r := range rows {
				s := batchShape(d.spec, r)
				argv, keep := batchArgs(s)
				// The kernels read different copies: neither finds the
				// other's weights in the last-level cache.
				c := int64(i * len(argv) / 2)
				calls[i] = func() {
					threadsCall(l, b, s.Name(), argv[c%int64(len(argv))], s.Items(), s.Granule(), 2)
					c++
				}
				defer runtime.KeepAlive(keep)
			}
			var times [2][]time.Duration
			for i := 0; i < b.N; i++ {
				for k := range calls {
					start := time.Now()
					calls[k]()
					times[k] = append(times[k], time.Since(start))
				}
			}
			for k := range times {
				slices.Sort(times[k])
			}
			b.ReportMetric(float64(times[1][0])/float64(times[0][0]), "ratio_min")
			b.ReportMetric(float64(times[1][len(times[1])/2])/float64(times[0][len(times[0])/2]), "ratio_med")
			b.ReportMetric(float64(times[0][0].Microseconds()), "r1_min_µs")
		})
	}
}

// batchArgs are the kernel args of s over every weight copy the arena holds.
func batchArgs(s Spec) ([][]uintptr, []any) {
	R, K, N, nw, wb := gemmDims(s)
	return arenaArgs(R, K, N, nw, wb, true)
}

// threadsCall runs one call of the kernel split over threads goroutines,
// each locked to its thread.
func threadsCall(l *lib, tb testing.TB, name string, args []uintptr, items, gran int64, threads int) {
	cut := func(k int) int64 {
		if k == threads {
			return items
		}
		return items * int64(k) / int64(threads) / gran * gran
	}
	var wg sync.WaitGroup
	for k := 1; k < threads; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			l.call(tb, name, args, cut(k), cut(k+1))
		}(k)
	}
	l.call(tb, name, args, 0, cut(1))
	wg.Wait()
}

// BenchmarkBatchComputeL2 runs 1-row and batched kernels on weights that
// stay in L2 (one thread): the compute side of a batched step, without
// memory. SetBytes makes MB/s the weight rate the kernel sustains.
func BenchmarkBatchComputeL2(b *testing.B) {
	for _, spec := range []Spec{Matmul{K: 2304, N: 64, WType: gir.BF16}, GeGLU{K: 2304, F: 32, WType: gir.BF16}} {
		for _, r := range batchBenchRows() {
			s := batchShape(spec, r)
			b.Run(s.Name(), func(b *testing.B) {
				batchBenchKnobs()
				m := NewModule(HostTarget())
				m.MustAdd(s)
				l := buildLib(b, m)
				argv, keep := batchArgs(s)
				b.SetBytes(s.(interface{ WeightBytes() int64 }).WeightBytes())
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					l.call(b, s.Name(), argv[0], 0, s.Items())
				}
				runtime.KeepAlive(keep)
			})
		}
	}
}
