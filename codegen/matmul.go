package codegen

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/enum"
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
	// Panels: w (f32) is laid out in panels of PanelColumns(1) columns
	// (ir.LayPanels) rather than by rows.
	Panels bool
}

func (s Matmul) Name() string {
	n := fmt.Sprintf("matmul_r%d_k%d_n%d_%s", s.R, s.K, s.N, s.WType)
	if s.Softcap != 0 {
		n += "_softcap" + fname(s.Softcap)
	}
	if s.Panels {
		n += "_panels"
	}
	return n
}
func (s Matmul) Items() int64   { return int64(s.N) }
func (s Matmul) Granule() int64 { return gemmGranule(s.R, s.K, 1, s.WType, s.Panels) }
func (s Matmul) Args() []string { return []string{"out", "x", "w", "scalars"} }
func (s Matmul) FLOPs() int64   { return 2 * int64(s.R) * int64(s.K) * int64(s.N) }
func (s Matmul) WeightBytes() int64 {
	return weightMatrixBytes(s.K, s.N, s.WType, s.Panels, 1)
}
func (s Matmul) Validate() error {
	if err := positive("R, K and N", s.R, s.K, s.N); err != nil {
		return err
	}
	if s.Softcap < 0 {
		return fmt.Errorf("softcap must be ≥ 0")
	}
	return checkWeightLayout(s.WType, s.Panels)
}

