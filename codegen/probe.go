package codegen

import (
	"fmt"

	"github.com/llir/llvm/ir/value"
)

// ProbeRead measures read bandwidth the way the kernels read: every item sums
// the f32 of one 4 KiB page with wide loads into 8 accumulators (prefetching
// decodePrefetch bytes ahead, like the GEMV) and stores the lane sums.
//
// Args: buf (Bytes bytes), out f32[Items·16]. Items: Bytes/4096 pages.
type ProbeRead struct{ Bytes int64 }

// PageBytes is the work of one ProbeRead item.
const PageBytes = 4096

func (s ProbeRead) Name() string   { return fmt.Sprintf("probe_read_b%d", s.Bytes) }
func (s ProbeRead) Items() int64   { return s.Bytes / PageBytes }
func (s ProbeRead) Granule() int64 { return 1 }
func (s ProbeRead) Args() []string { return []string{"buf", "out"} }
func (s ProbeRead) Validate() error {
	if s.Bytes < PageBytes || s.Bytes%PageBytes != 0 {
		return fmt.Errorf("bytes must be a positive multiple of %d", PageBytes)
	}
	return nil
}

func (s ProbeRead) emit(g *gen) {
	buf, out := g.argPtr(0, tF32), g.argPtr(1, tF32)
	L := g.L()
	const nacc = 8
	per := PageBytes / 4
	g.forRange(g.lo, g.hi, 1, func(item value.Value) {
		base := g.mulc(item, int64(per))
		init := make([]value.Value, nacc)
		for i := range init {
			init[i] = cf(g.vf(), 0)
		}
		_, acc := g.loop(ci64(0), ci64(int64(per)), int64(nacc*L), init, func(k value.Value, c []value.Value) []value.Value {
			next := make([]value.Value, nacc)
			// The same software prefetch distance the decode GEMV uses.
			for b := 0; b < nacc*L*4; b += 64 {
				g.prefetch(tF32, buf, g.add(base, g.addc(k, int64((probePrefetch+b)/4))))
			}
			for u := range next {
				next[u] = g.fadd(c[u], g.loadF(buf, g.add(base, g.addc(k, int64(u*L))), nil))
			}
			return next
		})
		g.storeVec(g.sum(acc), out, g.mulc(item, 16), nil)
	})
}

// ProbeFMA measures the FMA peak: every item runs Iters iterations of
// Chains independent vector FMA chains and stores their sum.
//
// Args: out f32[Items·16]. Items: any count (Items() is a default of 64).
type ProbeFMA struct{ Iters int }

// Chains is the number of independent FMA chains of ProbeFMA (enough to
// cover a 4-cycle latency at 2 FMAs per cycle twice over).
const Chains = 16

func (s ProbeFMA) Name() string    { return fmt.Sprintf("probe_fma_i%d", s.Iters) }
func (s ProbeFMA) Items() int64    { return 64 }
func (s ProbeFMA) Granule() int64  { return 1 }
func (s ProbeFMA) Args() []string  { return []string{"out"} }
func (s ProbeFMA) Validate() error { return positive("Iters", s.Iters) }

// FlopsPerItem is Iters × Chains × lanes × 2 for a target with the given lanes.
func (s ProbeFMA) FlopsPerItem(lanes int) int64 {
	return int64(s.Iters) * Chains * int64(lanes) * 2
}

func (s ProbeFMA) emit(g *gen) {
	out := g.argPtr(0, tF32)
	g.forRange(g.lo, g.hi, 1, func(item value.Value) {
		// Start values depend on the item so nothing is loop-invariant.
		x := g.splat(g.b.NewSIToFP(item, tF32), g.L())
		init := make([]value.Value, Chains)
		for i := range init {
			init[i] = g.fmulc(x, 1e-3*float64(i+1))
		}
		a, b := cf(g.vf(), 0.999999), cf(g.vf(), 1e-6)
		_, acc := g.loop(ci64(0), ci64(int64(s.Iters)), 1, init, func(_ value.Value, c []value.Value) []value.Value {
			next := make([]value.Value, Chains)
			for i := range next {
				next[i] = g.fma(c[i], a, b)
			}
			return next
		})
		g.storeVec(g.sum(acc), out, g.mulc(item, 16), nil)
	})
}

// probePrefetch is ProbeRead's software prefetch distance in bytes.
const probePrefetch = 1024
