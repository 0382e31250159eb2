package codegen

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// Prefill matmuls (R > maxBatchRows rows) as outer products: each weight
// panel — P output columns × a K block — is widened (or dequantised) once
// per call into an f32 stack buffer laid out k-major, P floats per k; a
// register tile of mr rows × P columns then takes, per k, the panel's P/L
// vectors and one broadcast x[r, k] per row, and accumulates whole output
// vectors. Nothing is reduced across lanes, and every weight dtype runs the
// same f32 tile, but for q4_0 where activations are quantised to bytes
// (panel_int8.go).
//
// f32 weights that only matmuls read are laid out in panels at load
// (ir.LayPanels, Matmul.Panels): the tiles then read them where they are,
// with no pack, and decode runs the same tiles on one row tile, streaming
// each panel whole. On the 2B's shapes (two threads, cold weights, calls
// alternating with the row layout: go test ./codegen -bench LaidPanels)
// prefill ran 1.05–1.12× faster and decode level.
//
// This replaced dot-product tiles (4 rows × 6 weight rows, each accumulator
// a vector along k, summed across its lanes at the end of every K block)
// that reached 70–80% of one thread's FMA peak. On the 2B shapes at R = 128,
// one thread, medians of 4–6 runs alternating with the old tiles (go test
// ./codegen -bench 'Prefill'): f32 down 1.24×, GeGLU 1.18×, q 1.03×; bf16
// down 1.20×, GeGLU 1.11×; q8_0 1.06–1.07×; q4_0 GeGLU 1.06×, q 0.98×.
// In the 2B model, prefill of 128 tokens rose 1.10× (f32), 1.12× (bf16) and
// 1.10× (q4_0).

// panelVectors is P/L at 16 lanes (output vectors per row of the tile) for
// one and two weight matrices; panelRows is mr. The accumulators,
// mr·P/L·nw, are 24 of the 32 AVX-512 registers. 6 × 4 vectors (6
// broadcasts and 4 loads per 24 FMAs) measured ahead of 12 × 2, 14 × 2,
// 8 × 3 and 16 × 1 for one matrix; 6 × 2 of each GeGLU matrix level with
// 4 × 3 and ahead of 12 × 1.
var (
	panelVectors = [2]int{4, 2}
	panelRows    = [2]int{6, 6}
)

// panelBytes bounds a panel's f32 buffer (nw matrices × P columns × the K
// block); K is split into equal blocks to fit. 64 KiB (in L2, next to the
// rows of x) measured level with 128 KiB and ahead of 24 and 256 KiB.
var panelBytes int64 = 64 << 10

// panelGranule is the column granule of a panel matmul: a whole panel at the
// widest vectors (16 lanes), so every narrower target's panels divide it.
func panelGranule(nw int) int64 { return int64(panelVectors[nw-1] * 16) }

// usesPanels reports whether a matmul of R rows is lowered as panels.
func usesPanels(R int) bool { return R > maxBatchRows }

// emitPanelGemm is the prefill body of Matmul, GeGLU, QMatmul and QGeGLU
// over f32 panels (nw weight matrices stored as src), and every body of a
// Matmul or GeGLU whose f32 weights are laid out in panels already (laid:
// see ir.LayPanels), which then reads them where they are.
func emitPanelGemm(g *gen, R, K, N int, src gir.DType, nw int, laid bool, epi func(d []value.Value) value.Value) {
	L := g.L()
	P := int(panelGranule(nw)) // the same columns on every target
	mr := panelRows[nw-1]
	if L < 16 {
		mr = max(1, 12/(P/L*nw)) // 16 registers: 12 accumulators
	}
	mr = min(mr, R)
	kb := K
	if nb := (int64(nw*P*K)*4 + panelBytes - 1) / panelBytes; nb > 1 {
		kb = (K + int(nb) - 1) / int(nb)
		kb = (kb + L - 1) / L * L
	}
	if src.IsQuantized() {
		kb = (kb + gir.QK - 1) / gir.QK * gir.QK // whole blocks
	}
	kb = min(kb, K) // rounding up may pass K
	// One row tile (decode, a small batch) reads each laid weight once:
	// no block of it needs to stay in L2, so K runs whole and the panels
	// stream, each prefetched ahead (laidStreamPrefetch).
	stream := laid && R <= mr
	if stream {
		kb = K
	}

	out, x, ws, nvalid := g.gemmArgs(R, nw, srcElemType(src))
	f := &floatPanel{src: src, ws: ws, x: x, K: K, P: P, kb: kb, laid: laid, stream: stream}
	if !laid {
		f.panel = g.stack(tF32, nw*kb*P)
	}
	emitPanels(g, f, panelShape{R: R, K: K, N: N, nw: nw, P: P, mr: mr, kb: kb, src: src, ws: ws, laid: laid}, out, nvalid, epi)
}

