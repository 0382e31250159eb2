package codegen

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/value"
)

// Prefill of quantised weights with integer dot products (AVX-512 VNNI).
// A QuantizeRows kernel first rounds the chunk's rows of x to integers per
// block of 32 in the arena, once for all threads; the matmul (XBits) then
// runs the panels of panel.go with integers for floats:
//
//   - q4_0 (XBits 8), the prefill counterpart of emitQGemvInt8 and under
//     the same rule: where the decode GEMVs quantise x to bytes, so does
//     prefill (QuantizesActivations), as llama.cpp does for every quantised
//     matmul. P columns × a K block of the weights are unsigned bytes
//     (q + 8), laid out so that one 512-bit vector holds 4 k of 16 columns:
//     vpdpbusd's unit, which adds, in each of 16 i32 lanes, the products of
//     4 unsigned bytes (one column's weights) with 4 signed ones (x[r, k..],
//     broadcast). Each block starts from its offset correction −8·Σx_q.
//   - q8_0 (XBits 16): x rounded to 16 bits per block (steps of
//     amax/32767, where bytes take amax/127), the weights widened to words,
//     2 k of 16 columns per vector: vpdpwssd's unit. Bytes ran as fast as
//     q4_0's but raised q8_0's KL divergence 1.7× on tiny-hot; with words
//     it stays the exact kernels' (tiny-hot 2.27e-5 against the
//     interpreter's 2.26e-5; the 2B's 0.000370, as before), and the 2B's
//     128-token prefill ran 79–92 tok/s against 51–53 on the f32 panels
//     (built binaries alternating on one weights file, three rounds; bf16
//     52–53). One thread, R = 128 (go test ./codegen -bench
//     'Q(GEMM|GeGLU|Down)PrefillQ8_0(Words)?$', two runs): q 189–245
//     against 126–144 GFLOP/s, GeGLU 252–254 against 95–141, down 230–242
//     against 123–139.
//
// A register tile of rows × P columns sums a block's 32 k in i32, then adds
// it, scaled by d_w (a vector of the panel's column scales) × d_x (the
// row's), to the f32 accumulators: per 16 columns, row and block, 8 (bytes)
// or 16 (words) integer dot products and 3 float operations, where the f32
// panels take 32 FMAs.
//
// For bytes, on the 2B shapes at R = 128, one thread, four runs
// alternating with the f32 panels (go test ./codegen -bench
// 'Q(GEMM|GeGLU|Down)PrefillQ4_0'):
// down 558–606 against 179–182 GFLOP/s, q 550–580 against 177–190, GeGLU
// 509–649 against 173–189; QuantizeRows takes about 4% of the prefill. The
// 2B model's 128-token q4_0 prefill ran 182–207 tok/s against 59–83 (built
// binaries alternating, three rounds). Quantising x within each matmul
// call instead, per thread and per chunk of columns, ran 140–150: every
// chunk rounded all of x again, which also grows with the thread count.

// intPanelRows is the rows of an integer panel's tile: with P = 4 vectors,
// 3 rows hold 12 i32 and 12 f32 accumulators and the 4 weight vectors in 28
// of the 32 registers. 3 measured ahead of 2 and 4 for bytes (medians of 5
// runs, GEMMAC_I8R alternating: down 608 against 580 and 557 GFLOP/s, q 579
// against 578 and 547, GeGLU 572 against 551 and 548).
var intPanelRows = 3

// intPanelK is the K block of a byte panel: 64 columns × 512 bytes, 32 KiB,
// which stays in L1 while the row tiles read it; 512 measured ahead of 1024
// and 2304 and level with 256 (go test ./codegen -bench
// 'Q(GEMM|Down)PrefillQ4_0', GEMMAC_I8K, alternating). Word panels take
// half the k for the same bytes: 256 k ran ahead of 128 and level with 512
// (go test ./codegen -bench 'Q(GEMM|GeGLU|Down)PrefillQ8_0Words',
// GEMMAC_I8K 256, 512 and 1024, two rounds).
var intPanelK = 512