func (s Matmul) emit(g *gen) {
	emitGemm(g, s.R, s.K, s.N, s.WType, 1, s.Panels, func(d []value.Value) value.Value {
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
	// Panels: wgate and wup (f32) are laid out in panels of
	// PanelColumns(2) columns (ir.LayPanels) rather than by rows.
	Panels bool
}

func (s GeGLU) Name() string {
	n := fmt.Sprintf("geglu_r%d_k%d_f%d_%s", s.R, s.K, s.F, s.WType)
	if s.Panels {
		n += "_panels"
	}
	return n
}
func (s GeGLU) Items() int64   { return int64(s.F) }
func (s GeGLU) Granule() int64 { return gemmGranule(s.R, s.K, 2, s.WType, s.Panels) }
func (s GeGLU) Args() []string { return []string{"out", "x", "wgate", "wup", "scalars"} }
func (s GeGLU) FLOPs() int64   { return 4 * int64(s.R) * int64(s.K) * int64(s.F) }
func (s GeGLU) WeightBytes() int64 {
	return 2 * weightMatrixBytes(s.K, s.F, s.WType, s.Panels, 2)
}
func (s GeGLU) Validate() error {
	if err := positive("R, K and F", s.R, s.K, s.F); err != nil {
		return err
	}
	return checkWeightLayout(s.WType, s.Panels)
}

func (s GeGLU) emit(g *gen) {
	emitGemm(g, s.R, s.K, s.F, s.WType, 2, s.Panels, func(d []value.Value) value.Value {
		return g.fmul(g.gelu(d[0]), d[1])
	})
}

// gemmGranule is the column granule of a float matmul of R rows of K: the
// generic tile's columns, a multiple of every tuning's (gemmTiling).
func gemmGranule(R, K, nw int, dt gir.DType, laid bool) int64 {
	if laid || usesPanels(R) {
		return panelGranule(nw)
	}
	_, nc, _ := gemmTiling(R, K, nw, dt, "")
	return int64(nc)
}

// PanelColumns is the columns of one panel of a weight matrix laid out in
// panels for a kernel of nw matrices (Matmul 1, GeGLU 2): a register
// tile's columns, the same on every target.
func PanelColumns(nw int) int { return int(panelGranule(nw)) }

// weightMatrixBytes is the bytes of one K × N weight matrix of a kernel of
// nw matrices as it reads them: panels pad N to whole panels with zeros.
func weightMatrixBytes(K, N int, dt gir.DType, laid bool, nw int) int64 {
	elems := K * N
	if laid {
		elems = gir.PanelFloats(N, K, PanelColumns(nw))
	}
	return int64(elems) * int64(dt.Size())
}

// checkWeightLayout accepts f32 weights in panels and the float dtypes by
// rows.
func checkWeightLayout(dt gir.DType, laid bool) error {
	if laid && dt != gir.F32 {
		return fmt.Errorf("weights in panels must be f32, not %v", dt)
	}
	return checkWeightType(dt)
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
// per row per step) keeps decodeNC rows of each matrix in flight, each
// prefetched ahead: on the Intel Xeon (Emerald Rapids) VM, 8 rows of one
// matrix read 1.4–1.6× faster than one row at K = 2048–2304 (the 2B's q,
// k, v, o and LM head; the one-row tile streamed at 55–65% of the read
// probe, the 8-row tile at 80–95%), and 2 rows of each GeGLU matrix 1.3×
// faster than one (the medians of three rounds alternating with the other
// tiles, BenchmarkDecode2B). Many streams in flight are what that memory
// system needs. AMD Zen 5 (TuneZen) measured the other way, and keeps
// its tiles: a GEMV whose rows are at most zenShortRowBytes reads them one
// at a time, 1.03–1.2× faster than 8 (consecutive rows then make one
// sequential stream), and the GeGLU one row of each matrix, four lines per
// step, 1.09–1.17× faster than four rows of each; one-row tiles take no
// software prefetch (see the prefetchPlan choice in emitGemm): plain
// streams are what its hardware prefetcher follows. A batched decode step
// (smallBatch) is memory bound too: one tile holds every row, so each
// weight vector is loaded and widened once and feeds R FMAs, with
// batchAccumulators accumulators. Prefill runs as panels (panel.go).
func gemmTiling(R, K, nw int, dt gir.DType, tune string) (mr, nc, unroll int) {
	if R == 1 && dt == gir.BF16 {
		if tune == TuneZen {
			if nw == 2 {
				return 1, 1, 4
			}
			if int64(K*dt.Size()) <= zenShortRowBytes {
				return 1, 1, 2
			}
		}
		return 1, decodeNC[nw-1], decodeUnroll[nw-1]
	}
	if R == 1 {
		if nw == 1 {
			return 1, 4, 2
		}
		return 1, 4, 1
	}
	if !smallBatch(R) {
		panic(fmt.Sprintf("codegen: gemmTiling of %d rows: prefill runs as panels", R))
	}
	return R, max(1, min(8, batchAccumulators/(R*nw))), 1
}

// maxBatchRows is the most rows a matmul computes as a batched decode step
// (smallBatch) rather than as a prefill chunk.
const maxBatchRows = 8

// smallBatch reports whether R rows are a batched decode step: few enough
// that one register tile holds them all.
func smallBatch(R int) bool { return R > 1 && R <= maxBatchRows }

// batchAccumulators bounds the vector accumulators (mr·nc·nw) of a batched
// decode tile on 32-register targets; 16-register targets get half. 24
// (4 rows × 6 columns, or × 3 columns of GeGLU's two matrices) measured
// faster than 16 and 32 on the 2B shapes.
var batchAccumulators = 24

// emitGemm is the shared body of Matmul and GeGLU. Prefill (more than
// maxBatchRows rows) runs as panels (emitPanelGemm), and so does every row
// count on weights laid out in panels (laid); decode, one row or a
// batched step's few, streams the weights once: column tiles of nc over
// [lo, hi) (then single columns), each one tile of every valid row.
func emitGemm(g *gen, R, K, N int, dt gir.DType, nw int, laid bool, epi func(d []value.Value) value.Value) {
	if laid || usesPanels(R) {
		emitPanelGemm(g, R, K, N, dt, nw, laid, epi)
		return
	}
	mr, nc, unroll := gemmTiling(R, K, nw, dt, g.t.Tune)
	if g.L() < 16 && smallBatch(R) {
		// Fewer, narrower registers (16 on AVX2/NEON): fewer columns (the
		// tile must hold every row), leaving registers for x and a weight.
		nc = max(1, min(nc, (16-R-2)/(R*nw)))
	}

	L0 := g.L()
	out, x, ws, nvalid := g.gemmArgs(R, nw, elemType(dt))

	// bf16 decode: de-interleave x once per call into a stack copy (even
	// elements then odd ones per pair of vectors) for the pair step.
	var xd value.Value
	if R == 1 && dt == gir.BF16 && deinterleaveX && K <= 4096 {
		if full := K / (2 * L0) * (2 * L0); full > 0 {
			xd = g.stack(tF32, full)
			evM, odM := evenOddMasks(L0)
			g.forRange(ci64(0), ci64(int64(full)), int64(2*L0), func(k value.Value) {
				lo := g.loadF(x, k, nil)
				hi := g.loadF(x, g.addc(k, int64(L0)), nil)
				g.storeVec(g.b.NewShuffleVector(lo, hi, evM), xd, k, nil)
				g.storeVec(g.b.NewShuffleVector(lo, hi, odM), xd, g.addc(k, int64(L0)), nil)
			})
		}
	}

	// tile computes rows [r0, r0+mr) of the column tile [j, j+nc).
	tile := func(j value.Value, nc int, r0 value.Value, mr int) {
		wr := make([][]value.Value, nw) // the tile's weight rows
		for m := range wr {
			wr[m] = make([]value.Value, nc)
			for c := range wr[m] {
				wr[m][c] = g.gep(elemType(dt), ws[m], g.mulc(g.addc(j, int64(c)), int64(K)))
			}
		}
		u := unroll
		if R > 1 {
			u = 1
		}
		var pf prefetchPlan
		switch {
		case smallBatch(R) && nc > 1:
			pf = prefetchPlan{bytes: batchPrefetch, wholeLines: true, acrossTiles: batchAcrossTiles}
		case nc > 1:
			pf = prefetchPlan{bytes: decodePrefetch}
		}
		d := g.dotTile(x, xd, wr, dt, K, r0, mr, u, pf)
		if smallBatch(R) && mr*nc > 1 {
			g.vectorEpilogue(d, out, r0, j, N, epi)
			return
		}
		g.storeTile(d, out, r0, j, N, epi)
	}
	rows := func(j value.Value, nc int) {
		if !smallBatch(R) {
			g.forRange(ci64(0), nvalid, 1, func(r value.Value) { tile(j, nc, r, 1) })
			return
		}
		// Every valid row in one tile, for the row count known only at
		// run time: one tile per count.
		for n := mr; n >= 1; n-- {
			g.ifThen(g.b.NewICmp(enum.IPredEQ, nvalid, ci64(int64(n))), func() { tile(j, nc, ci64(0), n) })
		}
	}
	j := g.forRange(g.lo, g.addc(g.hi, -int64(nc-1)), int64(nc), func(j value.Value) { rows(j, nc) })
	if nc > 1 {
		g.forRange(j, g.hi, 1, func(j value.Value) { rows(j, 1) })
	}
}

// gemmArgs are a matmul kernel's args: out, x, the nw weight matrices (as
// pointers to elem) and the rows to compute (n_valid, at most R).
func (g *gen) gemmArgs(R, nw int, elem types.Type) (out, x value.Value, ws []value.Value, nvalid value.Value) {
	out, x = g.argPtr(0, tF32), g.argPtr(1, tF32)
	ws = make([]value.Value, nw)
	for m := range ws {
		ws[m] = g.argPtr(2+m, elem)
	}
	_, nvalid = g.scalars(2 + nw)
	return out, x, ws, g.smin(nvalid, ci64(int64(R)))
}

// storeTile stores epi of a tile's results d[m][r][c] (one scalar per
// weight matrix m) to out[r0+r, j+c], one by one.
func (g *gen) storeTile(d [][][]value.Value, out, r0, j value.Value, N int, epi func(d []value.Value) value.Value) {
	for r := range d[0] {
		rowOff := g.mulc(g.addc(r0, int64(r)), int64(N))
		for c := range d[0][r] {
			vals := make([]value.Value, len(d))
			for m := range vals {
				vals[m] = d[m][r][c]
			}
			g.store(epi(vals), out, g.add(rowOff, g.addc(j, int64(c))))
		}
	}
}

// vectorEpilogue applies epi to a whole tile's results at once — one
// vector of mr·nc lanes per weight matrix, instead of mr·nc scalar
// epilogues (a batched step has R times the outputs per weight of decode,
// and the softcap and GELU are dozens of instructions each) — and stores
// each row's nc results with one vector store.
func (g *gen) vectorEpilogue(d [][][]value.Value, out, r0, j value.Value, N int, epi func(d []value.Value) value.Value) {
	mr, nc := len(d[0]), len(d[0][0])
	vt := vecT(mr*nc, tF32)
	vals := make([]value.Value, len(d))
	for m := range d {
		var v value.Value = constant.NewUndef(vt)
		for r := 0; r < mr; r++ {
			for c := 0; c < nc; c++ {
				v = g.b.NewInsertElement(v, d[m][r][c], ci32(int64(r*nc+c)))
			}
		}
		vals[m] = v
	}
	res := epi(vals)
	for r := 0; r < mr; r++ {
		row := g.b.NewShuffleVector(res, constant.NewUndef(vt), shuffleMask(nc, func(c int) int { return r*nc + c }))
		g.storeVec(row, out, g.add(g.mulc(g.addc(r0, int64(r)), int64(N)), j), nil)
	}
}

// evenOddMasks are the L-lane shufflevector masks that take the even and
// the odd elements of two L-lane vectors: de-interleaving x to match a bf16
// pair step's even and odd weights.
func evenOddMasks(L int) (even, odd *constant.Vector) {
	return shuffleMask(L, func(i int) int { return 2 * i }), shuffleMask(L, func(i int) int { return 2*i + 1 })
}

// dotTile returns d[m][r][c] = Σ_k x[r0+r, k] · wr[m][c][k] for an mr×nc
// tile, k in [0, K), with mr·nc·len(wr)·unroll vector accumulators (wr[m][c]
// points at weight row c of matrix m). Every weight vector is loaded and
// widened once and used for all mr rows. K need not be a multiple of the
// vector width: the last step is masked. pf.bytes > 0 prefetches each
// weight row that many bytes ahead.
func (g *gen) dotTile(x, xd value.Value, wr [][]value.Value, dt gir.DType, K int, r0 value.Value, mr, unroll int, pf prefetchPlan) [][][]value.Value {
	L := g.L()
	prefetch := pf.bytes
	nw, nc := len(wr), len(wr[0])
	et := elemType(dt)
	xr := make([]value.Value, mr)
	for r := range xr {
		xr[r] = g.gep(tF32, x, g.mulc(g.addc(r0, int64(r)), int64(K)))
	}
	at := func(m, r, c, u int) int { return ((m*mr+r)*nc+c)*unroll + u }
	acc := make([]value.Value, nw*mr*nc*unroll)
	zero := cf(g.vf(), 0)
	for i := range acc {
		acc[i] = zero
	}
	// step accumulates one vector of every row and column at off; it
	// prefetches for the pfBytes of each weight row from off (0: none).
	step := func(off, mask value.Value, u int, acc []value.Value, pfBytes int64) []value.Value {
		next := append([]value.Value(nil), acc...)
		xv := make([]value.Value, mr)
		for r := range xv {
			xv[r] = g.loadVec(gir.F32, L, xr[r], off, mask)
		}
		for m := 0; m < nw; m++ {
			for c := 0; c < nc; c++ {
				// One prefetch per cache line, `prefetch` bytes ahead in
				// the same weight row (past its end it reaches the next
				// rows, which come next anyway). acrossTiles: past the end,
				// the same row of the next column tile, nc rows on, which
				// comes next in this row's place.
				for b := int64(0); prefetch > 0 && b < pfBytes; b += 64 {
					idx := g.addc(off, (int64(prefetch)+b)/int64(dt.Size()))
					if pf.acrossTiles && nc > 1 {
						past := g.b.NewICmp(enum.IPredSGE, idx, ci64(int64(K)))
						idx = g.b.NewSelect(past, g.addc(idx, int64((nc-1)*K)), idx)
					}
					g.prefetch(et, wr[m][c], idx)
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
		evM, odM := evenOddMasks(L)
		xe, xo := make([]value.Value, mr), make([]value.Value, mr)
		for r := range xe {
			if xd != nil { // R = 1: x de-interleaved once per call
				xe[r] = g.loadF(xd, off, nil)
				xo[r] = g.loadF(xd, g.addc(off, int64(L)), nil)
				continue
			}
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
	// Prefill and batched decode: the x shuffles would cost more than they
	// save (a batched tile's wider register tile measured faster than the
	// pair step's with x de-interleaved).
	pair := dt == gir.BF16 && mr == 1
	// A prefetching loop steps over whole cache lines of each weight row
	// (lines steps per iteration), so each line is prefetched once.
	lines := 1
	if !pair && prefetch > 0 && pf.wholeLines {
		lines = max(1, 64/(L*unroll*dt.Size()))
	}
	chunk := L * unroll * lines
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
			for s := 0; s < lines; s++ {
				for u := 0; u < unroll; u++ {
					var pfBytes int64
					if s == 0 && u == 0 {
						pfBytes = int64(chunk * dt.Size())
					}
					acc = step(g.addc(k, int64((s*unroll+u)*L)), nil, u, acc, pfBytes)
				}
			}
			return acc
		})
	}
	for k := full; k < K; k += L {
		var mask value.Value
		pfBytes := int64(L * unroll * dt.Size())
		if K-k < L {
			mask, pfBytes = maskConst(L, K-k), 0
		}
		acc = step(ci64(int64(k)), mask, 0, acc, pfBytes)
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
	decodeNC     = [2]int{8, 2}
	decodeUnroll = [2]int{1, 2}
)

// zenShortRowBytes: tuned for Zen, a bf16 decode GEMV (one matrix) whose
// weight rows are at most this long reads them one at a time (see
// gemmTiling).
var zenShortRowBytes int64 = 4608

// deinterleaveX: bf16 decode de-interleaves x once per call (K ≤ 4096)
// instead of shuffling it in every pair step.
var deinterleaveX = true

// decodePrefetch is how far ahead (bytes) the decode GEMV prefetches each
// weight row; 0 disables it.
var decodePrefetch = 1024

// batchPrefetch is how far ahead (bytes) batched decode tiles prefetch
// each weight row, one prefetch per cache line; 0 disables it.
var batchPrefetch = 1024

// prefetchPlan is how a tile prefetches its weight rows: bytes ahead (0:
// not at all); wholeLines steps the loop over whole cache lines of each
// row so each line is prefetched once; acrossTiles carries each row's
// prefetch past its end into the next column tile's row (rows of K
// elements).
type prefetchPlan struct {
	bytes                   int
	wholeLines, acrossTiles bool
}

// batchAcrossTiles: batched decode tiles prefetch across column tiles, so
// a tile's rows start warm.
var batchAcrossTiles = true

// prefetch emits llvm.prefetch(&p[idx], read, locality 3, data).
func (g *gen) prefetch(elem types.Type, p, idx value.Value) {
	fn := g.m.intrinsic("llvm.prefetch.p0i8", tVoid, tI8P, tI32, tI32, tI32)
	a := g.b.NewBitCast(g.gep(elem, p, idx), tI8P)
	g.b.NewCall(fn, a, ci32(0), ci32(3), ci32(1))
}
