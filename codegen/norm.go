package codegen

import (
	"fmt"

	"github.com/llir/llvm/ir/value"
)

// RMSNorm is out = x · 1/sqrt(mean(x²)+eps) · w per row (w already holds 1+w).
//
// Args: out f32[R×H], x f32[R×H], w f32[H], scalars. Items: rows (< n_valid).
type RMSNorm struct {
	R, H int
	Eps  float64
}

func (s RMSNorm) Name() string {
	return fmt.Sprintf("rmsnorm_r%d_h%d_eps%s", s.R, s.H, fname(s.Eps))
}
func (s RMSNorm) Items() int64   { return int64(s.R) }
func (s RMSNorm) Granule() int64 { return 1 }
func (s RMSNorm) Args() []string { return []string{"out", "x", "w", "scalars"} }
func (s RMSNorm) Validate() error {
	return positive("R and H", s.R, s.H)
}

func (s RMSNorm) emit(g *gen) {
	out, x, w := g.argPtr(0, tF32), g.argPtr(1, tF32), g.argPtr(2, tF32)
	_, nvalid := g.scalars(3)
	g.forRange(g.lo, g.smin(g.hi, nvalid), 1, func(r value.Value) {
		base := g.mulc(r, int64(s.H))
		inv := g.rmsScale(x, base, s.H, s.Eps)
		g.scaleRow(out, x, w, base, s.H, inv)
	})
}

// rmsScale returns 1/sqrt(mean(p[base:base+n]²)+eps) as a scalar f32.
// Squares are accumulated in f32 vector lanes (two accumulators).
func (g *gen) rmsScale(p, base value.Value, n int, eps float64) value.Value {
	z := cf(g.vf(), 0)
	acc := g.vecLoop(n, []value.Value{z}, func(off, mask value.Value, c []value.Value) []value.Value {
		v := g.loadF(p, g.add(base, off), mask)
		return []value.Value{g.fma(v, v, c[0])}
	})
	ss := g.reduce(acc[0])
	ms := g.faddc(g.fmulc(ss, 1/float64(n)), eps)
	return g.fdiv(cf(tF32, 1), g.sqrt(ms))
}

// scaleRow writes out[base+i] = x[base+i]·inv·w[i] for i < n.
func (g *gen) scaleRow(out, x, w, base value.Value, n int, inv value.Value) {
	sv := g.splat(inv, g.L())
	g.vecLoop(n, nil, func(off, mask value.Value, _ []value.Value) []value.Value {
		v := g.loadF(x, g.add(base, off), mask)
		wv := g.loadF(w, off, mask)
		g.storeVec(g.fmul(g.fmul(v, sv), wv), out, g.add(base, off), mask)
		return nil
	})
}

// AddRMSNorm is the residual update of a Gemma-2 block:
// s = x + rmsnorm(a, w_post); sum_out = s; norm_out = rmsnorm(s, w_next).
//
// Args: sum_out f32[R×H] (may alias x), norm_out f32[R×H], x f32[R×H],
// a f32[R×H], w_post f32[H], w_next f32[H], scalars. Items: rows (< n_valid).
type AddRMSNorm struct {
	R, H int
	Eps  float64
}

func (s AddRMSNorm) Name() string {
	return fmt.Sprintf("add_rmsnorm_r%d_h%d_eps%s", s.R, s.H, fname(s.Eps))
}
func (s AddRMSNorm) Items() int64   { return int64(s.R) }
func (s AddRMSNorm) Granule() int64 { return 1 }
func (s AddRMSNorm) Args() []string {
	return []string{"sum_out", "norm_out", "x", "a", "w_post", "w_next", "scalars"}
}
func (s AddRMSNorm) Validate() error { return positive("R and H", s.R, s.H) }

func (s AddRMSNorm) emit(g *gen) {
	sum, norm := g.argPtr(0, tF32), g.argPtr(1, tF32)
	x, a := g.argPtr(2, tF32), g.argPtr(3, tF32)
	wp, wn := g.argPtr(4, tF32), g.argPtr(5, tF32)
	_, nvalid := g.scalars(6)
	L := g.L()
	g.forRange(g.lo, g.smin(g.hi, nvalid), 1, func(r value.Value) {
		base := g.mulc(r, int64(s.H))
		sa := g.splat(g.rmsScale(a, base, s.H, s.Eps), L)
		// s = x + a·sa·w_post, stored to sum_out (element-wise, so sum_out may
		// alias x), squares accumulated on the way.
		acc := g.vecLoop(s.H, []value.Value{cf(g.vf(), 0)}, func(off, mask value.Value, c []value.Value) []value.Value {
			i := g.add(base, off)
			xv := g.loadF(x, i, mask)
			av := g.loadF(a, i, mask)
			wv := g.loadF(wp, off, mask)
			sv := g.fma(g.fmul(av, sa), wv, xv)
			g.storeVec(sv, sum, i, mask)
			return []value.Value{g.fma(sv, sv, c[0])}
		})
		ms := g.faddc(g.fmulc(g.reduce(acc[0]), 1/float64(s.H)), s.Eps)
		inv := g.fdiv(cf(tF32, 1), g.sqrt(ms))
		g.scaleRow(norm, sum, wn, base, s.H, inv)
	})
}