// panelShape is what the panel loops need to know of a matmul: R rows of K
// to N columns from nw matrices (ws, stored as src), in panels of P columns
// (per matrix) × K blocks of kb, run by row tiles of mr.
type panelShape struct {
	R, K, N, nw, P, mr, kb int
	src                    gir.DType
	ws                     []value.Value
	laid                   bool // ws are laid out in panels (ir.LayPanels)
}

// panelKind is how panels are filled and multiplied: widened to f32
// (floatPanel) or as bytes for byte dot products (bytePanel).
type panelKind interface {
	// pack fills the panel of rows j..j+P of each matrix (rows past
	// lastCol repeat it) with the K block [k0, k0+klen).
	pack(g *gen, j, lastCol, k0 value.Value, klen int)
	// accumulate adds rows [r0, r0+mr) × the packed panel, over the
	// block's klen elements from k0, to acc (nw·mr·P/L vectors: matrix,
	// then row, then vector). Each loop step prefetches a line of the
	// next block (pf.line, numbered across the block's row tiles).
	accumulate(g *gen, acc []value.Value, r0 value.Value, mr int, k0 value.Value, klen int, pf prefetchNext) []value.Value
}

// emitPanels runs panels of P columns over [lo, hi) — the last, when the
// chunk is not whole panels, masked to what is left — and inside each, K
// blocks, each packed once and then run by every row tile. Partial sums
// between K blocks go to out (one matrix) or to a stack scratch (GeGLU,
// whose epilogue needs both sums).
func emitPanels(g *gen, kind panelKind, s panelShape, out, nvalid value.Value, epi func(d []value.Value) value.Value) {
	L := g.L()
	R, K, N, nw, P, kb := s.R, s.K, s.N, s.nw, s.P, s.kb
	nv := P / L
	var scratch value.Value // GeGLU's partial sums: nw × R × P
	if nw > 1 && kb < K {
		scratch = g.stack(tF32, nw*R*P)
	}

	// tile accumulates rows [r0, r0+mr) × the panel's P columns from j over
	// K elements [k0, k0+klen); masks[v] limits the stores of vector v to
	// the chunk's columns.
	tile := func(j value.Value, masks []value.Value, r0 value.Value, mr int, k0 value.Value, klen int, first, last bool, pf prefetchNext) {
		at := func(m, r, v int) int { return (m*mr+r)*nv + v }
		outIdx := func(r, v int) value.Value {
			return g.add(g.mulc(g.addc(r0, int64(r)), int64(N)), g.addc(j, int64(v*L)))
		}
		scratchIdx := func(m, r, v int) value.Value {
			return g.addc(g.mulc(g.addc(r0, int64(m*R+r)), int64(P)), int64(v*L))
		}
		acc := make([]value.Value, nw*mr*nv)
		for m := 0; m < nw; m++ {
			for r := 0; r < mr; r++ {
				for v := 0; v < nv; v++ {
					switch {
					case first:
						acc[at(m, r, v)] = cf(g.vf(), 0)
					case nw == 1:
						acc[at(m, r, v)] = g.loadF(out, outIdx(r, v), masks[v])
					default:
						acc[at(m, r, v)] = g.loadF(scratch, scratchIdx(m, r, v), nil)
					}
				}
			}
		}
		acc = kind.accumulate(g, acc, r0, mr, k0, klen, pf)
		for r := 0; r < mr; r++ {
			for v := 0; v < nv; v++ {
				switch {
				case last:
					vals := make([]value.Value, nw)
					for m := range vals {
						vals[m] = acc[at(m, r, v)]
					}
					g.storeVec(epi(vals), out, outIdx(r, v), masks[v])
				case nw == 1:
					g.storeVec(acc[at(0, r, v)], out, outIdx(r, v), masks[v])
				default:
					for m := 0; m < nw; m++ {
						g.storeVec(acc[at(m, r, v)], scratch, scratchIdx(m, r, v), nil)
					}
				}
			}
		}
	}

	// A chunk is whole panels but for its last columns when it ends short
	// of one (any split must work): one path serves both, its stores
	// masked to the columns left (all of them, but at the end) and rows
	// past hi repeating its last one in the panel (pack).
	lastCol := g.addc(g.hi, -1)

	// block runs the K block [k0, k0+klen) of the panel at j: packs it,
	// then every row tile (the rows left over, fewer than mr, as one tile).
	block := func(j value.Value, masks []value.Value, k0 value.Value, klen int, first, last bool) {
		kind.pack(g, j, lastCol, k0, klen)
		// The next block's weights (this panel's next K block, or the
		// next panel's first) come from memory while this one's row
		// tiles run.
		jn, kn := j, g.addc(k0, int64(klen))
		if last {
			jn, kn = g.addc(j, int64(P)), ci64(0)
		}
		mr := s.mr
		pf := prefetchNext{src: s.src, ws: s.ws, K: K, rows: P, j: jn, k0: kn, klen: kb, laid: s.laid}
		r := g.forRange(ci64(0), g.addc(nvalid, -int64(mr-1)), int64(mr), func(r0 value.Value) {
			tile(j, masks, r0, mr, k0, klen, first, last, pf)
		})
		n := g.b.NewSub(nvalid, r)
		for rows := mr - 1; rows >= 1; rows-- {
			g.ifThen(g.b.NewICmp(enum.IPredEQ, n, ci64(int64(rows))), func() { tile(j, masks, r, rows, k0, klen, first, last, prefetchNext{}) })
		}
	}
	nfull := (K - 1) / kb // K blocks before the last
	columns := func(j value.Value, masks []value.Value) {
		block(j, masks, ci64(0), kb, true, nfull == 0)
		if nfull == 0 {
			return
		}
		if nfull > 1 {
			g.forRange(ci64(int64(kb)), ci64(int64(nfull*kb)), int64(kb), func(k0 value.Value) {
				block(j, masks, k0, kb, false, false)
			})
		}
		block(j, masks, ci64(int64(nfull*kb)), K-nfull*kb, false, true)
	}
	start := g.lo
	if s.laid {
		// Laid panels start at multiples of P: a chunk that starts inside
		// one runs it whole, its stores masked to the chunk's columns.
		start = g.sub(g.lo, g.b.NewURem(g.lo, ci64(int64(P))))
	}
	g.forRange(start, g.hi, int64(P), func(j value.Value) {
		left, skip := g.sub(g.hi, j), g.sub(g.lo, j)
		masks := make([]value.Value, nv)
		for v := range masks {
			masks[v] = g.maskBelow(L, g.addc(left, -int64(v*L)))
			if s.laid {
				masks[v] = g.b.NewAnd(masks[v], g.maskFrom(L, g.addc(skip, -int64(v*L))))
			}
		}
		columns(j, masks)
	})
}