// PrefillXBits is how t's prefill matmuls of R rows over weights of dt take
// x: 0 as f32, or 8 or 16 as QuantizeRows' integers (XBits): bytes for
// q4_0 and words for q8_0, on targets with 512-bit VNNI.
func (t Target) PrefillXBits(R int, dt gir.DType) int {
	if !usesPanels(R) || !t.hasVNNI() || t.Lanes != 16 || dt == gir.Q4_0 && !t.QuantizesActivations(dt) {
		return 0
	}
	return intPanelBits(dt)
}

// intPanelBits is the width of the integers the integer panels multiply
// weights of dt with: bytes for q4_0, words for q8_0 (0: none).
func intPanelBits(dt gir.DType) int {
	return map[gir.DType]int{gir.Q4_0: 8, gir.Q8_0: 16}[dt]
}

// checkXBits: bytes are for q4_0's prefill, words for q8_0's.
func checkXBits(bits, R int, dt gir.DType) error {
	if bits == 0 || bits == intPanelBits(dt) && usesPanels(R) {
		return nil
	}
	return fmt.Errorf("x as %d-bit integers is for more than %d rows of q4_0 (8) or q8_0 (16) weights, not %d rows of %v", bits, maxBatchRows, R, dt)
}

// QuantizeRows rounds rows of x to integers per block of 32 for the
// integer panels: for row r and block b, with Bits 8, x_q =
// round(x·127/amax) as bytes at r·K + 32·b (llama.cpp's q8_0 rounding), and
// with Bits 16, round(x·32767/amax) as words at r·K + 32·b in the word
// panels' order (wordOrderK); then the block's scale amax/Q (f32) in a
// table after the integers and, for bytes, the block's vpdpbusd starting
// value −8·Σx_q (i32), which undoes q4_0's unsigned weights, in another
// (QuantizedRowsBytes).
//
// Args: xq (QuantizedRowsBytes(R, K, Bits) bytes), x f32[R×K]. Items: the
// R rows.
type QuantizeRows struct{ R, K, Bits int }

func (s QuantizeRows) Name() string {
	return fmt.Sprintf("quantize_rows_r%d_k%d_i%d", s.R, s.K, s.Bits)
}
func (s QuantizeRows) Items() int64   { return int64(s.R) }
func (s QuantizeRows) Granule() int64 { return 1 }
func (s QuantizeRows) Args() []string { return []string{"xq", "x"} }
func (s QuantizeRows) Validate() error {
	if err := positive("R and K", s.R, s.K); err != nil {
		return err
	}
	if s.Bits != 8 && s.Bits != 16 {
		return fmt.Errorf("x is rounded to 8 or 16 bits, not %d", s.Bits)
	}
	return checkQuant(gir.Q8_0, s.K)
}

// QuantizedRowsBytes is the size of QuantizeRows' output for R rows of K
// at bits per element.
func QuantizedRowsBytes(R, K, bits int) int64 {
	tables := int64(4) // scales
	if bits == 8 {
		tables += 4 // corrections
	}
	return int64(R) * (int64(K)*int64(bits)/8 + tables*int64(K/gir.QK))
}

// quantizedRows are the tables of QuantizeRows' output at p (an i8*): the
// integers, the block scales and (bytes only, else nil) the corrections.
func (g *gen) quantizedRows(p value.Value, R, K, bits int) (xq, xd, xc value.Value) {
	nb := int64(R) * int64(K/gir.QK)
	xd = g.b.NewBitCast(g.gep(tI8, p, ci64(int64(R)*int64(K)*int64(bits)/8)), ptrT(tF32))
	if bits == 8 {
		xc = g.b.NewBitCast(g.gep(tF32, xd, ci64(nb)), ptrT(tI32))
	}
	return p, xd, xc
}

// wordOrderK is the k (within its block) of a word panel's element p:
// dword p/2 pairs k and k+2, so that sign-extending the two bytes of each
// word of a dword of 4 weights gives two of them (packWordBlock).
func wordOrderK(p int) int {
	t, h := p/2, p%2
	return 4*(t/2) + t%2 + 2*h
}

