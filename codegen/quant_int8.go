package codegen

// Decode GEMVs for q4_0 weights with byte dot products (AVX-512 VNNI at 256
// bits). Unpacking nibbles and widening every weight to f32 costs more
// vector instructions than the block's bytes take to stream; summing a
// block's 32 byte products in one vpdpbusd needs x in bytes too, so x is
// quantised once per call to q8_0 blocks, as llama.cpp does. The result then
// differs from the f32-activation kernels by that rounding (the reference
// data allow it: ≤ 1.0 with the same argmax, against ≤ 1e-3 for f32
// activations), and prefill keeps f32 activations.
//
// vpdpbusd multiplies unsigned by signed bytes. q4_0 nibbles are unsigned
// (q + 8); the offset is undone with the block's Σx, Σ(q+8)·x − 8·Σx, the
// correction being the accumulator's starting value. The high nibbles are
// not shifted down: masked in place they are 16·(q + 8), in the upper four
// i32 lanes only, which the scale then divides by 16 (exactly).

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
// divergence on tiny-hot 1.7× (q4_0's 6.5%, and 0.2% on the 2B), so q8_0
// keeps exact activations. For the GEMVs, by
// measurement (go test ./codegen -bench 'QGEMVDecode|QGeGLUDecode', with
// GEMMAC_INT8=0 for the f32 path): q4_0's unpacking costs more than
// quantising x (1.2–1.4× faster with vpdpbusd); a q8_0 variant (sign bit
// flipped to make the weights unsigned) matched or lost to the f32 path
// (0.84–0.89×), which is exact, and was removed; so was a variant with two
// q8_0 blocks per 512-bit vpdpbusd: 1.2× the f32 path in L2, but no faster
// in the 2B model (73–85% of the roofline against 72–81%, alternating).
func (t Target) QuantizesActivations(dt gir.DType) bool {
	return int8Decode && dt == gir.Q4_0 && t.hasVNNI()
}

// useInt8Decode reports whether the decode GEMVs use byte dot products.
func (g *gen) useInt8Decode(R int, dt gir.DType) bool {
	return R == 1 && g.t.QuantizesActivations(dt)
}

// quantizeX quantises the K floats of x to q8_0-style blocks in stack
// buffers: xq (K bytes), xd (each block's scale) and xc (each block's
// vpdpbusd starting value: the offset corrections, as 8 i32 lanes).
func (g *gen) quantizeX(x value.Value, K int) (xq, xd, xc value.Value) {
	L := g.L()
	nb := K / gir.QK
	xq, xd, xc = g.stack(tI8, K), g.stack(tF32, nb), g.stack(tI32, 8*nb)
	g.forRange(ci64(0), ci64(int64(nb)), 1, func(b value.Value) {
		k := g.mulc(b, gir.QK)
		qs, d := g.quantizeBlock(x, k)
		g.store(d, xd, b)
		// Sums of the block's first and second 16 integers (L ≤ 16, so
		// each vector lies in one half).
		halves := [2]value.Value{ci(qs[0].Type(), 0), ci(qs[0].Type(), 0)}
		for i, q := range qs {
			h := i * L / (gir.QK / 2)
			halves[h] = g.add(halves[h], q)
			g.storeBytes(q, xq, g.addc(k, int64(i*L)))
		}
		lo, hi := g.reduceInt(halves[0]), g.reduceInt(halves[1])
		// −8·Σq_lo in lane 0 and −16·8·Σq_hi in lane 4 (the upper
		// lanes' products are 16×).
		cv := g.b.NewInsertElement(constant.NewZeroInitializer(vecT(8, tI32)), g.mulc(lo, -8), ci32(0))
		cv = g.b.NewInsertElement(cv, g.mulc(hi, -128), ci32(4))
		g.b.NewStore(cv, g.b.NewBitCast(g.gep(tI32, xc, g.mulc(b, 8)), ptrT(vecT(8, tI32))))
	})
	return xq, xd, xc
}

// quantizeBlock rounds the QK floats of x at k to a q8_0 block: its scale d
// (the largest magnitude / 127) and its integers, QK/L vectors of L i32.
func (g *gen) quantizeBlock(x, k value.Value) (qs []value.Value, d value.Value) {
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
	inv := g.b.NewSelect(g.b.NewFCmp(enum.FPredOGT, m, cf(tF32, 0)), g.fdiv(cf(tF32, 127), m), cf(tF32, 0))
	qs = make([]value.Value, len(vs))
	for i, v := range vs {
		qs[i] = g.b.NewFPToSI(g.unary("nearbyint", g.fmul(v, g.splat(inv, L))), vecT(L, tI32))
	}
	return qs, g.fdiv(m, cf(tF32, 127))
}

