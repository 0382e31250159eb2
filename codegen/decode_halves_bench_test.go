package codegen

import (
	"runtime"
	"testing"

	gir "github.com/gemmac/gemmac/ir"
)

// BenchmarkQDecodeGemvHalves times single-matrix quantised decode GEMVs of
// the 2B's, 9B's and 27B's shapes reading consecutive rows (off) against
// reading them in two halves (on, runGemvHalves), two threads, cold weights.
// Blocks of ten calls of each alternate, so a neighbour on a shared machine
// slows both alike; it reports each side's median GB/s and the share of
// blocks the halves won.
//
//	go test ./codegen -run XXX -bench QDecodeGemvHalves -benchtime 30x
func BenchmarkQDecodeGemvHalves(b *testing.B) {
	shapes := []Spec{
		QMatmul{R: 1, K: 2304, N: 2048, WType: gir.Q8_0},               // 2B q
		QMatmul{R: 1, K: 2304, N: 1024, WType: gir.Q4_0},               // 2B k, v
		QMatmul{R: 1, K: 2304, N: 32768, WType: gir.Q8_0, Softcap: 30}, // an LM head's eighth
		QMatmul{R: 1, K: 9216, N: 2304, WType: gir.Q8_0},               // 2B down
		QMatmul{R: 1, K: 9216, N: 2304, WType: gir.Q4_0},
		QMatmul{R: 1, K: 4608, N: 4096, WType: gir.Q8_0},  // 27B q
		QMatmul{R: 1, K: 14336, N: 3584, WType: gir.Q8_0}, // 9B down
		QMatmul{R: 1, K: 14336, N: 3584, WType: gir.Q4_0},
	}
	defer func(halves bool) { gemvHalves = halves }(gemvHalves)
	var libs [2]*lib
	for side, on := range []bool{false, true} {
		gemvHalves = on
		m := NewModule(HostTarget())
		for _, s := range shapes {
			m.MustAdd(s)
		}
		libs[side] = buildLib(b, m)
	}
	const block = 10
	for _, s := range shapes {
		b.Run(s.Name(), func(b *testing.B) {
			R, K, N, nw, wb := gemmDims(s)
			argv, keep := arenaArgs(R, K, N, nw, wb, true)
			ms, won := alternatePairs(b, func(side, i int) {
				calls := make([][]uintptr, block)
				for j := range calls {
					calls[j] = argv[((2*i+side)*block+j)%len(argv)]
				}
				runner{libs[side], s.Name(), calls, s.Items(), s.Granule(), 2}.run(&testing.B{N: block})
			})
			runtime.KeepAlive(keep)
			mb := float64(wb*int64(nw)) / 1e6
			b.ReportMetric(mb/(ms[0]/block), "off_GB/s")
			b.ReportMetric(mb/(ms[1]/block), "on_GB/s")
			b.ReportMetric(won, "%on_won")
		})
	}
}