func (s QuantizeRows) emit(g *gen) {
	nb := int64(s.K / gir.QK)
	qmax := int64(1)<<(s.Bits-1) - 1
	xq, xd, xc := g.quantizedRows(g.argPtr(0, tI8), s.R, s.K, s.Bits)
	x := g.argPtr(1, tF32)
	if s.Bits == 16 && g.L() != 16 {
		panic(fmt.Sprintf("codegen: %s on %s, which has no 512-bit vpdpwssd", s.Name(), g.t.Name))
	}
	g.forRange(g.lo, g.hi, 1, func(r value.Value) {
		g.forRange(ci64(0), ci64(nb), 1, func(b value.Value) {
			k := g.add(g.mulc(r, int64(s.K)), g.mulc(b, gir.QK))
			qs, d := g.quantizeBlock(x, k, qmax)
			i := g.add(g.mulc(r, nb), b)
			g.store(d, xd, i)
			if s.Bits == 16 {
				half := vecT(gir.QK/2, tI16)
				w := g.b.NewShuffleVector(g.b.NewTrunc(qs[0], half), g.b.NewTrunc(qs[1], half), shuffleMask(gir.QK, wordOrderK))
				g.storeVecRaw(tI16, w, g.b.NewBitCast(xq, ptrT(tI16)), k, nil)
				return
			}
			var sum value.Value = ci(qs[0].Type(), 0)
			for j, q := range qs {
				sum = g.add(sum, q)
				g.storeBytes(q, xq, g.addc(k, int64(j*g.L())))
			}
			g.store(g.mulc(g.reduceInt(sum), -8), xc, i)
		})
	})
}

// emitPanelGemmInt is the prefill body of QMatmul and QGeGLU with XBits:
// weights of dt, x as QuantizeRows' output, on targets with VNNI.
func emitPanelGemmInt(g *gen, R, K, N int, dt gir.DType, bits, nw int, epi func(d []value.Value) value.Value) {
	if !g.t.hasVNNI() || g.L() != 16 {
		panic(fmt.Sprintf("codegen: integer panels on %s, which has no 512-bit VNNI", g.t.Name))
	}
	P := int(panelGranule(nw))
	kb := min(K, intPanelK*8/bits)
	out, x, ws, nvalid := g.gemmArgs(R, nw, tI8)
	xq, xd, xc := g.quantizedRows(g.b.NewBitCast(x, ptrT(tI8)), R, K, bits)
	dwords := nw * kb * bits / 32 * P
	panel := g.stack(tI32, dwords)
	ip := &intPanel{ws: ws, dt: dt, bits: bits, K: K, P: P, kb: kb, xq: g.b.NewBitCast(xq, ptrT(tI32)), xd: xd, xc: xc,
		panel: panel, scales: g.stack(tF32, nw*kb/gir.QK*P)}
	emitPanels(g, ip, panelShape{R: R, K: K, N: N, nw: nw, P: P, mr: intPanelRows, kb: kb, src: dt, ws: ws}, out, nvalid, epi)
}

// intPanel packs q4_0 panels as unsigned bytes (bits 8) or q8_0 panels as
// words (bits 16) and multiplies them with x's integers by vpdpbusd or
// vpdpwssd.
type intPanel struct {
	ws         []value.Value
	dt         gir.DType
	bits       int
	K, P, kb   int
	xq, xd, xc value.Value // QuantizeRows' tables (xq as i32*: a dword of x)
	// panel holds matrix m's dword kd (of the K block: k = 4·kd..4·kd+3
	// for bytes, k = wordOrderK(2·kd), wordOrderK(2·kd+1) for words) of
	// column c at (m·kw + kd)·P + c, kw the K block's dwords; scales, block
	// b's of column c at (m·kb/32 + b)·P + c.
	panel, scales value.Value
}

// dwords is the dwords a length of n elements takes.
func (p *intPanel) dwords(n int) int { return n * p.bits / 32 }