// storeBytes stores the i32 lanes of q, truncated to bytes, at p[idx] (p
// an i8*).
func (g *gen) storeBytes(q, p, idx value.Value) {
	q8 := g.b.NewTrunc(q, vecT(int(q.Type().(*types.VectorType).Len), tI8))
	g.b.NewStore(q8, g.b.NewBitCast(g.gep(tI8, p, idx), ptrT(q8.Type())))
}

// reduceInt sums the lanes of an integer vector.
func (g *gen) reduceInt(v value.Value) value.Value {
	vt := v.Type().(*types.VectorType)
	return g.b.NewCall(g.m.intrinsic("llvm.vector.reduce.add."+tsuffix(vt), vt.ElemType, vt), v)
}

// emitQGemvInt8 is the R = 1 body of QMatmul (nw = 1) and QGeGLU (nw = 2):
// column tiles of nc weight rows per matrix, each block's 32 products summed
// in one vpdpbusd, scaled by d_w·d_x into 8-lane f32 accumulators.
func emitQGemvInt8(g *gen, K int, nw int, epi func(d []value.Value) value.Value) {
	nc := int8DecodeNC[nw-1]
	nb := K / gir.QK
	bb := int64(gir.Q4_0.BlockBytes())
	rowBytes := int64(nb) * bb
	out := g.argPtr(0, tF32)
	x := g.argPtr(1, tF32)
	ws := make([]value.Value, nw)
	for m := range ws {
		ws[m] = g.argPtr(2+m, tI8)
	}
	xq, xd, xc := g.quantizeX(x, K)
	v8i, v8f := vecT(8, tI32), vecT(8, tF32)
	dpbusd := g.m.intrinsic("llvm.x86.avx512.vpdpbusd.256", v8i, v8i, v8i, v8i)
	xq32 := g.b.NewBitCast(xq, ptrT(v8i))
	xc32 := g.b.NewBitCast(xc, ptrT(v8i))
	// Per-lane factors of the scale: q4_0's upper lanes hold 16× products.
	one, sixteenth := cf(tF32, 1), cf(tF32, 1.0/16)
	lanes := constant.NewVector(v8f, one, one, one, one, sixteenth, sixteenth, sixteenth, sixteenth)

	// With 512-bit vectors two blocks go through one vpdpbusd (qPairStep):
	// about half the instructions per block of the 256-bit step. The loop
	// steps over ub blocks, an even number for q4_0's 18-byte blocks.
	pairs := g.L() == 16

	cols := func(j value.Value, nc int) {
		rows := make([]value.Value, nw*nc)
		for m := 0; m < nw; m++ {
			for c := 0; c < nc; c++ {
				rows[m*nc+c] = g.gep(tI8, ws[m], g.mulc(g.addc(j, int64(c)), rowBytes))
			}
		}
		var pacc []value.Value // pairStep's 16-lane accumulators
		if pairs {
			pacc = make([]value.Value, len(rows))
			for i := range pacc {
				pacc[i] = cf(vecT(16, tF32), 0)
			}
		}
		step := func(b value.Value, acc []value.Value) []value.Value {
			xv := g.load(v8i, xq32, b)
			cv := g.load(v8i, xc32, b)
			dx := g.fmul(g.splat(g.load(tF32, xd, b), 8), lanes)
			boff := g.mulc(b, bb)
			next := make([]value.Value, len(acc))
			for i, row := range rows {
				dot := g.b.NewCall(dpbusd, cv, g.unsignedBlock(row, boff), xv)
				s := g.fmul(g.loadHalfSplatAt(row, boff, 8), dx)
				next[i] = g.fma(g.b.NewSIToFP(dot, v8f), s, acc[i])
			}
			return next
		}
		acc := make([]value.Value, len(rows))
		for i := range acc {
			acc[i] = cf(v8f, 0)
		}
		// A cache line of each row per loop step, prefetched ahead (ub
		// blocks; even, so pair steps cover it).
		ub := int((64 + bb - 1) / bb)
		full := nb / ub * ub
		if pairs {
			// The loop's pairs all take the one-load path (qPairStep);
			// the last ones of the row follow it unrolled.
			full = max(0, nb-pairOverrunBlocks) / ub * ub
		}
		if full > 0 {
			// The loop carries the 8-lane accumulators, then the 16-lane.
			_, both := g.loop(ci64(0), ci64(int64(full)), int64(ub), append(append([]value.Value(nil), acc...), pacc...), func(b value.Value, both []value.Value) []value.Value {
				acc, pacc := both[:len(rows)], both[len(rows):]
				g.prefetchNextTile(ws, rowBytes, j, nc, g.mulc(b, bb), int64(ub)*bb)
				for u := 0; u < ub; {
					if pairs {
						pacc = g.qPairStep(rows, xq, xd, xc, g.addc(b, int64(u)), pacc, true)
						u += 2
						continue
					}
					acc = step(g.addc(b, int64(u)), acc)
					u++
				}
				return append(append([]value.Value(nil), acc...), pacc...)
			})
			acc, pacc = both[:len(rows)], both[len(rows):]
		}
		b := full
		for ; pairs && b+1 < nb; b += 2 {
			pacc = g.qPairStep(rows, xq, xd, xc, ci64(int64(b)), pacc, b+pairOverrunBlocks <= nb)
		}
		for ; b < nb; b++ {
			acc = step(ci64(int64(b)), acc)
		}
		for c := 0; c < nc; c++ {
			vals := make([]value.Value, nw)
			for m := range vals {
				vals[m] = g.reduce(acc[m*nc+c])
				if pairs {
					vals[m] = g.fadd(vals[m], g.reduce(pacc[m*nc+c]))
				}
			}
			g.store(epi(vals), out, g.addc(j, int64(c)))
		}
	}
	j := g.forRange(g.lo, g.addc(g.hi, -int64(nc-1)), int64(nc), func(j value.Value) { cols(j, nc) })
	if nc > 1 {
		g.forRange(j, g.hi, 1, func(j value.Value) { cols(j, 1) })
	}
}

