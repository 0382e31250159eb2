package codegen

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// Matmul is out[r,j] = Σ_k x[r,k]·w[j,k] (+ optional softcap epilogue).
//
// Args: out f32[R×N], x f32[R×K], w WType[N×K], scalars i64{pos, n_valid}.
// Items: the N output columns; rows ≥ n_valid are not computed.
type Matmul struct {
	R, K, N int
	WType   gir.DType // F32, BF16 or F16
	Softcap float64   // 0: none; c > 0: out = c·tanh(out/c)
}

func (s Matmul) Name() string {
	n := fmt.Sprintf("matmul_r%d_k%d_n%d_%s", s.R, s.K, s.N, s.WType)
	if s.Softcap != 0 {
		n += "_softcap" + fname(s.Softcap)
	}
	return n
}
func (s Matmul) Items() int64       { return int64(s.N) }
func (s Matmul) Granule() int64     { _, nc, _ := gemmTiling(s.R, 1, s.WType); return int64(nc) }
func (s Matmul) Args() []string     { return []string{"out", "x", "w", "scalars"} }
func (s Matmul) FLOPs() int64       { return 2 * int64(s.R) * int64(s.K) * int64(s.N) }
func (s Matmul) WeightBytes() int64 { return int64(s.K) * int64(s.N) * int64(s.WType.Size()) }
func (s Matmul) Validate() error {
	if err := positive("R, K and N", s.R, s.K, s.N); err != nil {
		return err
	}
	if s.Softcap < 0 {
		return fmt.Errorf("softcap must be ≥ 0")
	}
	return checkWeightType(s.WType)
}

func (s Matmul) emit(g *gen) {
	emitGemm(g, s.R, s.K, s.N, s.WType, 1, func(d []value.Value) value.Value {
		if s.Softcap != 0 {
			return g.softcap(d[0], s.Softcap)
		}
		return d[0]
	})
}

// GeGLU is out[r,j] = gelu_tanh(x_r·wgate_j) · (x_r·wup_j).
//
// Args: out f32[R×F], x f32[R×K], wgate WType[F×K], wup WType[F×K], scalars.
// Items: the F output columns.
type GeGLU struct {
	R, K, F int
	WType   gir.DType
}

func (s GeGLU) Name() string {
	return fmt.Sprintf("geglu_r%d_k%d_f%d_%s", s.R, s.K, s.F, s.WType)
}
func (s GeGLU) Items() int64       { return int64(s.F) }
func (s GeGLU) Granule() int64     { _, nc, _ := gemmTiling(s.R, 2, s.WType); return int64(nc) }
func (s GeGLU) Args() []string     { return []string{"out", "x", "wgate", "wup", "scalars"} }
func (s GeGLU) FLOPs() int64       { return 4 * int64(s.R) * int64(s.K) * int64(s.F) }
func (s GeGLU) WeightBytes() int64 { return 2 * int64(s.K) * int64(s.F) * int64(s.WType.Size()) }
func (s GeGLU) Validate() error {
	if err := positive("R, K and F", s.R, s.K, s.F); err != nil {
		return err
	}
	return checkWeightType(s.WType)
}

func (s GeGLU) emit(g *gen) {
	emitGemm(g, s.R, s.K, s.F, s.WType, 2, func(d []value.Value) value.Value {
		return g.fmul(g.gelu(d[0]), d[1])
	})
}

func checkWeightType(dt gir.DType) error {
	switch dt {
	case gir.F32, gir.BF16, gir.F16:
		return nil
	}
	return fmt.Errorf("weight dtype %v not supported (want f32, bf16 or f16)", dt)
}

// gemmTiling picks the register tile for nw weight matrices: mr rows of x ×
// nc weight rows (output columns), K unrolled by unroll vectors.
//
// Decode (R=1) is memory bound: f32/f16 keep 4 weight rows (per matrix) in
// flight, two vectors each per step. bf16 (the pair step: one cache line
// per row per step) keeps decodeNC rows in flight — 8 for one matrix
// (more concurrent streams measured faster on the LM head and q/k/v shapes),
// 4 per matrix for GeGLU (8 streams already; 16 measured slower). Prefill
// keeps mr·nc·nw ≤ 24 accumulators in the 32 AVX-512 registers so each
// converted weight vector feeds mr FMAs.
func gemmTiling(R, nw int, dt gir.DType) (mr, nc, unroll int) {
	if R == 1 && dt == gir.BF16 {
		return 1, decodeNC[nw-1], decodeUnroll[nw-1]
	}
	if R == 1 {
		if nw == 1 {
			return 1, 4, 2
		}
		return 1, 4, 1
	}
	if nw == 1 {
		return 6, 4, 1
	}
	return 3, 4, 1
}