func (p *intPanel) accumulate(g *gen, acc []value.Value, r0 value.Value, mr int, k0 value.Value, klen int, pf prefetchNext) []value.Value {
	const L = 16
	nw, P, kw, nbk := len(p.ws), p.P, p.dwords(p.kb), p.kb/gir.QK
	nv := P / L
	nb := klen / gir.QK
	perBlock := p.dwords(gir.QK)
	v16i, v16f := vecT(L, tI32), vecT(L, tF32)
	dot := g.m.intrinsic("llvm.x86.avx512.vpdpbusd.512", v16i, v16i, v16i, v16i)
	if p.bits == 16 {
		dot = g.m.intrinsic("llvm.x86.avx512.vpdpwssd.512", v16i, v16i, v16i, v16i)
	}
	at := func(m, r, v int) int { return (m*mr+r)*nv + v }
	rowBlocks := int64(p.K / gir.QK)
	b0 := g.b.NewUDiv(k0, ci64(gir.QK)) // the block's first block of the row
	// Each row's first dword of x in the block.
	xr := make([]value.Value, mr)
	for r := range xr {
		xr[r] = g.add(g.mulc(g.addc(r0, int64(r)), int64(p.dwords(p.K))), g.b.NewUDiv(k0, ci64(int64(32/p.bits))))
	}
	_, acc = g.loop(ci64(0), ci64(int64(nb)), 1, acc, func(b value.Value, acc []value.Value) []value.Value {
		pf.line(g, g.add(g.mulc(g.b.NewUDiv(r0, ci64(int64(mr))), int64(nb)), b))
		// Row r's scale and starting value of block b, from QuantizeRows'
		// tables.
		iacc := make([]value.Value, len(acc))
		dx := make([]value.Value, mr)
		for r := 0; r < mr; r++ {
			rb := g.add(g.mulc(g.addc(r0, int64(r)), rowBlocks), g.add(b0, b))
			dx[r] = g.splat(g.load(tF32, p.xd, rb), L)
			var c value.Value = ci(v16i, 0)
			if p.xc != nil {
				c = g.splat(g.load(tI32, p.xc, rb), L)
			}
			for m := 0; m < nw; m++ {
				for v := 0; v < nv; v++ {
					iacc[at(m, r, v)] = c
				}
			}
		}
		for d := 0; d < perBlock; d++ {
			kd := g.addc(g.mulc(b, int64(perBlock)), int64(d)) // the dword in the panel's K block
			w := make([]value.Value, nw*nv)
			for m := 0; m < nw; m++ {
				for v := 0; v < nv; v++ {
					w[m*nv+v] = g.loadVecRaw(tI32, L, p.panel, g.addc(g.mulc(g.addc(kd, int64(m*kw)), int64(P)), int64(v*L)), nil)
				}
			}
			for r := 0; r < mr; r++ {
				xw := g.splat(g.load(tI32, p.xq, g.add(xr[r], kd)), L) // x's dword kd of row r
				for m := 0; m < nw; m++ {
					for v := 0; v < nv; v++ {
						i := at(m, r, v)
						iacc[i] = g.b.NewCall(dot, iacc[i], w[m*nv+v], xw)
					}
				}
			}
		}
		next := make([]value.Value, len(acc))
		for m := 0; m < nw; m++ {
			for v := 0; v < nv; v++ {
				dw := g.loadF(p.scales, g.addc(g.mulc(g.addc(b, int64(m*nbk)), int64(P)), int64(v*L)), nil)
				for r := 0; r < mr; r++ {
					i := at(m, r, v)
					next[i] = g.fma(g.fmul(g.b.NewSIToFP(iacc[i], v16f), dw), dx[r], acc[i])
				}
			}
		}
		return next
	})
	return acc
}