// int8DecodeNC is the column tile of emitQGemvInt8 for one matrix and per
// matrix for two. One matrix reads 3 rows at a time, not the 8 of the f32
// path: on the 2B's q4_0 shapes 1.30× (down, K = 9216), 1.19× (q) and 1.09×
// (o) the weight bandwidth of 8 rows, and 3 rows beat 4 on all three (paired
// runs of 30–40 samples, each a pass over 510 MB on 2 threads). The GeGLU
// keeps 4 of each: 1, 2, 3, 6 and 8 measured 0.85–0.99× of it.
var int8DecodeNC = [2]int{3, 4}

// unsignedBlock loads the 32 weights of the block at byte offset boff of
// row as unsigned bytes, as 8 × i32 for vpdpbusd.
func (g *gen) unsignedBlock(row, boff value.Value) value.Value {
	v8i := vecT(8, tI32)
	// q4_0: byte j holds weight j (low nibble) and j+16 (high nibble). The
	// 16 bytes are loaded into both halves of the vector (one broadcast
	// load) and masked: low nibbles in the lower half, high nibbles in
	// place (16×) in the upper.
	raw := g.loadVecRaw(tI8, gir.QK/2, row, g.addc(boff, 2), nil)
	both := g.b.NewShuffleVector(raw, constant.NewUndef(raw.Type()), shuffleMask(gir.QK, func(i int) int { return i % (gir.QK / 2) }))
	return g.b.NewBitCast(g.b.NewAnd(both, nibbleMask(gir.QK)), v8i)
}

// nibbleMask is the n-byte AND mask that keeps, in each block's QK bytes
// (its 16 bytes of nibbles twice over), the low nibbles in the first half
// and the high nibbles in the second.
func nibbleMask(n int) *constant.Vector {
	masks := make([]constant.Constant, n)
	for i := range masks {
		masks[i] = ci(tI8, 0x0f)
		if i%gir.QK >= gir.QK/2 {
			masks[i] = ci(tI8, -16) // 0xf0
		}
	}
	return constant.NewVector(vecT(n, tI8), masks...)
}

// pairOverrunBlocks: a pair of q4_0 blocks starting at block p may be read
// with one 64-byte load when p+pairOverrunBlocks ≤ the row's blocks (the
// load's 28 bytes past the pair then lie in the row).
const pairOverrunBlocks = 4

