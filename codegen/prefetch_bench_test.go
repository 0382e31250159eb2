package codegen

import (
	"math"
	"runtime"
	"testing"
	"time"

	gir "github.com/gemmac/gemmac/ir"
)

// BenchmarkQDecodeTilePrefetch times the quantised decode GEMVs of the 2B's
// and 9B's shapes with the next column tile prefetched (prefetchNextTile,
// whatever the row length) against the hardware prefetcher alone, two
// threads, cold weights. Blocks of ten calls of each alternate, so a
// neighbour on a shared machine slows both alike; it reports each side's
// median GB/s and the share of blocks the hardware prefetcher won.
//
//	go test ./codegen -run XXX -bench QDecodeTilePrefetch -benchtime 30x
func BenchmarkQDecodeTilePrefetch(b *testing.B) {
	specs := []Spec{
		QMatmul{R: 1, K: 2304, N: 2048, WType: gir.Q8_0},  // 2B q
		QMatmul{R: 1, K: 9216, N: 2304, WType: gir.Q8_0},  // 2B down
		QMatmul{R: 1, K: 9216, N: 2304, WType: gir.Q4_0},  //
		QGeGLU{R: 1, K: 3584, F: 14336, WType: gir.Q8_0},  // 9B GeGLU
		QMatmul{R: 1, K: 4608, N: 4096, WType: gir.Q8_0},  // 27B q
		QMatmul{R: 1, K: 14336, N: 3584, WType: gir.Q8_0}, // 9B down
		QMatmul{R: 1, K: 14336, N: 3584, WType: gir.Q4_0}, //
	}
	build := func(rowBytes int64) *lib {
		defer func(old int64) { hardwarePrefetchRowBytes = old }(hardwarePrefetchRowBytes)
		hardwarePrefetchRowBytes = rowBytes
		m := NewModule(HostTarget())
		for _, s := range specs {
			m.MustAdd(s)
		}
		return buildLib(b, m)
	}
	libs := [2]*lib{build(math.MaxInt64), build(0)}
	const block = 10
	for _, s := range specs {
		b.Run(s.Name(), func(b *testing.B) {
			R, K, N, nw, wb := gemmDims(s)
			argv, keep := arenaArgs(R, K, N, nw, wb, true)
			var ms [2][]float64
			for i := 0; i < b.N; i++ {
				for o := 0; o < 2; o++ {
					side := (i + o) % 2 // each goes first half the time
					calls := make([][]uintptr, block)
					for j := range calls {
						calls[j] = argv[((2*i+side)*block+j)%len(argv)]
					}
					t0 := time.Now()
					runner{libs[side], s.Name(), calls, s.Items(), s.Granule(), 2}.run(&testing.B{N: block})
					ms[side] = append(ms[side], time.Since(t0).Seconds()*1e3/block)
				}
			}
			runtime.KeepAlive(keep)
			won := 0
			for i := range ms[0] {
				if ms[1][i] < ms[0][i] {
					won++
				}
			}
			mb := float64(wb*int64(nw)) / 1e6
			b.ReportMetric(mb/median(ms[0]), "software_GB/s")
			b.ReportMetric(mb/median(ms[1]), "hardware_GB/s")
			b.ReportMetric(100*float64(won)/float64(b.N), "%hardware_won")
		})
	}
}
