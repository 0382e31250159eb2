package codegen

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/value"
)

// Prefill of q4_0 weights with byte dot products (AVX-512 VNNI), the
// prefill counterpart of emitQGemvInt8 and under the same rule: where the
// decode GEMVs quantise x to bytes, so does prefill (QuantizesActivations),
// as llama.cpp does for every quantised matmul.
//
// A QuantizeRows kernel first rounds the chunk's rows of x to q8_0 blocks
// in the arena, once for all threads; the matmul (XBytes) then runs the
// panels of panel.go with bytes for floats: P columns × a K block of the
// weights as unsigned bytes (q + 8), laid out so that one 512-bit vector
// holds 4 consecutive k of 16 columns — vpdpbusd's unit: it adds, in each
// of 16 i32 lanes, the products of 4 unsigned bytes (one column's weights)
// with 4 signed ones (x[r, k..k+4], broadcast). A register tile of rows ×
// P columns sums a block's 32 k in i32, starting from the block's offset
// correction −8·Σx_q, then adds it, scaled by d_w (a vector of the panel's
// column scales) × d_x (the row's), to the f32 accumulators: 8 byte dot
// products and 3 float operations per 16 columns, row and block, where the
// f32 panels take 32 FMAs.
//
// On the 2B shapes at R = 128, one thread, four runs alternating with the
// f32 panels (go test ./codegen -bench 'Q(GEMM|GeGLU|Down)PrefillQ4_0'):
// down 558–606 against 179–182 GFLOP/s, q 550–580 against 177–190, GeGLU
// 509–649 against 173–189; QuantizeRows takes about 4% of the prefill. The
// 2B model's 128-token q4_0 prefill ran 182–207 tok/s against 59–83 (built
// binaries alternating, three rounds). Quantising x within each matmul
// call instead, per thread and per chunk of columns, ran 140–150: every
// chunk rounded all of x again, which also grows with the thread count.

// int8PanelRows is the rows of a byte panel's tile: with P = 4 vectors, 3
// rows hold 12 i32 and 12 f32 accumulators and the 4 weight vectors in 28
// of the 32 registers. 3 measured ahead of 2 and 4 (medians of 5 runs,
// GEMMAC_I8R alternating: down 608 against 580 and 557 GFLOP/s, q 579
// against 578 and 547, GeGLU 572 against 551 and 548).
var int8PanelRows = 3

// int8PanelK is the K block of a byte panel: 64 columns × 512 bytes, 32 KiB,
// which stays in L1 while the row tiles read it; 512 measured ahead of 1024
// and 2304 and level with 256 (go test ./codegen -bench
// 'Q(GEMM|Down)PrefillQ4_0', GEMMAC_I8K, alternating).
var int8PanelK = 512

// QuantizesPrefill reports whether t's prefill matmuls of R rows over
// weights of dt take x as QuantizeRows' bytes (XBytes).
func (t Target) QuantizesPrefill(R int, dt gir.DType) bool {
	return usesPanels(R) && t.QuantizesActivations(dt)
}

// QuantizeRows rounds rows of x to q8_0 blocks for the byte panels: for
// row r and block b, x_q = round(x·127/amax) as bytes at r·K + 32·b, the
// block's scale amax/127 (f32) and its vpdpbusd starting value −8·Σx_q
// (i32), which undoes q4_0's unsigned weights, in two tables after the
// bytes (QuantizedRowsBytes).
//
// Args: xq (QuantizedRowsBytes(R, K) bytes), x f32[R×K]. Items: the R rows.
type QuantizeRows struct{ R, K int }

func (s QuantizeRows) Name() string   { return fmt.Sprintf("quantize_rows_r%d_k%d", s.R, s.K) }
func (s QuantizeRows) Items() int64   { return int64(s.R) }
func (s QuantizeRows) Granule() int64 { return 1 }
func (s QuantizeRows) Args() []string { return []string{"xq", "x"} }
func (s QuantizeRows) Validate() error {
	if err := positive("R and K", s.R, s.K); err != nil {
		return err
	}
	return checkQuant(gir.Q8_0, s.K)
}

// QuantizedRowsBytes is the size of QuantizeRows' output for R rows of K.
func QuantizedRowsBytes(R, K int) int64 {
	return int64(R) * (int64(K) + 8*int64(K/gir.QK))
}