// pack lays the blocks of [k0, k0+klen) of rows j..j+P of each matrix into
// the panel (q4_0 as unsigned bytes q + 8, q8_0 as words) and their scales
// into scales. A block of 16 columns is 16 × 8 dwords of bytes, transposed
// in registers as 8 vectors of two columns each.
func (p *intPanel) pack(g *gen, j, lastCol, k0 value.Value, klen int) {
	const L = 16
	kw, nbk, perBlock := p.dwords(p.kb), p.kb/gir.QK, p.dwords(gir.QK)
	bb := int64(p.dt.BlockBytes())
	for m, w := range p.ws {
		for c0 := 0; c0 < p.P; c0 += L {
			rowAt := make([]value.Value, L)
			for c := range rowAt {
				rowAt[c] = g.rowBytesAt(p.dt, w, p.K, g.smin(g.addc(j, int64(c0+c)), lastCol), k0)
			}
			g.forRange(ci64(0), ci64(int64(klen/gir.QK)), 1, func(b value.Value) {
				boff := g.mulc(b, bb)
				cols := make([]value.Value, L) // column c's 32 bytes as 8 dwords
				for c := range cols {
					cols[c] = g.b.NewBitCast(p.blockBytes(g, rowAt[c], boff), vecT(gir.QK/4, tI32))
				}
				g.storeVec(g.blockScales(rowAt, boff), p.scales, g.addc(g.mulc(g.addc(b, int64(m*nbk)), int64(p.P)), int64(c0)), nil)
				put := func(d int, v value.Value) {
					kd := g.addc(g.mulc(b, int64(perBlock)), int64(d))
					g.storeVecRaw(tI32, v, p.panel, g.addc(g.mulc(g.addc(kd, int64(m*kw)), int64(p.P)), int64(c0)), nil)
				}
				for t, v := range g.columnDwords(cols) {
					if p.bits == 8 {
						put(t, v)
						continue
					}
					// Dword t's bytes k = 4t..4t+3 as two words: sign-extend
					// the low byte of each (k = 4t, 4t+2), then the high.
					ws := g.b.NewBitCast(v, vecT(2*L, tI16))
					eight := ci(ws.Type(), 8)
					put(2*t, g.b.NewBitCast(g.b.NewAShr(g.b.NewShl(ws, eight), eight), v.Type()))
					put(2*t+1, g.b.NewBitCast(g.b.NewAShr(ws, eight), v.Type()))
				}
			})
		}
	}
}

// blockBytes is the block's 32 weights at byte offset boff of row as they
// go into a byte dword: q4_0's nibbles unsigned (low nibbles, k 0..15, then
// high, k 16..31), q8_0's bytes as stored.
func (p *intPanel) blockBytes(g *gen, row, boff value.Value) value.Value {
	if p.dt == gir.Q8_0 {
		return g.loadVecRaw(tI8, gir.QK, row, g.addc(boff, 2), nil)
	}
	// The block's 16 bytes, then the same shifted down a nibble (as
	// words: x86 has no byte shifts), masked.
	v8w := vecT(gir.QK/4, tI16)
	raw := g.loadVecRaw(tI8, gir.QK/2, row, g.addc(boff, 2), nil)
	high := g.b.NewBitCast(g.b.NewLShr(g.b.NewBitCast(raw, v8w), ci(v8w, 4)), raw.Type())
	concat := shuffleMask(gir.QK, func(i int) int { return i })
	return g.b.NewAnd(g.b.NewShuffleVector(raw, high, concat), ci(vecT(gir.QK, tI8), 15))
}

// columnDwords transposes one block of 16 columns, each 32 bytes given as 8
// dwords (cols[c]), into 8 vectors: vector t holds dword t (k = 4t..4t+3)
// of every column, column c in lane c. Vector i of the first step pairs
// columns i and i+8, so the transpose runs on 8-lane halves.
func (g *gen) columnDwords(cols []value.Value) []value.Value {
	const L = 16
	pair := shuffleMask(L, func(i int) int { return i })
	vs := make([]value.Value, L/2)
	for i := range vs {
		vs[i] = g.b.NewShuffleVector(cols[i], cols[i+L/2], pair)
	}
	return g.transpose(vs)
}

// blockScales is the f16 scale of the block at byte offset boff of each of
// the 16 rows in rowAt, widened to f32 in one conversion, column c in lane c.
func (g *gen) blockScales(rowAt []value.Value, boff value.Value) value.Value {
	var h value.Value = constant.NewUndef(vecT(len(rowAt), tI16))
	for c, row := range rowAt {
		bits := g.b.NewLoad(tI16, g.b.NewBitCast(g.gep(tI8, row, boff), ptrT(tI16)))
		bits.Align = 1
		h = g.b.NewInsertElement(h, bits, ci32(int64(c)))
	}
	if !g.t.nativeF16() {
		return g.halfBits(h)
	}
	return g.b.NewFPExt(g.b.NewBitCast(h, vecT(len(rowAt), tF16)), vecT(len(rowAt), tF32))
}
