package codegen

// Kernels for llama.cpp's block-quantised weights (q8_0, q4_0; see
// ir/quant.go for the layouts). Activations stay f32: each block's f16 scale
// is widened, its 32 integers are widened to f32 vectors (in registers, or
// for prefill into the f32 panels of panel.go) and multiplied
// with x, so the result is that of an f32 matmul with the dequantised
// weights (what the interpreter and the float64 references for the
// quantised GGUFs compute). On targets with 512-bit VNNI, q4_0 rounds x
// to bytes for integer dot products in decode (quant_int8.go) and prefill
// (panel_int8.go), and q8_0's prefill rounds it to 16 bits
// (panel_int8.go), close enough to f32 that its KL divergence does not move.

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/value"
)

// QMatmul is Matmul for q8_0 / q4_0 weights: out[r,j] = Σ_k x[r,k]·w[j,k]
// (+ optional softcap epilogue), w dequantised block by block.
//
// Args: out f32[R×N], x f32[R×K] (with XBits, QuantizeRows' output for
// it), w WType[N×K] (N rows of K/32 blocks),
// scalars i64{pos, n_valid}. Items: the N output columns; rows ≥ n_valid are
// not computed. K must be a multiple of 32.
type QMatmul struct {
	R, K, N int
	WType   gir.DType // Q8_0 or Q4_0
	Softcap float64   // 0: none; c > 0: out = c·tanh(out/c)
	// XBits (8 or 16): x is QuantizeRows' output for R rows of K at
	// XBits (integer panels: q4_0 and q8_0 prefill where
	// Target.PrefillXBits says so); 0: x is f32.
	XBits int
}

func (s QMatmul) Name() string {
	n := fmt.Sprintf("qmatmul_r%d_k%d_n%d_%s", s.R, s.K, s.N, s.WType)
	if s.Softcap != 0 {
		n += "_softcap" + fname(s.Softcap)
	}
	if s.XBits != 0 {
		n += fmt.Sprintf("_xq%d", s.XBits)
	}
	return n
}
func (s QMatmul) Items() int64   { return int64(s.N) }
func (s QMatmul) Granule() int64 { return qGranule(s.R, s.K, 1) }
func (s QMatmul) Args() []string { return []string{"out", "x", "w", "scalars"} }
func (s QMatmul) FLOPs() int64   { return 2 * int64(s.R) * int64(s.K) * int64(s.N) }

// WeightBytes is the size of w as stored (34 or 18 bytes per 32 weights).
func (s QMatmul) WeightBytes() int64 { return int64(s.N) * int64(s.WType.BytesFor(s.K)) }
func (s QMatmul) Validate() error {
	if err := positive("R, K and N", s.R, s.K, s.N); err != nil {
		return err
	}
	if s.Softcap < 0 {
		return fmt.Errorf("softcap must be ≥ 0")
	}
	if err := checkXBits(s.XBits, s.R, s.WType); err != nil {
		return err
	}
	return checkQuant(s.WType, s.K)
}

func (s QMatmul) emit(g *gen) {
	emitQGemm(g, s.R, s.K, s.N, s.WType, 1, s.XBits, func(d []value.Value) value.Value {
		if s.Softcap != 0 {
			return g.softcap(d[0], s.Softcap)
		}
		return d[0]
	})
}

// QGeGLU is GeGLU for q8_0 / q4_0 weights: out[r,j] = gelu_tanh(x_r·wgate_j)
// · (x_r·wup_j).
//
// Args: out f32[R×F], x f32[R×K], wgate WType[F×K], wup WType[F×K], scalars.
// Items: the F output columns. K must be a multiple of 32.
type QGeGLU struct {
	R, K, F int
	WType   gir.DType
	XBits   int // as QMatmul's
}

func (s QGeGLU) Name() string {
	n := fmt.Sprintf("qgeglu_r%d_k%d_f%d_%s", s.R, s.K, s.F, s.WType)
	if s.XBits != 0 {
		n += fmt.Sprintf("_xq%d", s.XBits)
	}
	return n
}
func (s QGeGLU) Items() int64       { return int64(s.F) }
func (s QGeGLU) Granule() int64     { return qGranule(s.R, s.K, 2) }
func (s QGeGLU) Args() []string     { return []string{"out", "x", "wgate", "wup", "scalars"} }
func (s QGeGLU) FLOPs() int64       { return 4 * int64(s.R) * int64(s.K) * int64(s.F) }
func (s QGeGLU) WeightBytes() int64 { return 2 * int64(s.F) * int64(s.WType.BytesFor(s.K)) }
func (s QGeGLU) Validate() error {
	if err := positive("R, K and F", s.R, s.K, s.F); err != nil {
		return err
	}
	if err := checkXBits(s.XBits, s.R, s.WType); err != nil {
		return err
	}
	return checkQuant(s.WType, s.K)
}