// quantizedRows are the tables of QuantizeRows' output at p (an i8*): the
// bytes, the block scales and the corrections.
func (g *gen) quantizedRows(p value.Value, R, K int) (xq, xd, xc value.Value) {
	nb := int64(R) * int64(K/gir.QK)
	xd = g.b.NewBitCast(g.gep(tI8, p, ci64(int64(R)*int64(K))), ptrT(tF32))
	xc = g.b.NewBitCast(g.gep(tF32, xd, ci64(nb)), ptrT(tI32))
	return p, xd, xc
}

func (s QuantizeRows) emit(g *gen) {
	nb := int64(s.K / gir.QK)
	xq, xd, xc := g.quantizedRows(g.argPtr(0, tI8), s.R, s.K)
	x := g.argPtr(1, tF32)
	g.forRange(g.lo, g.hi, 1, func(r value.Value) {
		g.forRange(ci64(0), ci64(nb), 1, func(b value.Value) {
			k := g.add(g.mulc(r, int64(s.K)), g.mulc(b, gir.QK))
			qs, d := g.quantizeBlock(x, k)
			i := g.add(g.mulc(r, nb), b)
			g.store(d, xd, i)
			var sum value.Value = ci(qs[0].Type(), 0)
			for j, q := range qs {
				sum = g.add(sum, q)
				g.storeBytes(q, xq, g.addc(k, int64(j*g.L())))
			}
			g.store(g.mulc(g.reduceInt(sum), -8), xc, i)
		})
	})
}

// emitPanelGemmInt8 is the prefill body of QMatmul and QGeGLU with XBytes:
// q4_0 weights, x as QuantizeRows' output, on targets with VNNI.
func emitPanelGemmInt8(g *gen, R, K, N int, nw int, epi func(d []value.Value) value.Value) {
	if !g.t.hasVNNI() || g.L() != 16 {
		panic(fmt.Sprintf("codegen: byte panels on %s, which has no 512-bit vpdpbusd", g.t.Name))
	}
	P := int(panelGranule(nw))
	kb := min(K, int8PanelK)
	out, x, ws, nvalid := g.gemmArgs(R, nw, tI8)
	xq, xd, xc := g.quantizedRows(g.b.NewBitCast(x, ptrT(tI8)), R, K)
	panel := g.stack(tF32, nw*kb/4*P)
	b := &bytePanel{ws: ws, K: K, P: P, kb: kb, xq: g.b.NewBitCast(xq, ptrT(tI32)), xd: xd, xc: xc,
		panel: panel, panelI: g.b.NewBitCast(panel, ptrT(tI32)), scales: g.stack(tF32, nw*kb/gir.QK*P)}
	emitPanels(g, b, panelShape{R: R, K: K, N: N, nw: nw, P: P, mr: int8PanelRows, kb: kb, src: gir.Q4_0, ws: ws}, out, nvalid, epi)
}

// bytePanel packs q4_0 panels as unsigned bytes and multiplies them with
// x's bytes by vpdpbusd.
type bytePanel struct {
	ws         []value.Value
	K, P, kb   int
	xq, xd, xc value.Value // QuantizeRows' tables (xq as i32*: 4 bytes of x)
	// panel holds matrix m's dword kd (k = 4·kd..4·kd+3 of the block) of
	// column c at (m·kb/4 + kd)·P + c (panelI: the same as i32*); scales,
	// block b's of column c at (m·kb/32 + b)·P + c.
	panel, panelI, scales value.Value
}