// emitGemm is the shared body of Matmul and GeGLU: column tiles of nc over
// [lo, hi) (then single columns), inside them row tiles of mr over the valid
// rows (then single rows). The weights of a column tile (nc·K elements) stay
// in L1 while the rows of x stream from L2.
func emitGemm(g *gen, R, K, N int, dt gir.DType, nw int, epi func(d []value.Value) value.Value) {
	mr, nc, unroll := gemmTiling(R, nw, dt)
	if g.L() < 16 && R > 1 {
		// Fewer, narrower registers (16 on AVX2/NEON): halve the tile.
		mr = (mr + 1) / 2
	}
	out := g.argPtr(0, tF32)
	x := g.argPtr(1, tF32)
	ws := make([]value.Value, nw)
	for m := range ws {
		ws[m] = g.argPtr(2+m, elemType(dt))
	}
	_, nvalid := g.scalars(2 + nw)
	nvalid = g.smin(nvalid, ci64(int64(R)))

	cols := func(j value.Value, nc int) {
		tile := func(r0 value.Value, mr int) {
			u := unroll
			if mr > 1 || nc == 1 && R > 1 {
				u = 1
			}
			d := g.dotTile(x, ws, dt, K, r0, j, mr, nc, u)
			for r := 0; r < mr; r++ {
				rowOff := g.mulc(g.addc(r0, int64(r)), int64(N))
				for c := 0; c < nc; c++ {
					vals := make([]value.Value, nw)
					for m := range vals {
						vals[m] = d[m][r][c]
					}
					g.store(epi(vals), out, g.add(rowOff, g.addc(j, int64(c))))
				}
			}
		}
		var r value.Value = ci64(0)
		if mr > 1 {
			r = g.forRange(ci64(0), g.addc(nvalid, -int64(mr-1)), int64(mr), func(r value.Value) { tile(r, mr) })
		}
		g.forRange(r, nvalid, 1, func(r value.Value) { tile(r, 1) })
	}
	j := g.forRange(g.lo, g.addc(g.hi, -int64(nc-1)), int64(nc), func(j value.Value) { cols(j, nc) })
	if nc > 1 {
		g.forRange(j, g.hi, 1, func(j value.Value) { cols(j, 1) })
	}
}

