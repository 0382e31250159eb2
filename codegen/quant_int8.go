package codegen

// Decode GEMVs for q4_0 weights with byte dot products (AVX-512 VNNI).
// Unpacking nibbles and widening every weight to f32 costs more vector
// instructions than the block's bytes take to stream; summing byte
// products with vpdpbusd needs x in bytes too, so x is quantised once per
// call to q8_0 blocks, as llama.cpp does. The result then differs from the
// f32-activation kernels by that rounding (the reference data allow it:
// ≤ 1.0 with the same argmax, against ≤ 1e-3 for f32 activations).
//
// The weights are streamed in 64-byte chunks exactly as GGUF stores them,
// with no shuffling: q4_0 blocks are 18 bytes, so a pair of them is 9
// dwords, the even block's 5 (the fifth holds its last two nibble bytes and
// the odd block's scale) and the odd block's 4. Every dword of a row thus
// belongs to one block, and x is laid out to match the row's bytes instead
// (layoutX): for each byte, the x byte its low nibble meets and the one its
// high nibble meets (zero under the scales); per dword, the block's d_x and
// the correction that undoes the nibbles' offset (vpdpbusd multiplies
// unsigned by signed bytes, and a nibble is q + 8: Σ(q+8)·x − 8·Σx). One
// chunk of one row then costs a load, three logic ops, two vpdpbusd, one
// word permutation that gathers each lane's weight scale, and four float
// ops: 11 instructions for 3.6 blocks, against 10 for 2 blocks when each
// pair of blocks was permuted into the layout of x.