// qPairStep accumulates q4_0 blocks b and b+1 of every row into 16-lane
// accumulators with one 512-bit vpdpbusd per row. One two-source
// permutation places each block's 16 nibble bytes twice, in lanes laid out
// as the quantised x already is (block b's x[0..16), x[16..32), then block
// b+1's); another takes the two f16 scales, 8 lanes each. (The nibble
// bytes start at even offsets, so AVX-512BW's word permutations do.)
func (g *gen) qPairStep(rows []value.Value, xq, xd, xc, b value.Value, acc []value.Value, oneLoad bool) []value.Value {
	const lanes = 16
	v16i, v16f := vecT(lanes, tI32), vecT(lanes, tF32)
	dpbusd := g.m.intrinsic("llvm.x86.avx512.vpdpbusd.512", v16i, v16i, v16i, v16i)
	bb := int64(gir.Q4_0.BlockBytes())
	xv := g.b.NewBitCast(g.loadVecRaw(tI8, 2*gir.QK, xq, g.mulc(b, gir.QK), nil), v16i)
	cv := g.loadVecRaw(tI32, lanes, xc, g.mulc(b, 8), nil)
	// d_x of each block, in the lanes of its products (upper half of each
	// block's lanes: high nibbles, 16×, so 1/16).
	d2 := g.loadVecRaw(tF32, 2, xd, b, nil)
	part := make([]constant.Constant, lanes)
	for i := range part {
		part[i] = cf(tF32, 1)
		if i%8 >= 4 {
			part[i] = cf(tF32, 1.0/16)
		}
	}
	spread := shuffleMask(lanes, func(i int) int { return i / 8 })
	dx := g.fmul(g.b.NewShuffleVector(d2, constant.NewUndef(d2.Type()), spread), constant.NewVector(v16f, part...))

	// oneLoad: one 64-byte load from the pair's start, of which 36 bytes
	// are the pair's (the caller knows the rest lies inside the row or the
	// next one). Otherwise lo holds bytes [0, 32) of the pair (d_b, block
	// b's nibbles, d_b+1 and 12 of block b+1's nibbles) and hi bytes
	// [20, 36) (block b+1's nibbles): two loads that stay inside it,
	// widened to one type for a two-source permutation.
	half := gir.QK / 2
	nibM := shuffleMask(2*gir.QK, func(i int) int {
		if i < gir.QK {
			return 2 + i%half
		}
		return gir.QK + i%half // hi's bytes, after lo's 32
	})
	oneM := shuffleMask(2*gir.QK, func(i int) int { return i/gir.QK*int(bb) + 2 + i%half })
	widenM := shuffleMask(gir.QK, func(i int) int { return i % half })
	maskV := nibbleMask(2 * gir.QK)
	scaleM := shuffleMask(lanes, func(i int) int { return i / 8 * int(bb) / 2 }) // word index of block i/8's d
	boff := g.mulc(b, bb)
	next := make([]value.Value, len(acc))
	for i, row := range rows {
		var q, dw value.Value
		if oneLoad {
			raw := g.loadVecRaw(tI8, 2*gir.QK, row, boff, nil)
			q = g.b.NewShuffleVector(raw, constant.NewUndef(raw.Type()), oneM)
			words := g.b.NewBitCast(raw, vecT(gir.QK, tI16))
			dw = g.b.NewShuffleVector(words, constant.NewUndef(words.Type()), scaleM)
		} else {
			lo := g.loadVecRaw(tI8, gir.QK, row, boff, nil)
			hi16 := g.loadVecRaw(tI8, gir.QK/2, row, g.addc(boff, bb+2), nil)
			hi := g.b.NewShuffleVector(hi16, constant.NewUndef(hi16.Type()), widenM)
			q = g.b.NewShuffleVector(lo, hi, nibM)
			words := g.b.NewBitCast(lo, vecT(gir.QK/2, tI16))
			dw = g.b.NewShuffleVector(words, constant.NewUndef(words.Type()), scaleM)
		}
		q = g.b.NewAnd(q, maskV)
		dot := g.b.NewCall(dpbusd, cv, g.b.NewBitCast(q, v16i), xv)
		s := g.fmul(g.b.NewFPExt(g.b.NewBitCast(dw, vecT(lanes, tF16)), v16f), dx)
		next[i] = g.fma(g.b.NewSIToFP(dot, v16f), s, acc[i])
	}
	return next
}