func (p *bytePanel) accumulate(g *gen, acc []value.Value, r0 value.Value, mr int, k0 value.Value, klen int, pf prefetchNext) []value.Value {
	const L = 16
	nw, P, kw, nbk := len(p.ws), p.P, p.kb/4, p.kb/gir.QK
	nv := P / L
	nb := klen / gir.QK
	v16i, v16f := vecT(L, tI32), vecT(L, tF32)
	dpbusd := g.m.intrinsic("llvm.x86.avx512.vpdpbusd.512", v16i, v16i, v16i, v16i)
	at := func(m, r, v int) int { return (m*mr+r)*nv + v }
	rowBlocks := int64(p.K / gir.QK)
	b0 := g.b.NewUDiv(k0, ci64(gir.QK)) // the block's first block of the row
	// Each row's first dword of x in the block.
	xr := make([]value.Value, mr)
	for r := range xr {
		xr[r] = g.add(g.mulc(g.addc(r0, int64(r)), int64(p.K/4)), g.b.NewUDiv(k0, ci64(4)))
	}
	_, acc = g.loop(ci64(0), ci64(int64(nb)), 1, acc, func(b value.Value, acc []value.Value) []value.Value {
		pf.line(g, g.add(g.mulc(g.b.NewUDiv(r0, ci64(int64(mr))), int64(nb)), b))
		// Row r's correction and scale of block b, from QuantizeRows' tables.
		iacc := make([]value.Value, len(acc))
		dx := make([]value.Value, mr)
		for r := 0; r < mr; r++ {
			rb := g.add(g.mulc(g.addc(r0, int64(r)), rowBlocks), g.add(b0, b))
			dx[r] = g.splat(g.load(tF32, p.xd, rb), L)
			c := g.splat(g.load(tI32, p.xc, rb), L)
			for m := 0; m < nw; m++ {
				for v := 0; v < nv; v++ {
					iacc[at(m, r, v)] = c
				}
			}
		}
		for d := 0; d < gir.QK/4; d++ {
			kd := g.addc(g.mulc(b, gir.QK/4), int64(d)) // the dword in the panel's K block
			w := make([]value.Value, nw*nv)
			for m := 0; m < nw; m++ {
				for v := 0; v < nv; v++ {
					w[m*nv+v] = g.loadVecRaw(tI32, L, p.panelI, g.addc(g.mulc(g.addc(kd, int64(m*kw)), int64(P)), int64(v*L)), nil)
				}
			}
			for r := 0; r < mr; r++ {
				xb := g.splat(g.load(tI32, p.xq, g.add(xr[r], kd)), L)
				for m := 0; m < nw; m++ {
					for v := 0; v < nv; v++ {
						i := at(m, r, v)
						iacc[i] = g.b.NewCall(dpbusd, iacc[i], w[m*nv+v], xb)
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

// pack unpacks the q4_0 blocks of [k0, k0+klen) of rows j..j+P of each
// matrix into the panel as unsigned bytes (q + 8) and their scales into
// scales. A block of 16 columns is 16 × 8 dwords, transposed in registers
// as 8 vectors of two columns each.
func (p *bytePanel) pack(g *gen, j, lastCol, k0 value.Value, klen int) {
	const L = 16
	kw, nbk := p.kb/4, p.kb/gir.QK
	bb := int64(gir.Q4_0.BlockBytes())
	// The block's 16 bytes, then the same shifted down a nibble (as
	// words: x86 has no byte shifts), masked: low nibbles (k 0..15), then
	// high (k 16..31).
	concat := shuffleMask(gir.QK, func(i int) int { return i })
	v8w := vecT(gir.QK/4, tI16)
	for m, w := range p.ws {
		for c0 := 0; c0 < p.P; c0 += L {
			rowAt := make([]value.Value, L)
			for c := range rowAt {
				rowAt[c] = g.rowBytesAt(gir.Q4_0, w, p.K, g.smin(g.addc(j, int64(c0+c)), lastCol), k0)
			}
			g.forRange(ci64(0), ci64(int64(klen/gir.QK)), 1, func(b value.Value) {
				boff := g.mulc(b, bb)
				cols := make([]value.Value, L) // column c's 32 bytes as 8 dwords
				for c := range cols {
					raw := g.loadVecRaw(tI8, gir.QK/2, rowAt[c], g.addc(boff, 2), nil)
					high := g.b.NewBitCast(g.b.NewLShr(g.b.NewBitCast(raw, v8w), ci(v8w, 4)), raw.Type())
					q := g.b.NewAnd(g.b.NewShuffleVector(raw, high, concat), ci(vecT(gir.QK, tI8), 15))
					cols[c] = g.b.NewBitCast(q, vecT(gir.QK/4, tI32))
				}
				g.storeVec(g.blockScales(rowAt, boff), p.scales, g.addc(g.mulc(g.addc(b, int64(m*nbk)), int64(p.P)), int64(c0)), nil)
				for t, v := range g.columnDwords(cols) {
					kd := g.addc(g.mulc(b, gir.QK/4), int64(t))
					g.storeVec(v, p.panel, g.addc(g.mulc(g.addc(kd, int64(m*kw)), int64(p.P)), int64(c0)), nil)
				}
			})
		}
	}
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