// dotTile returns d[m][r][c] = Σ_k x[r0+r, k] · w_m[j0+c, k] for an mr×nc
// tile, with mr·nc·len(ws)·unroll vector accumulators. Every weight vector is
// loaded and widened once and used for all mr rows. K need not be a multiple
// of the vector width: the last step is masked.
func (g *gen) dotTile(x value.Value, ws []value.Value, dt gir.DType, K int, r0, j0 value.Value, mr, nc, unroll int) [][][]value.Value {
	L := g.L()
	prefetch := 0
	if mr == 1 && nc > 1 {
		prefetch = decodePrefetch
	}
	nw := len(ws)
	et := elemType(dt)
	xr := make([]value.Value, mr)
	for r := range xr {
		xr[r] = g.gep(tF32, x, g.mulc(g.addc(r0, int64(r)), int64(K)))
	}
	wr := make([][]value.Value, nw)
	for m := range wr {
		wr[m] = make([]value.Value, nc)
		for c := range wr[m] {
			wr[m][c] = g.gep(et, ws[m], g.mulc(g.addc(j0, int64(c)), int64(K)))
		}
	}
	at := func(m, r, c, u int) int { return ((m*mr+r)*nc+c)*unroll + u }
	acc := make([]value.Value, nw*mr*nc*unroll)
	zero := cf(g.vf(), 0)
	for i := range acc {
		acc[i] = zero
	}
	step := func(off, mask value.Value, u int, acc []value.Value) []value.Value {
		next := append([]value.Value(nil), acc...)
		xv := make([]value.Value, mr)
		for r := range xv {
			xv[r] = g.loadVec(gir.F32, L, xr[r], off, mask)
		}
		for m := 0; m < nw; m++ {
			for c := 0; c < nc; c++ {
				if prefetch > 0 && mask == nil && u == 0 {
					// One prefetch per cache line of this step, `prefetch`
					// bytes ahead in the same weight row (past its end it
					// reaches the next rows, which come next anyway).
					step := int64(L*unroll) * int64(dt.Size())
					for b := int64(0); b < step; b += 64 {
						g.prefetch(et, wr[m][c], g.addc(off, (int64(prefetch)+b)/int64(dt.Size())))
					}
				}
				wv := g.loadVec(dt, L, wr[m][c], off, mask)
				for r := 0; r < mr; r++ {
					i := at(m, r, c, u)
					next[i] = g.fma(xv[r], wv, next[i])
				}
			}
		}
		return next
	}
	// bf16 pair step: one full-width load of 2L weights per row, split into
	// even elements (bits << 16) and odd elements (bits & 0xffff0000) —
	// two instructions instead of two widening loads and two shifts — with
	// x de-interleaved to match (once per row, shared by all columns).
	pairStep := func(off value.Value, ue, uo int, acc []value.Value) []value.Value {
		next := append([]value.Value(nil), acc...)
		ev := make([]constant.Constant, L)
		od := make([]constant.Constant, L)
		for i := range ev {
			ev[i], od[i] = ci32(int64(2*i)), ci32(int64(2*i+1))
		}
		evM, odM := constant.NewVector(vecT(L, tI32), ev...), constant.NewVector(vecT(L, tI32), od...)
		xe, xo := make([]value.Value, mr), make([]value.Value, mr)
		for r := range xe {
			a := g.loadF(xr[r], off, nil)
			b := g.loadF(xr[r], g.addc(off, int64(L)), nil)
			xe[r] = g.b.NewShuffleVector(a, b, evM)
			xo[r] = g.b.NewShuffleVector(a, b, odM)
		}
		it := vecT(L, tI32)
		for m := 0; m < nw; m++ {
			for c := 0; c < nc; c++ {
				raw := g.b.NewBitCast(g.loadVecRaw(tI16, 2*L, wr[m][c], off, nil), it)
				we := g.b.NewBitCast(g.b.NewShl(raw, ci(it, 16)), g.vf())
				wo := g.b.NewBitCast(g.b.NewAnd(raw, ci(it, -65536)), g.vf())
				for r := 0; r < mr; r++ {
					ie, io := at(m, r, c, ue), at(m, r, c, uo)
					next[ie] = g.fma(xe[r], we, next[ie])
					next[io] = g.fma(xo[r], wo, next[io])
				}
			}
		}
		return next
	}
	pair := dt == gir.BF16 && mr == 1 // prefill: the x shuffles would cost more than they save
	chunk := L * unroll
	if pair && unroll%2 == 1 {
		chunk = 2 * L
	}
	full := K / chunk * chunk
	if full > 0 {
		_, acc = g.loop(ci64(0), ci64(int64(full)), int64(chunk), acc, func(k value.Value, acc []value.Value) []value.Value {
			if pair {
				if prefetch > 0 {
					for m := 0; m < nw; m++ {
						for c := 0; c < nc; c++ {
							for b := int64(0); b < int64(chunk*2); b += 64 {
								g.prefetch(et, wr[m][c], g.addc(k, (int64(prefetch)+b)/2))
							}
						}
					}
				}
				for p := 0; p < chunk/(2*L); p++ {
					acc = pairStep(g.addc(k, int64(p*2*L)), (2*p)%unroll, (2*p+1)%unroll, acc)
				}
				return acc
			}
			for u := 0; u < unroll; u++ {
				acc = step(g.addc(k, int64(u*L)), nil, u, acc)
			}
			return acc
		})
	}
	for k := full; k < K; k += L {
		var mask value.Value
		if K-k < L {
			mask = maskConst(L, K-k)
		}
		acc = step(ci64(int64(k)), mask, 0, acc)
	}
	d := make([][][]value.Value, nw)
	for m := range d {
		d[m] = make([][]value.Value, mr)
		for r := range d[m] {
			d[m][r] = make([]value.Value, nc)
			for c := range d[m][r] {
				parts := make([]value.Value, unroll)
				for u := range parts {
					parts[u] = acc[at(m, r, c, u)]
				}
				d[m][r][c] = g.reduce(g.sum(parts))
			}
		}
	}
	return d
}

// decodeNC and decodeUnroll are the bf16 decode (R=1) tile for one and two
// weight matrices: weight rows in flight and K unroll in vectors (an odd
// unroll steps by one pair, 2L elements, into one accumulator per row).
var (
	decodeNC     = [2]int{8, 4}
	decodeUnroll = [2]int{1, 1}
)

// decodePrefetch is how far ahead (bytes) the decode GEMV prefetches each
// weight row; 0 disables it.
var decodePrefetch = 1024

// prefetch emits llvm.prefetch(&p[idx], read, locality 3, data).
func (g *gen) prefetch(elem types.Type, p, idx value.Value) {
	fn := g.m.intrinsic("llvm.prefetch.p0i8", tVoid, tI8P, tI32, tI32, tI32)
	a := g.b.NewBitCast(g.gep(elem, p, idx), tI8P)
	g.b.NewCall(fn, a, ci32(0), ci32(3), ci32(1))
}