func (s QGeGLU) emit(g *gen) {
	emitQGemm(g, s.R, s.K, s.F, s.WType, 2, s.XBits, func(d []value.Value) value.Value {
		return g.fmul(g.gelu(d[0]), d[1])
	})
}

func checkQuant(dt gir.DType, k int) error {
	if !dt.IsQuantized() {
		return fmt.Errorf("weight dtype %v is not quantised (want q8_0 or q4_0)", dt)
	}
	if k%gir.QK != 0 {
		return fmt.Errorf("K = %d is not a whole number of %d-weight blocks", k, gir.QK)
	}
	return nil
}

// qGranule is the column granule of a quantised matmul of R rows of K.
func qGranule(R, K, nw int) int64 {
	if usesPanels(R) {
		return panelGranule(nw)
	}
	_, nc := qTiling(R, nw, 16)
	if R == 1 {
		// Either decode path may run (int8 depends on the target); a
		// granule both tiles divide keeps every split free of tails.
		nc = lcm(nc, int8DecodeNC[nw-1])
	}
	return int64(nc)
}

func lcm(a, b int) int {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

// qTiling picks the register tile for nw quantised weight matrices: mr rows
// of x × nc weight rows (output columns). Decode (R=1) keeps 8 weight rows
// in flight (4 per matrix for GeGLU), like the bf16 GEMV. A batched decode
// step reuses each dequantised (and scaled) block for mr rows (4 × 4
// columns, or 4 × 2 of each GeGLU matrix: 1.65× faster than 2 × 4 on the 2B
// GeGLU, measured at prefill's 128 rows); narrower targets (fewer
// registers) halve mr. The granule (nc) does not depend on the target.
func qTiling(R, nw, lanes int) (mr, nc int) {
	if R == 1 {
		return 1, qDecodeNC[nw-1]
	}
	mr, nc = qBatchTile[nw-1][0], qBatchTile[nw-1][1]
	if lanes < 16 {
		mr = (mr + 1) / 2
	}
	return mr, nc
}

// qBatchTile is the batched decode tile (mr, nc) for one and two matrices.
var qBatchTile = [2][2]int{{4, 4}, {4, 2}}

// qDecodeNC is the decode column tile: weight rows in flight for one
// matrix (QMatmul) and per matrix for two (QGeGLU). A QMatmul reads its
// matrix in halves of the second's width (runGemvHalves), so the first
// only takes the columns left over. The byte dot-product kernels
// (quant_int8.go) take int8DecodeNC instead.
var qDecodeNC = [2]int{8, 4}

// prefetchNextTile prefetches, for each weight matrix, the stretch of the
// next column tile's rows (nc rows of rowBytes, contiguous after this
// tile's) that matches the bytes this tile's rows have consumed: the rows
// are at byte off of rowBytes, and a loop step consumes step bytes of each.
// Quantised rows are short (1296 bytes of q4_0 at K = 2304): prefetching
// ahead within each row leaves every tile's first lines unfetched, while
// sweeping the next tile at the pace of this one keeps one tile in flight
// (measured 1.2–1.7× on the 2B decode shapes).
func (g *gen) prefetchNextTile(ws []value.Value, rowBytes int64, j0 value.Value, nc int, off value.Value, step int64) {
	for _, w := range ws {
		next := g.gep(tI8, w, g.mulc(g.addc(j0, int64(nc)), rowBytes))
		for o := int64(0); o < int64(nc)*step; o += 64 {
			g.prefetch(tI8, next, g.addc(g.mulc(off, int64(nc)), o))
		}
	}
}

// emitQGemm is the shared body of QMatmul and QGeGLU: the int8 GEMV, byte
// or f32 panels, or else (a batched decode step) column tiles of nc over
// [lo, hi) (then single columns), inside them row tiles of mr over the
// valid rows (then single rows).
func emitQGemm(g *gen, R, K, N int, dt gir.DType, nw, xbits int, epi func(d []value.Value) value.Value) {
	if g.useInt8Decode(R, dt) {
		emitQGemvInt8(g, K, nw, epi)
		return
	}
	if xbits != 0 {
		emitPanelGemmInt(g, R, K, N, dt, xbits, nw, epi)
		return
	}
	if usesPanels(R) {
		emitPanelGemm(g, R, K, N, dt, nw, false, epi)
		return
	}
	mr, nc := qTiling(R, nw, g.L())
	out, x, ws, nvalid := g.gemmArgs(R, nw, tI8)
	lo := g.lo
	if R == 1 && nw == 1 && gemvHalves {
		lo = g.runGemvHalves(ws[0], int64(dt.BytesFor(K)), qDecodeNC[1], out, epi, func(ws []value.Value, j value.Value, nc int) [][]value.Value {
			d := g.qdotTile(x, ws, dt, K, ci64(0), j, 1, nc)
			return [][]value.Value{d[0][0], d[1][0]}
		})
	}

	cols := func(j value.Value, nc int) {
		tile := func(r0 value.Value, mr int) {
			g.storeTile(g.qdotTile(x, ws, dt, K, r0, j, mr, nc), out, r0, j, N, epi)
		}
		var r value.Value = ci64(0)
		if mr > 1 {
			r = g.forRange(ci64(0), g.addc(nvalid, -int64(mr-1)), int64(mr), func(r value.Value) { tile(r, mr) })
		}
		g.forRange(r, nvalid, 1, func(r value.Value) { tile(r, 1) })
	}
	j := g.forRange(lo, g.addc(g.hi, -int64(nc-1)), int64(nc), func(j value.Value) { cols(j, nc) })
	if nc > 1 {
		g.forRange(j, g.hi, 1, func(j value.Value) { cols(j, 1) })
	}
}

// gemvHalves: decode GEMVs of one matrix read it in two halves
// (runGemvHalves); benchmarks turn it off to compare.
var gemvHalves = true

// runGemvHalves runs a decode GEMV of one matrix w (rows of rowBytes) as
// the GeGLU's tiles read its two matrices: the call's columns [lo, hi) are
// cut into two halves of h columns (h a multiple of nc), and each tile
// reads nc rows of each half, two streams far apart. tile returns the dot
// products d[m][c] of nc rows from column j of each matrix in ws. It
// returns lo + 2h, where the plain column tiles take over.
//
// Two sparse streams of a few rows each are what the Intel Xeon's memory
// system streams best (the q8_0 GeGLU, two matrices of 4 rows, read
// 1.13–1.15× faster than a GEMV of 8 rows of the same bytes, paired calls).
// In the built 2B (four rounds alternating, one weights file for both,
// gemmac bench --profile): q4_0's median decode step 1.10× (10.09 against
// 9.21 tok/s), its q8_0 LM head 1.14× (32.2 against 36.7 ms), q and o
// 1.10–1.13×, k and v 1.05×, down 1.08×; q8_0's LM head 1.14–1.18×, q, k,
// v and o 1.08–1.15×. BenchmarkQDecodeGemvHalves pairs the two layouts.
//
// With the halves, the down projections' long rows (q8_0: 9792 bytes)
// want the next tile prefetched like the rest: leaving them to the hardware
// prefetcher, 1.07–1.09× faster with 8 consecutive rows, made the 2B q8_0
// down GEMV 1.12× slower (1.51 against 1.34 ms a step).
func (g *gen) runGemvHalves(w value.Value, rowBytes int64, nc int, out value.Value, epi func(d []value.Value) value.Value, tile func(ws []value.Value, j value.Value, nc int) [][]value.Value) value.Value {
	h := g.mulc(g.b.NewSDiv(g.sub(g.hi, g.lo), ci64(int64(2*nc))), int64(nc))
	halves := []value.Value{w, g.gep(tI8, w, g.mulc(h, rowBytes))}
	g.forRange(g.lo, g.add(g.lo, h), int64(nc), func(j value.Value) {
		d := tile(halves, j, nc)
		for m, col := range []value.Value{j, g.add(j, h)} {
			for c, v := range d[m] {
				g.store(epi([]value.Value{v}), out, g.addc(col, int64(c)))
			}
		}
	})
	return g.add(g.lo, g.add(h, h))
}

// loadHalfAt loads the f16 at byte offset off of p (an i8*) as f32.
func (g *gen) loadHalfAt(p, off value.Value) value.Value {
	ptr := g.gep(tI8, p, off)
	if g.t.nativeF16() {
		h := g.b.NewLoad(tF16, g.b.NewBitCast(ptr, ptrT(tF16)))
		h.Align = 1
		return g.b.NewFPExt(h, tF32)
	}
	h := g.b.NewLoad(tI16, g.b.NewBitCast(ptr, ptrT(tI16)))
	h.Align = 1
	return g.halfBits(h)
}

// loadHalfSplatAt is splat(loadHalfAt(p, off)) in n lanes, broadcasting
// the half before widening it where the target converts halves natively
// (one broadcast load and one vector conversion instead of a scalar round
// trip). The bits are splatted as i16: a splat of half goes through
// general-purpose registers.
func (g *gen) loadHalfSplatAt(p, off value.Value, n int) value.Value {
	if !g.t.nativeF16() {
		return g.splat(g.loadHalfAt(p, off), n)
	}
	h := g.b.NewLoad(tI16, g.b.NewBitCast(g.gep(tI8, p, off), ptrT(tI16)))
	h.Align = 1
	return g.b.NewFPExt(g.b.NewBitCast(g.splat(h, n), vecT(n, tF16)), vecT(n, tF32))
}

// qWeights returns weights [i·L, (i+1)·L) of the block at byte offset boff
// of p (an i8*), as integers widened to f32 (not yet scaled by d).
func (g *gen) qWeights(dt gir.DType, p, boff value.Value, i int) value.Value {
	L := g.L()
	it := vecT(L, tI8)
	if dt == gir.Q8_0 {
		raw := g.loadVecRaw(tI8, L, p, g.addc(boff, int64(2+i*L)), nil)
		return g.b.NewSIToFP(raw, g.vf())
	}
	// q4_0: byte j holds weight j (low nibble) and j+16 (high nibble).
	per := gir.QK / 2 / L // vectors of low nibbles
	raw := g.loadVecRaw(tI8, L, p, g.addc(boff, int64(2+(i%per)*L)), nil)
	var nib value.Value
	if i < per {
		nib = g.b.NewAnd(raw, ci(it, 0x0f))
	} else {
		nib = g.b.NewLShr(raw, ci(it, 4))
	}
	return g.b.NewSIToFP(g.b.NewSub(nib, ci(it, 8)), g.vf())
}

// qScaledWeights returns the 32 weights of the block at byte offset boff of
// p as f32 vectors scaled by d (a splat of the block's scale).
//
// q4_0 with 16 lanes looks its nibbles up in a table of the 16 values
// (i − 8)·d, one vpermps each (which reads the low four bits of each
// index, so the low nibbles need no mask): half the instructions of
// masking, offsetting, converting and scaling every weight, with the same
// single rounding of (q − 8)·d.
func (g *gen) qScaledWeights(dt gir.DType, p, boff, d value.Value) []value.Value {
	L := g.L()
	nv := gir.QK / L
	ws := make([]value.Value, nv)
	if dt != gir.Q4_0 || L != 16 || !g.t.isX86() {
		for i := range ws {
			ws[i] = g.fmul(g.qWeights(dt, p, boff, i), d)
		}
		return ws
	}
	vi := vecT(L, tI32)
	values := make([]constant.Constant, L)
	for i := range values {
		values[i] = cf(tF32, float64(i-8))
	}
	table := g.fmul(constant.NewVector(vecT(L, tF32), values...), d)
	permps := g.m.intrinsic("llvm.x86.avx512.permvar.sf.512", g.vf(), g.vf(), vi)
	idx := g.b.NewZExt(g.loadVecRaw(tI8, L, p, g.addc(boff, 2), nil), vi)
	ws[0] = g.b.NewCall(permps, table, idx)
	ws[1] = g.b.NewCall(permps, table, g.b.NewLShr(idx, ci(vi, 4)))
	return ws
}

// rowBytesAt is a byte pointer to the block holding element k0 (a whole
// number of blocks; any element for float dtypes) of row `row` of w, a
// matrix of K-element rows stored as dt.
func (g *gen) rowBytesAt(dt gir.DType, w value.Value, K int, row, k0 value.Value) value.Value {
	blocks := g.b.NewUDiv(k0, ci64(int64(dt.BlockSize())))
	if !dt.IsQuantized() {
		w = g.b.NewBitCast(w, ptrT(tI8))
	}
	return g.gep(tI8, w, g.add(g.mulc(row, int64(dt.BytesFor(K))), g.mulc(blocks, int64(dt.BlockBytes()))))
}

// qdotTile returns d[m][r][c] = Σ_k x[r0+r, k] · w_m[j0+c, k] for an mr×nc
// tile of quantised weights. Decode (mr = 1) sums x·q over a block and scales
// the block's partial sum by d (one FMA per block and column); a batched
// step scales the widened weights once and uses them for all mr rows.
func (g *gen) qdotTile(x value.Value, ws []value.Value, dt gir.DType, K int, r0, j0 value.Value, mr, nc int) [][][]value.Value {
	L := g.L()
	nv := gir.QK / L // vectors per block
	nb := K / gir.QK
	bb := int64(dt.BlockBytes())
	rowBytes := int64(nb) * bb
	nw := len(ws)
	xr := make([]value.Value, mr)
	for r := range xr {
		xr[r] = g.gep(tF32, x, g.mulc(g.addc(r0, int64(r)), int64(K)))
	}
	wr := make([][]value.Value, nw)
	for m := range wr {
		wr[m] = make([]value.Value, nc)
		for c := range wr[m] {
			wr[m][c] = g.gep(tI8, ws[m], g.mulc(g.addc(j0, int64(c)), rowBytes))
		}
	}
	at := func(m, r, c int) int { return (m*mr+r)*nc + c }
	acc := make([]value.Value, nw*mr*nc)
	for i := range acc {
		acc[i] = cf(g.vf(), 0)
	}
	decode := mr == 1
	step := func(b value.Value, acc []value.Value) []value.Value {
		next := append([]value.Value(nil), acc...)
		koff := g.mulc(b, gir.QK)
		boff := g.mulc(b, bb)
		xv := make([][]value.Value, mr)
		for r := range xv {
			xv[r] = make([]value.Value, nv)
			for i := range xv[r] {
				xv[r][i] = g.loadF(xr[r], g.addc(koff, int64(i*L)), nil)
			}
		}
		for m := 0; m < nw; m++ {
			for c := 0; c < nc; c++ {
				d := g.loadHalfSplatAt(wr[m][c], boff, g.L())
				if decode {
					var s value.Value
					for i := 0; i < nv; i++ {
						w := g.qWeights(dt, wr[m][c], boff, i)
						if s == nil {
							s = g.fmul(xv[0][i], w)
						} else {
							s = g.fma(xv[0][i], w, s)
						}
					}
					k := at(m, 0, c)
					next[k] = g.fma(s, d, next[k])
					continue
				}
				for i, w := range g.qScaledWeights(dt, wr[m][c], boff, d) {
					for r := 0; r < mr; r++ {
						k := at(m, r, c)
						next[k] = g.fma(xv[r][i], w, next[k])
					}
				}
			}
		}
		return next
	}
	// Blocks per loop step: about a cache line of each weight row, so one
	// prefetch per line per row keeps the decode streams ahead.
	ub := 1
	if decode && nc > 1 {
		ub = int((64 + bb - 1) / bb)
	}
	full := nb / ub * ub
	if full > 0 {
		_, acc = g.loop(ci64(0), ci64(int64(full)), int64(ub), acc, func(b value.Value, acc []value.Value) []value.Value {
			if decode && nc > 1 {
				g.prefetchNextTile(ws, rowBytes, j0, nc, g.mulc(b, bb), int64(ub)*bb)
			}
			for u := 0; u < ub; u++ {
				acc = step(g.addc(b, int64(u)), acc)
			}
			return acc
		})
	}
	for b := full; b < nb; b++ {
		acc = step(ci64(int64(b)), acc)
	}
	d := make([][][]value.Value, nw)
	for m := range d {
		d[m] = make([][]value.Value, mr)
		for r := range d[m] {
			d[m][r] = make([]value.Value, nc)
			for c := range d[m][r] {
				d[m][r][c] = g.reduce(acc[at(m, r, c)])
			}
		}
	}
	return d
}

// emitQEmbed is Embed's body for a quantised table: each row dequantised
// block by block, (q·d)·scale (the same two roundings as dequantising, then
// scaling).
func emitQEmbed(g *gen, s Embed) {
	L := g.L()
	nv := gir.QK / L
	bb := int64(s.TType.BlockBytes())
	rowBytes := int64(s.H/gir.QK) * bb
	out := g.argPtr(0, tF32)
	table := g.argPtr(1, tI8)
	ids := g.argPtr(2, tI32)
	_, nvalid := g.scalars(3)
	sc := cf(g.vf(), s.Scale)
	g.forRange(g.lo, g.smin(g.hi, nvalid), 1, func(r value.Value) {
		id := g.b.NewSExt(g.load(tI32, ids, r), tI64)
		row := g.gep(tI8, table, g.mulc(id, rowBytes))
		dst := g.mulc(r, int64(s.H))
		g.forRange(ci64(0), ci64(int64(s.H/gir.QK)), 1, func(b value.Value) {
			boff := g.mulc(b, bb)
			d := g.loadHalfSplatAt(row, boff, g.L())
			o := g.add(dst, g.mulc(b, gir.QK))
			for i := 0; i < nv; i++ {
				w := g.fmul(g.qWeights(s.TType, row, boff, i), d)
				g.storeVec(g.fmul(w, sc), out, g.addc(o, int64(i*L)), nil)
			}
		})
	})
}