// floatPanel packs panels as f32 (widened or dequantised from src) and
// multiplies them with FMAs: per k, the panel's P/L vectors and one
// broadcast x[r, k] per row. Weights laid out in panels (laid) are read
// where they are instead: there is nothing to pack.
type floatPanel struct {
	src      gir.DType
	ws       []value.Value
	x        value.Value
	K, P, kb int
	panel    value.Value // nw·kb·P floats; nil when laid
	laid     bool
	stream   bool        // laid, and one row tile: prefetch each panel ahead
	j        value.Value // the laid panel's first column, set by pack
}

// laidStreamPrefetch is how far ahead (bytes) a streaming laid panel
// prefetches. With 2 KiB, the 2B's f32 decode GEMVs and GeGLU on panels
// ran level with the row tiles they replaced (two threads, cold weights,
// 60 calls alternating, Intel Xeon); without it the GeGLU ran 5–7% behind.
const laidStreamPrefetch = 2048

func (f *floatPanel) pack(g *gen, j, lastCol, k0 value.Value, klen int) {
	if f.laid {
		f.j = j
		return
	}
	g.packPanel(f.src, f.ws, f.K, j, lastCol, f.P, k0, klen, f.kb, f.panel)
}

// weights loads the panel's vector v of matrix m at k (k counted from the
// block's k0).
func (f *floatPanel) weights(g *gen, m, v int, k0, k value.Value) value.Value {
	if f.laid {
		return g.loadF(f.ws[m], g.addc(g.laidAt(f.j, g.add(k0, k), f.K, f.P), int64(v*g.L())), nil)
	}
	return g.loadF(f.panel, g.addc(g.mulc(k, int64(f.P)), int64(m*f.kb*f.P+v*g.L())), nil)
}