import (
	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// int8Decode lets benchmarks compare the f32-activation kernels (decode
// GEMVs and prefill panels) on targets that have byte dot products.
var int8Decode = true

// QuantizesActivations reports whether t's decode GEMVs and prefill matmuls
// (not the batched decode steps) for weights of dt quantise x to bytes, so
// that their results follow the reference data's tolerance for quantised
// activations, not f32's. Only q4_0's do. q8_0 byte panels (the weights'
// sign bit flipped) ran as fast as q4_0's, but rounding x raised q8_0's KL
// divergence on tiny-hot 1.7× (q4_0's 6.5%, and 0.2% on the 2B), so q8_0's
// prefill rounds x to 16 bits instead (PrefillXBits) and its GEMVs keep
// it f32. For the GEMVs, by
// measurement (go test ./codegen -bench 'QGEMVDecode|QGeGLUDecode', with
// GEMMAC_INT8=0 for the f32 path): q4_0's unpacking costs more than
// quantising x (1.2–1.4× faster with vpdpbusd on Zen 5; with the chunked
// kernel on an Intel Xeon, 1.5–1.85× from memory and 2.9× in L2); a q8_0
// variant (sign bit flipped to make the weights unsigned) matched or lost
// to the f32 path (0.84–0.89×), which is exact, and was removed; so was a
// variant with two q8_0 blocks per 512-bit vpdpbusd: 1.2× the f32 path in
// L2, but no faster in the 2B model (73–85% of the roofline against
// 72–81%, alternating); and so was this chunked kernel for q8_0 (pairs of
// blocks as 17 dwords, 9 and 8) on the Xeon: 1.57× in L2, 0.98–1.15× from
// memory, 1.06× on the built 2B's median decode step.
func (t Target) QuantizesActivations(dt gir.DType) bool {
	return int8Decode && dt == gir.Q4_0 && t.hasVNNI() && t.Lanes == 16
}

// useInt8Decode reports whether the decode GEMVs use byte dot products.
func (g *gen) useInt8Decode(R int, dt gir.DType) bool {
	return R == 1 && g.t.QuantizesActivations(dt)
}

const (
	chunkBytes   = 64
	periodChunks = 9 // 576 bytes, 32 blocks: the lanes' blocks repeat
)

// dwordBlock is the q4_0 block dword D of a row belongs to.
func dwordBlock(D int) int {
	if D%9 < 5 {
		return D / 9 * 2
	}
	return D/9*2 + 1
}

// scaleWords is, for chunk c of a period (any chunk i with i mod 9 = c),
// the word index of each dword lane's block scale among the previous
// chunk's 32 words and then this chunk's, and whether any lies in the
// previous chunk. (A lane's block starts at most 17 bytes before it.)
func scaleWords(c int) (idx *constant.Vector, usesPrev bool) {
	words := make([]int, chunkBytes/4)
	for l := range words {
		words[l] = 9*dwordBlock(16*c+l) - 32*(c-1)
		usesPrev = usesPrev || words[l] < 32
	}
	return shuffleMask(len(words), func(l int) int { return words[l] }), usesPrev
}

// xLayout is x quantised to q8_0 blocks and laid out along a q4_0 row, in
// stack buffers padded to whole chunks with zeros: lo and hi hold, for
// each row byte, the x byte its low and high nibble multiply; corr is each
// dword's vpdpbusd starting value, −8·Σx over its bytes, which undoes the
// nibbles' offset (q + 8); scale is each dword's d_x.
type xLayout struct{ lo, hi, corr, scale value.Value }

func (g *gen) layoutX(x value.Value, K int) xLayout {
	nb := K / gir.QK
	bb := int64(gir.Q4_0.BlockBytes())
	chunks := (int64(nb)*bb + chunkBytes - 1) / chunkBytes
	dwords := chunks * chunkBytes / 4
	// A pair's scales are stored as 16 lanes from its first dword: room
	// for the last pair's 7 past its 9. The zeros matter: under the
	// scales' bytes, and past the row, where the lanes' weight scales are
	// zeros the masked load read, or scale bytes of no block.
	xl := xLayout{g.stack(tI8, int(chunks*chunkBytes)), g.stack(tI8, int(chunks*chunkBytes)),
		g.stack(tI32, int(dwords)), g.stack(tF32, int(dwords+16))}
	v64b, v16i, v16f := vecT(chunkBytes, tI8), vecT(16, tI32), vecT(16, tF32)
	g.forRange(ci64(0), ci64(chunks), 1, func(i value.Value) {
		for _, p := range []value.Value{xl.lo, xl.hi} {
			g.storeVecRaw(tI8, constant.NewZeroInitializer(v64b), p, g.mulc(i, chunkBytes), nil)
		}
		g.storeVecRaw(tI32, constant.NewZeroInitializer(v16i), xl.corr, g.mulc(i, 16), nil)
		g.storeVec(constant.NewZeroInitializer(v16f), xl.scale, g.mulc(i, 16), nil)
	})

	// block quantises block b into the bytes and returns its scale.
	block := func(b value.Value) value.Value {
		qs, d := g.quantizeBlock(x, g.mulc(b, gir.QK), 127)
		at := g.addc(g.mulc(b, bb), 2)
		g.storeBytes(qs[0], xl.lo, at) // x[0, 16) meets the low nibbles
		g.storeBytes(qs[1], xl.hi, at)
		return d
	}
	// pairScales stores d0 in the pair's first 5 dwords, d1 in the next 4
	// and zeros after (overwritten by the next pair, or padding).
	pairScales := func(p, d0, d1 value.Value) {
		two := g.b.NewInsertElement(g.b.NewInsertElement(constant.NewUndef(vecT(2, tF32)), d0, ci32(0)), d1, ci32(1))
		spread := g.b.NewShuffleVector(two, constant.NewUndef(two.Type()), shuffleMask(16, func(l int) int { return min(l/5, 1) }))
		g.storeVec(g.b.NewSelect(maskConst(16, 9), spread, constant.NewZeroInitializer(v16f)), xl.scale, g.mulc(p, 9), nil)
	}
	g.forRange(ci64(0), ci64(int64(nb/2)), 1, func(p value.Value) {
		b := g.mulc(p, 2)
		pairScales(p, block(b), block(g.addc(b, 1)))
	})
	if nb%2 == 1 {
		pairScales(ci64(int64(nb/2)), block(ci64(int64(nb-1))), cf(tF32, 0))
	}

	// corr = −8·Σ(lo + hi) per dword, as vpdpbusd sums them.
	dpbusd := g.m.intrinsic("llvm.x86.avx512.vpdpbusd.512", v16i, v16i, v16i, v16i)
	eights := g.b.NewBitCast(g.splat(ci(tI8, 8), chunkBytes), v16i)
	g.forRange(ci64(0), ci64(chunks), 1, func(i value.Value) {
		off := g.mulc(i, chunkBytes)
		s := constant.NewZeroInitializer(v16i)
		var sum value.Value = s
		for _, p := range []value.Value{xl.lo, xl.hi} {
			sum = g.b.NewCall(dpbusd, sum, eights, g.b.NewBitCast(g.loadVecRaw(tI8, chunkBytes, p, off, nil), v16i))
		}
		g.storeVecRaw(tI32, g.sub(s, sum), xl.corr, g.mulc(i, 16), nil)
	})
	return xl
}

// emitQGemvInt8 is the R = 1 body of QMatmul (nw = 1, read in halves by
// runGemvHalves) and QGeGLU (nw = 2): column tiles of nc weight rows per
// matrix, each row streamed in chunks against x laid out along it
// (layoutX), into 16-lane f32 accumulators.
func emitQGemvInt8(g *gen, K int, nw int, epi func(d []value.Value) value.Value) {
	nc := int8DecodeNC[nw-1]
	nb := K / gir.QK
	rowBytes := int64(nb) * int64(gir.Q4_0.BlockBytes())
	chunks := (rowBytes + chunkBytes - 1) / chunkBytes
	periods := rowBytes / (periodChunks * chunkBytes)
	out := g.argPtr(0, tF32)
	ws := make([]value.Value, nw)
	for m := range ws {
		ws[m] = g.argPtr(2+m, tI8)
	}
	xl := g.layoutX(g.argPtr(1, tF32), K)
	v16i, v16f, v32w := vecT(16, tI32), vecT(16, tF32), vecT(chunkBytes/2, tI16)
	dpbusd := g.m.intrinsic("llvm.x86.avx512.vpdpbusd.512", v16i, v16i, v16i, v16i)
	lowNibble := g.splat(ci(tI8, 0x0f), chunkBytes)

	// tile accumulates nc rows of each matrix in ws from column j: one
	// accumulator per row, those of matrix m at m·nc.
	tile := func(ws []value.Value, j value.Value, nc int) []value.Value {
		nw := len(ws)
		rows := make([]value.Value, nw*nc)
		for m := 0; m < nw; m++ {
			for c := 0; c < nc; c++ {
				rows[m*nc+c] = g.gep(tI8, ws[m], g.mulc(g.addc(j, int64(c)), rowBytes))
			}
		}
		// chunk accumulates chunk i (c = i mod 9) of every row; mask
		// limits the last chunk's load to the row.
		chunk := func(i value.Value, c int, mask value.Value, acc []value.Value) []value.Value {
			off := g.mulc(i, chunkBytes)
			g.prefetchNextTile(ws, rowBytes, j, nc, off, chunkBytes)
			xlo := g.b.NewBitCast(g.loadVecRaw(tI8, chunkBytes, xl.lo, off, nil), v16i)
			xhi := g.b.NewBitCast(g.loadVecRaw(tI8, chunkBytes, xl.hi, off, nil), v16i)
			corr := g.loadVecRaw(tI32, 16, xl.corr, g.mulc(i, 16), nil)
			dx := g.loadVecRaw(tF32, 16, xl.scale, g.mulc(i, 16), nil)
			idx, usesPrev := scaleWords(c)
			next := make([]value.Value, len(acc))
			for r, row := range rows {
				w := g.loadVecRaw(tI8, chunkBytes, row, off, mask)
				lo := g.b.NewAnd(w, lowNibble)
				hi := g.b.NewAnd(g.b.NewLShr(w, g.splat(ci(tI8, 4), chunkBytes)), lowNibble)
				dot := g.b.NewCall(dpbusd, corr, g.b.NewBitCast(lo, v16i), xlo)
				dot = g.b.NewCall(dpbusd, dot, g.b.NewBitCast(hi, v16i), xhi)
				var prev value.Value = constant.NewUndef(v32w)
				if usesPrev {
					prev = g.b.NewBitCast(g.loadVecRaw(tI8, chunkBytes, row, g.addc(off, -chunkBytes), nil), v32w)
				}
				dw := g.b.NewShuffleVector(prev, g.b.NewBitCast(w, v32w), idx)
				s := g.fmul(g.b.NewFPExt(g.b.NewBitCast(dw, vecT(16, tF16)), v16f), dx)
				next[r] = g.fma(g.b.NewSIToFP(dot, v16f), s, acc[r])
			}
			return next
		}
		acc := make([]value.Value, len(rows))
		for r := range acc {
			acc[r] = cf(v16f, 0)
		}
		if periods > 0 {
			_, acc = g.loop(ci64(0), ci64(periods), 1, acc, func(p value.Value, acc []value.Value) []value.Value {
				for c := 0; c < periodChunks; c++ {
					acc = chunk(g.addc(g.mulc(p, periodChunks), int64(c)), c, nil, acc)
				}
				return acc
			})
		}
		for i := periods * periodChunks; i < chunks; i++ {
			var mask value.Value
			if rest := rowBytes - i*chunkBytes; rest < chunkBytes {
				mask = maskConst(chunkBytes, int(rest))
			}
			acc = chunk(ci64(i), int(i%periodChunks), mask, acc)
		}
		return acc
	}
	lo := g.lo
	if nw == 1 && gemvHalves {
		lo = g.runGemvHalves(ws[0], rowBytes, int8DecodeNC[1], out, epi, func(ws []value.Value, j value.Value, nc int) [][]value.Value {
			acc := tile(ws, j, nc)
			d := make([][]value.Value, len(ws))
			for m := range d {
				for c := 0; c < nc; c++ {
					d[m] = append(d[m], g.reduce(acc[m*nc+c]))
				}
			}
			return d
		})
	}
	cols := func(j value.Value, nc int) {
		acc := tile(ws, j, nc)
		for c := 0; c < nc; c++ {
			vals := make([]value.Value, nw)
			for m := range vals {
				vals[m] = g.reduce(acc[m*nc+c])
			}
			g.store(epi(vals), out, g.addc(j, int64(c)))
		}
	}
	j := g.forRange(lo, g.addc(g.hi, -int64(nc-1)), int64(nc), func(j value.Value) { cols(j, nc) })
	if nc > 1 {
		g.forRange(j, g.hi, 1, func(j value.Value) { cols(j, 1) })
	}
}

// int8DecodeNC is the column tile of emitQGemvInt8 for one matrix and per
// matrix for two. Chosen on Zen 5 with the earlier pairwise kernel (3 rows
// beat 4 and 8 by 1.1–1.3× on the 2B's shapes; the GeGLU's 4 beat 1, 2, 3,
// 6 and 8); on an Intel Xeon (Emerald Rapids) the chunked kernel with 2, 3
// or 4 rows measured within the noise of each other (GEMMAC_I8NC). A
// QMatmul now reads its matrix in halves of the GeGLU's width
// (runGemvHalves), 4 rows of each, and leaves the one-matrix tile the
// columns left over.
var int8DecodeNC = [2]int{3, 4}

// quantizeBlock rounds the QK floats of x at k to integers in
// [−qmax, qmax] (qmax 127: a q8_0 block): its scale d (the largest
// magnitude / qmax) and its integers, QK/L vectors of L i32.
func (g *gen) quantizeBlock(x, k value.Value, qmax int64) (qs []value.Value, d value.Value) {
	L := g.L()
	fmaxV := g.m.intrinsic("llvm.vector.reduce.fmax."+tsuffix(g.vf()), tF32, g.vf())
	vs := make([]value.Value, gir.QK/L)
	var amax value.Value
	for i := range vs {
		vs[i] = g.loadF(x, g.addc(k, int64(i*L)), nil)
		if a := g.fabs(vs[i]); amax == nil {
			amax = a
		} else {
			amax = g.fmax(amax, a)
		}
	}
	m := g.b.NewCall(fmaxV, amax)
	inv := g.b.NewSelect(g.b.NewFCmp(enum.FPredOGT, m, cf(tF32, 0)), g.fdiv(cf(tF32, float64(qmax)), m), cf(tF32, 0))
	qs = make([]value.Value, len(vs))
	for i, v := range vs {
		qs[i] = g.b.NewFPToSI(g.unary("nearbyint", g.fmul(v, g.splat(inv, L))), vecT(L, tI32))
	}
	return qs, g.fdiv(m, cf(tF32, float64(qmax)))
}

// storeBytes stores the i32 lanes of q, truncated to bytes, at p[idx] (p
// an i8*).
func (g *gen) storeBytes(q, p, idx value.Value) {
	g.storeVecRaw(tI8, g.b.NewTrunc(q, vecT(int(q.Type().(*types.VectorType).Len), tI8)), p, idx, nil)
}

// reduceInt sums the lanes of an integer vector.
func (g *gen) reduceInt(v value.Value) value.Value {
	vt := v.Type().(*types.VectorType)
	return g.b.NewCall(g.m.intrinsic("llvm.vector.reduce.add."+tsuffix(vt), vt.ElemType, vt), v)
}