func (f *floatPanel) accumulate(g *gen, acc []value.Value, r0 value.Value, mr int, k0 value.Value, klen int, pf prefetchNext) []value.Value {
	L, nw, P := g.L(), len(f.ws), f.P
	nv := P / L
	xr := make([]value.Value, mr)
	for r := range xr {
		xr[r] = g.gep(tF32, f.x, g.add(g.mulc(g.addc(r0, int64(r)), int64(f.K)), k0))
	}
	step := func(k value.Value, acc []value.Value) []value.Value {
		next := append([]value.Value(nil), acc...)
		w := make([]value.Value, nw*nv)
		for m := 0; m < nw; m++ {
			for v := 0; v < nv; v++ {
				w[m*nv+v] = f.weights(g, m, v, k0, k)
			}
		}
		for r := 0; r < mr; r++ {
			xb := g.splat(g.load(tF32, xr[r], k), L)
			for m := 0; m < nw; m++ {
				for v := 0; v < nv; v++ {
					i := (m*mr+r)*nv + v
					next[i] = g.fma(xb, w[m*nv+v], next[i])
				}
			}
		}
		return next
	}
	const unroll = 2
	full := klen / unroll * unroll
	if full > 0 {
		_, acc = g.loop(ci64(0), ci64(int64(full)), unroll, acc, func(k value.Value, acc []value.Value) []value.Value {
			if f.stream {
				f.prefetchAhead(g, k0, k, unroll)
			} else {
				pf.line(g, g.add(g.mulc(g.b.NewUDiv(r0, ci64(int64(mr))), int64(full/unroll)), g.b.NewUDiv(k, ci64(unroll))))
			}
			for u := 0; u < unroll; u++ {
				acc = step(g.addc(k, int64(u)), acc)
			}
			return acc
		})
	}
	for k := full; k < klen; k++ {
		acc = step(ci64(int64(k)), acc)
	}
	return acc
}

// laidAt is where (in floats) row k of the panel of columns from j (a
// multiple of P) starts in a K-column matrix laid out in panels of P
// (ir.LayPanels): panel j/P starts at j·K, and each of its rows holds P.
func (g *gen) laidAt(j, k value.Value, K, P int) value.Value {
	return g.add(g.mulc(j, int64(K)), g.mulc(k, int64(P)))
}

// prefetchAhead prefetches, laidStreamPrefetch bytes ahead, the lines of
// each matrix that n steps of k from k0+k read.
func (f *floatPanel) prefetchAhead(g *gen, k0, k value.Value, n int) {
	at := g.mulc(g.laidAt(f.j, g.add(k0, k), f.K, f.P), 4)
	for _, w := range f.ws {
		for o := 0; o < n*f.P*4; o += 64 {
			g.prefetch(tI8, g.b.NewBitCast(w, tI8P), g.addc(at, int64(o+laidStreamPrefetch)))
		}
	}
}

// prefetchNext is the weights a panel block prefetches for the next: rows
// j.. j+rows of each matrix in ws (stored as src), elements [k0, k0+klen).
type prefetchNext struct {
	src     gir.DType
	ws      []value.Value
	K, rows int
	j, k0   value.Value
	klen    int
	laid    bool // ws are laid out in panels: the block is one run of bytes
}

// line prefetches cache line i of the block (matrix by matrix, row by row;
// lines past the end repeat the last).
func (p prefetchNext) line(g *gen, i value.Value) {
	if p.ws == nil {
		return
	}
	perRow := (int64(p.src.BytesFor(p.klen)) + 63) / 64
	perMatrix := perRow * int64(p.rows)
	i = g.smin(i, ci64(perMatrix*int64(len(p.ws))-1))
	m, i := g.b.NewUDiv(i, ci64(perMatrix)), g.b.NewURem(i, ci64(perMatrix))
	var w value.Value = p.ws[0]
	for k := 1; k < len(p.ws); k++ {
		w = g.b.NewSelect(g.b.NewICmp(enum.IPredEQ, m, ci64(int64(k))), p.ws[k], w)
	}
	if p.laid {
		at := g.mulc(g.laidAt(p.j, p.k0, p.K, p.rows), 4)
		g.prefetch(tI8, g.b.NewBitCast(w, tI8P), g.add(at, g.mulc(i, 64)))
		return
	}
	row, off := g.b.NewUDiv(i, ci64(perRow)), g.mulc(g.b.NewURem(i, ci64(perRow)), 64)
	g.prefetch(tI8, g.rowBytesAt(p.src, w, p.K, g.add(p.j, row), p.k0), off)
}

// packPanel widens (or dequantises) weights [k0, k0+klen) of rows j..j+P of
// each matrix in ws, stored as src, into panel: matrix m's k-th row of P
// floats at (m·kb + k)·P holds the P weights of column k. Rows past lastCol
// read row lastCol instead. L rows at a time are loaded a
// vector (or a quantised block) along k each and transposed in registers.
func (g *gen) packPanel(src gir.DType, ws []value.Value, K int, j, lastCol value.Value, P int, k0 value.Value, klen, kb int, panel value.Value) {
	L := g.L()
	row := func(c int) value.Value {
		return g.smin(g.addc(j, int64(c)), lastCol)
	}
	for m := range ws {
		for c0 := 0; c0 < P; c0 += L {
			// at is column group c0's place in the panel for k.
			at := func(k value.Value) value.Value {
				return g.addc(g.mulc(g.addc(k, int64(m*kb)), int64(P)), int64(c0))
			}
			// put stores the transposed vectors of column group c0 for
			// k = k..k+n (n ≤ L).
			put := func(vs []value.Value, k value.Value, n int) {
				t := g.transpose(vs)
				for i := 0; i < n; i++ {
					g.storeVec(t[i], panel, at(g.addc(k, int64(i))), nil)
				}
			}
			if src.IsQuantized() {
				bb := int64(src.BlockBytes())
				rowAt := make([]value.Value, L)
				for c := range rowAt {
					rowAt[c] = g.rowBytesAt(src, ws[m], K, row(c0+c), k0)
				}
				g.forRange(ci64(0), ci64(int64(klen/gir.QK)), 1, func(b value.Value) {
					boff := g.mulc(b, bb)
					if src == gir.Q8_0 && L == 16 {
						g.packQ8Block(rowAt, boff, func(i int, w value.Value) {
							g.storeVec(w, panel, at(g.addc(g.mulc(b, gir.QK), int64(i))), nil)
						})
						return
					}
					per := make([][]value.Value, L)
					for c := range per {
						per[c] = g.qScaledWeights(src, rowAt[c], boff, g.loadHalfSplatAt(rowAt[c], boff, L))
					}
					for s := 0; s < gir.QK/L; s++ {
						vs := make([]value.Value, L)
						for c := range vs {
							vs[c] = per[c][s]
						}
						put(vs, g.addc(g.mulc(b, gir.QK), int64(s*L)), L)
					}
				})
				continue
			}
			rowAt := make([]value.Value, L)
			for c := range rowAt {
				rowAt[c] = g.gep(elemType(src), ws[m], g.add(g.mulc(row(c0+c), int64(K)), k0))
			}
			load := func(k value.Value, mask value.Value) []value.Value {
				vs := make([]value.Value, L)
				for c := range vs {
					vs[c] = g.loadVec(src, L, rowAt[c], k, mask)
				}
				return vs
			}
			full := klen / L * L
			g.forRange(ci64(0), ci64(int64(full)), int64(L), func(k value.Value) { put(load(k, nil), k, L) })
			if rest := klen - full; rest > 0 {
				k := ci64(int64(full))
				put(load(k, maskConst(L, rest)), k, rest)
			}
		}
	}
}

// packQ8Block dequantises the q8_0 block at byte offset boff of 16 rows
// (rowAt) k-major: put(i, w) gets weight i of the block for every row, row
// c in lane c. The bytes are transposed before they are widened, 32 bytes a
// row as 8 dwords, and each dword lane's 4 bytes sign-extended by shifts:
// two thirds of the vector instructions of widening each row's 32 weights,
// scaling them and transposing 16 × 16 floats twice, which left q8_0's
// prefill slower than bf16's on the same f32 tiles. Each weight is
// float(q)·d, rounded once, as everywhere else.
func (g *gen) packQ8Block(rowAt []value.Value, boff value.Value, put func(i int, w value.Value)) {
	const L = 16
	vi := vecT(L, tI32)
	cols := make([]value.Value, L)
	for c := range cols {
		cols[c] = g.b.NewBitCast(g.loadVecRaw(tI8, gir.QK, rowAt[c], g.addc(boff, 2), nil), vecT(gir.QK/4, tI32))
	}
	d := g.blockScales(rowAt, boff)
	for t, dw := range g.columnDwords(cols) {
		for i := 0; i < 4; i++ { // byte i of each dword: k = 4t + i
			q := dw
			if i < 3 {
				q = g.b.NewShl(q, ci(vi, int64(24-8*i)))
			}
			q = g.b.NewAShr(q, ci(vi, 24))
			put(4*t+i, g.fmul(g.b.NewSIToFP(q, vecT(L, tF32)), d))
		}
	}
}

// transpose returns the transpose of n vectors of n lanes (n a power of
// two): lane l of result i is lane i of vs[l]. Stage b swaps, in every pair
// of vectors i and i+b (bit b of i clear), the lanes with bit b set in the
// first for those with it clear in the second: n·log2(n) shuffles. Vectors
// of more lanes than n are transposed in slices of n lanes alike.
func (g *gen) transpose(vs []value.Value) []value.Value {
	n := len(vs)
	w := int(vs[0].Type().(*types.VectorType).Len)
	if n&(n-1) != 0 || w%n != 0 {
		panic(fmt.Sprintf("codegen: transposing %d vectors of %d lanes", n, w))
	}
	t := append([]value.Value(nil), vs...)
	for b := 1; b < n; b *= 2 {
		lo := shuffleMask(w, func(l int) int {
			if l&b == 0 {
				return l
			}
			return w + l - b
		})
		hi := shuffleMask(w, func(l int) int {
			if l&b == 0 {
				return l + b
			}
			return w + l
		})
		for i := 0; i < n; i++ {
			if i&b != 0 {
				continue
			}
			a, c := t[i], t[i|b]
			t[i] = g.b.NewShuffleVector(a, c, lo)
			t[i|b] = g.b.NewShuffleVector(a, c, hi)
		}
	}
	return t
}
