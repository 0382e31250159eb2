package codegen

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// attnKeysPerStep is how many keys attention takes at a time: their dot
// products are independent chains (eight keep the FMA units busy without
// splitting a key's product), summed by one transposing tree (lanesums),
// and their soft-cap and exp run as one vector.
const attnKeysPerStep = 8

// Attention is causal (optionally sliding-window) grouped-query attention of
// one chunk of T queries against the KV cache plus the chunk's own keys,
// computed flash-style: one pass over the keys with a running max and sum.
//
// Query t (absolute position i = pos+t) sees keys j with
// (Window == 0 ? 0 : max(0, i−Window+1)) ≤ j ≤ i. Key j comes from the chunk
// (row j−pos of k/v) when j ≥ pos, else from cache slot j mod CacheLen, so
// the cache must hold the previous min(Window−1, pos) positions (a ring of
// CacheLen ≥ Window−1 slots, or CacheLen ≥ pos for global layers).
// score = (q·k)·Scale, then Softcap·tanh(score/Softcap) if Softcap > 0;
// softmax in f32; out = Σ p_j v_j. The cache is only read.
//
// With Rows, each of the T rows is a sequence of its own (a batched decode
// step): query t is at position pos[t] of the batch scalars (rowPos), its
// cached keys are in its own cache, and its only new key is row t of k/v.
// kcache and vcache are then tables of T pointers, row t's cache of this
// layer (rowPtr).
//
// Args: out f32[T×HQ×D], q f32[T×HQ×D], k f32[T×HKV×D], v f32[T×HKV×D],
// kcache f32[CacheLen×HKV×D], vcache f32[CacheLen×HKV×D], scalars.
// Items: T·HQ (item = t·HQ + h); t ≥ n_valid is skipped. Without Rows the
// item of every queryTile-th row attends for its tile of rows and the
// others do nothing.
type Attention struct {
	T, HQ, HKV, D int
	Window        int // 0: global causal
	CacheLen      int
	Softcap       float64 // 0: off
	Scale         float64
	Rows          bool
	KV            gir.DType // the cache's element type (0: f32)
}

func (s Attention) Name() string {
	n := fmt.Sprintf("attention_t%d_hq%d_hkv%d_d%d_w%d_c%d_scale%s", s.T, s.HQ, s.HKV, s.D, s.Window, s.CacheLen, fname(s.Scale))
	if s.Softcap != 0 {
		n += "_softcap" + fname(s.Softcap)
	}
	if s.Rows {
		n += "_rows"
	}
	return n + kvSuffix(s.KV)
}
func (s Attention) Items() int64   { return int64(s.T * s.HQ) }
func (s Attention) Granule() int64 { return 1 }
func (s Attention) Args() []string {
	return []string{"out", "q", "k", "v", "kcache", "vcache", "scalars"}
}
func (s Attention) Validate() error {
	if err := positive("T, HQ, HKV, D and CacheLen", s.T, s.HQ, s.HKV, s.D, s.CacheLen); err != nil {
		return err
	}
	if s.HQ%s.HKV != 0 {
		return fmt.Errorf("HQ=%d is not a multiple of HKV=%d", s.HQ, s.HKV)
	}
	if s.D%16 != 0 {
		return fmt.Errorf("head dim D=%d must be a multiple of 16", s.D)
	}
	if s.Window < 0 || s.Softcap < 0 {
		return fmt.Errorf("window and softcap must be ≥ 0")
	}
	return checkKV(s.KV)
}

// attnQueryTile is how many queries of one head a prefill item takes: the
// keys and values they share are loaded once for all of them (from L1 for
// every query after the first), where one query per item re-read each
// key and value from L2 or L3 and was bound by it on long contexts.
const attnQueryTile = 8

// queryTile is the number of queries an item attends for: a tile of
// consecutive rows of one sequence (so not with Rows, whose rows are
// sequences of their own).
func (s Attention) queryTile() int {
	if s.Rows {
		return 1
	}
	return min(attnQueryTile, s.T)
}

func (s Attention) emit(g *gen) {
	out, q := g.argPtr(0, tF32), g.argPtr(1, tF32)
	k, v := g.argPtr(2, tF32), g.argPtr(3, tF32)
	kvt := kvType(s.KV)
	var kc, vc value.Value
	if !s.Rows {
		kc, vc = g.argPtr(4, elemType(kvt)), g.argPtr(5, elemType(kvt))
	}
	pos, nvalid := g.scalars(6)
	L := g.L()
	nd := s.D / L
	group := int64(s.HQ / s.HKV)
	tile := s.queryTile()
	// A query tile's running softmax states (max, sum, accumulators)
	// between the keys its queries share and those they do not.
	var stM, stL, stAcc value.Value
	if tile > 1 {
		stM, stL, stAcc = g.stack(tF32, tile), g.stack(tF32, tile), g.stack(tF32, tile*s.D)
	}
	// carry: m, l, acc[0..nd)
	init := []value.Value{cf(tF32, -1e30), cf(tF32, 0)}
	for d := 0; d < nd; d++ {
		init = append(init, cf(g.vf(), 0))
	}
	// load reads one vector of a key or value at constant offset d of
	// its row: from the cache (of its type), or from the chunk (f32),
	// rounded as the cache will hold it, so every query sees the same
	// keys however the sequence was split into calls. (Constant offsets
	// let the loads of one row share an address register.)
	load := func(row value.Value, d int, cached bool) value.Value {
		if cached {
			return g.loadVec(kvt, L, row, ci64(int64(d)), nil)
		}
		x := g.loadF(row, ci64(int64(d)), nil)
		if kvt == gir.BF16 {
			x = g.widen(g.narrowBF16(x), gir.BF16)
		}
		return x
	}
	// update folds the keys and values at offs into the state c of the
	// query qv: their scores side by side in one vector (one soft-cap and
	// one exp for all, and independent dot products), the running max
	// raised once.
	update := func(kp, vp value.Value, offs []value.Value, cached bool, qv, c []value.Value) []value.Value {
		n := len(offs)
		// Each key's dot product runs in `chains` partial vectors (at
		// least four chains in all, for the FMA latency), the keys'
		// vectors interleaved along d so that each slice of q is used
		// by all of them in turn.
		chains := max(1, min(nd, 4/n))
		parts := make([]value.Value, n*chains)
		var elem types.Type = tF32
		if cached {
			elem = elemType(kvt)
		}
		krows, vrows := make([]value.Value, n), make([]value.Value, n)
		for u, off := range offs {
			krows[u], vrows[u] = g.gep(elem, kp, off), g.gep(elem, vp, off)
		}
		for d := 0; d < nd; d++ {
			for u, krow := range krows {
				kv := load(krow, d*L, cached)
				i := u*chains + d%chains
				if parts[i] == nil {
					parts[i] = g.fmul(qv[d], kv)
				} else {
					parts[i] = g.fma(qv[d], kv, parts[i])
				}
			}
		}
		var sv value.Value
		if chains == 1 {
			sv = g.lanesums(parts)
		} else {
			sv = constant.NewUndef(vecT(n, tF32))
			for u := range offs {
				sv = g.b.NewInsertElement(sv, g.reduce(g.sum(parts[u*chains:(u+1)*chains])), ci32(int64(u)))
			}
		}
		if s.Softcap > 0 {
			sv = g.softcap(sv, s.Softcap)
		}
		next := g.raiseMax(g.b.NewCall(g.m.intrinsic("llvm.vector.reduce.fmax."+tsuffix(sv.Type()), tF32, sv.Type()), sv), c)
		pv := g.exp(g.fsub(sv, g.splat(next[0], n)))
		for u, vrow := range vrows {
			p := g.b.NewExtractElement(pv, ci32(int64(u)))
			next[1] = g.fadd(next[1], p)
			ps := g.splat(p, L)
			for d := 0; d < nd; d++ {
				next[2+d] = g.fma(ps, load(vrow, d*L, cached), next[2+d])
			}
		}
		return next
	}
	// A fold takes in the keys at offs (element offsets in kp and vp).
	type fold func(kp, vp value.Value, offs []value.Value, cached bool, c []value.Value) []value.Value
	// keys folds in keys from ≤ j < to, attnKeysPerStep at a time (unless
	// few: fewer than attnKeysPerStep), then one by one.
	keys := func(from, to, kp, vp value.Value, cached, few bool, off func(j value.Value) value.Value, f fold, c []value.Value) []value.Value {
		const U = attnKeysPerStep
		j := from
		if !few {
			j, c = g.loop(from, g.addc(to, 1-U), U, c, func(j value.Value, c []value.Value) []value.Value {
				offs := make([]value.Value, U)
				for u := range offs {
					offs[u] = off(g.addc(j, int64(u)))
				}
				return f(kp, vp, offs, cached, c)
			})
		}
		_, c = g.loop(j, to, 1, c, func(j value.Value, c []value.Value) []value.Value {
			return f(kp, vp, []value.Value{off(j)}, cached, c)
		})
		return c
	}
	g.forRange(g.lo, g.smin(g.hi, g.mulc(nvalid, int64(s.HQ))), 1, func(item value.Value) {
		t := g.b.NewSDiv(item, ci64(int64(s.HQ)))
		h := g.b.NewSRem(item, ci64(int64(s.HQ)))
		kvh := g.b.NewSDiv(h, ci64(group))
		// The sequence: where its keys start in the chunk (position pos,
		// row row0 of k/v; row0 nil is row 0) and its caches.
		var row0 value.Value
		pos, kc, vc := pos, kc, vc
		if s.Rows {
			row0, pos = t, g.rowPos(6, t)
			kc, vc = g.rowPtr(4, t, elemType(kvt)), g.rowPtr(5, t, elemType(kvt))
		}
		// position is that of query row r (a sequence of its own with
		// Rows: the one row of it in the chunk).
		position := func(r value.Value) value.Value {
			if s.Rows {
				return pos
			}
			return g.add(pos, r)
		}
		// start is the first key position i sees.
		start := func(i value.Value) value.Value {
			if s.Window == 0 {
				return ci64(0)
			}
			return g.smax(ci64(0), g.addc(i, -int64(s.Window-1)))
		}
		// span folds in keys from ≤ j < to: those in the cache, then
		// those in the chunk.
		span := func(from, to value.Value, few bool, f fold, c []value.Value) []value.Value {
			c = keys(from, g.smin(to, pos), kc, vc, true, few, func(j value.Value) value.Value {
				slot := g.b.NewSRem(j, ci64(int64(s.CacheLen)))
				return g.mulc(g.add(g.mulc(slot, int64(s.HKV)), kvh), int64(s.D))
			}, f, c)
			return keys(g.smax(from, pos), to, k, v, false, few, func(j value.Value) value.Value {
				row := g.sub(j, pos)
				if row0 != nil {
					row = g.add(row, row0)
				}
				return g.mulc(g.add(g.mulc(row, int64(s.HKV)), kvh), int64(s.D))
			}, f, c)
		}
		// query r's offset in q and out, its scaled q, and its fold.
		qoff := func(r value.Value) value.Value { return g.mulc(g.add(g.mulc(r, int64(s.HQ)), h), int64(s.D)) }
		qvOf := func(r value.Value) []value.Value {
			qv := make([]value.Value, nd)
			for d := range qv {
				qv[d] = g.fmulc(g.loadF(q, g.addc(qoff(r), int64(d*L)), nil), s.Scale)
			}
			return qv
		}
		foldFor := func(qv []value.Value) fold {
			return func(kp, vp value.Value, offs []value.Value, cached bool, c []value.Value) []value.Value {
				return update(kp, vp, offs, cached, qv, c)
			}
		}
		finish := func(r value.Value, c []value.Value) {
			inv := g.splat(g.fdiv(cf(tF32, 1), c[1]), L)
			for d := 0; d < nd; d++ {
				g.storeVec(g.fmul(c[2+d], inv), out, g.addc(qoff(r), int64(d*L)), nil)
			}
		}
		// one attends for query row r alone.
		one := func(r value.Value) {
			i := position(r)
			finish(r, span(start(i), g.addc(i, 1), false, foldFor(qvOf(r)), init))
		}
		if tile == 1 {
			one(t)
			return
		}
		// The item of a tile's first row attends for the tile (the
		// others have nothing to do): keys [lo, hi) are every query's;
		// each has fewer than `tile` before lo and after hi of its own.
		g.ifThen(g.b.NewICmp(enum.IPredEQ, g.b.NewSRem(t, ci64(int64(tile))), ci64(0)), func() {
			lo := start(position(g.addc(t, int64(tile-1))))
			hi := g.addc(position(t), 1)
			whole := g.b.NewAnd(g.slt(g.addc(t, int64(tile-1)), nvalid), g.slt(lo, hi))
			saved := func(r value.Value) (value.Value, value.Value, value.Value) {
				return g.gep(tF32, stM, r), g.gep(tF32, stL, r), g.mulc(r, int64(s.D))
			}
			save := func(r value.Value, c []value.Value) {
				m, l, acc := saved(r)
				g.b.NewStore(c[0], m)
				g.b.NewStore(c[1], l)
				for d := 0; d < nd; d++ {
					g.storeVec(c[2+d], stAcc, g.addc(acc, int64(d*L)), nil)
				}
			}
			restore := func(r value.Value) []value.Value {
				m, l, acc := saved(r)
				c := []value.Value{g.b.NewLoad(tF32, m), g.b.NewLoad(tF32, l)}
				for d := 0; d < nd; d++ {
					c = append(c, g.loadF(stAcc, g.addc(acc, int64(d*L)), nil))
				}
				return c
			}
			g.ifElse(whole, func() {
				g.forRange(ci64(0), ci64(int64(tile)), 1, func(r value.Value) {
					row := g.add(t, r)
					save(r, span(start(position(row)), lo, true, foldFor(qvOf(row)), init))
				})
				span(lo, hi, false, func(kp, vp value.Value, offs []value.Value, cached bool, _ []value.Value) []value.Value {
					g.forRange(ci64(0), ci64(int64(tile)), 1, func(r value.Value) {
						save(r, update(kp, vp, offs, cached, qvOf(g.add(t, r)), restore(r)))
					})
					return nil
				}, nil)
				g.forRange(ci64(0), ci64(int64(tile)), 1, func(r value.Value) {
					row := g.add(t, r)
					finish(row, span(hi, g.addc(position(row), 1), true, foldFor(qvOf(row)), restore(r)))
				})
			}, func() {
				g.forRange(t, g.smin(g.addc(t, int64(tile)), nvalid), 1, one)
			})
		})
	})
}

// raiseMax is the online softmax's rescaling: when bm, the largest score of
// the keys at hand, exceeds the running max c[0], the max becomes bm and
// the running sum c[1] and the accumulators c[2:] are scaled by
// exp(c[0]−bm). It is a branch, not arithmetic on every step, because the
// max soon stops rising: scaling by exp(0) (exactly 1 as g.exp computes
// it, so the results are the same) put an exp and a multiply on the
// accumulators' dependency chain, which bounded the key loop.
func (g *gen) raiseMax(bm value.Value, c []value.Value) []value.Value {
	return g.ifThenValues(g.b.NewFCmp(enum.FPredOGT, bm, c[0]), func() []value.Value {
		corr := g.exp(g.fsub(c[0], bm))
		raised := []value.Value{bm, g.fmul(c[1], corr)}
		cv := g.splat(corr, g.L())
		for _, a := range c[2:] {
			raised = append(raised, g.fmul(a, cv))
		}
		return raised
	}, c)
}

// lanesums returns the vector whose lane i is the sum of the lanes of vs[i]
// (len(vs) a power of two; every vector of one type): a transposing tree
// of shuffles and adds that halves, at each level, the lanes each vector
// gives to each of its sums, where reducing the vectors one by one would
// spend a shuffle-and-add tree on each.
func (g *gen) lanesums(vs []value.Value) value.Value {
	w := int(vs[0].Type().(*types.VectorType).Len) // lanes per sum
	sums := 1                                      // sums per vector
	// halves are the n-lane masks taking, for each sum in order, its
	// first and its second w/2 lanes; the second operand's sums follow
	// the first's at lane sums·w.
	halves := func(n int) (lo, hi *constant.Vector) {
		at := func(first int) func(int) int {
			return func(i int) int { return i/(w/2)*w + first + i%(w/2) }
		}
		return shuffleMask(n, at(0)), shuffleMask(n, at(w/2))
	}
	for w > 1 || len(vs) > 1 {
		var next []value.Value
		switch {
		case len(vs) > 1 && w == 1: // concatenate pairs
			for i := 0; i < len(vs); i += 2 {
				next = append(next, g.b.NewShuffleVector(vs[i], vs[i+1], shuffleMask(2*sums, func(i int) int { return i })))
			}
			sums *= 2
		case len(vs) > 1: // pairs: a's sums then b's, on half the lanes each
			lo, hi := halves(sums * w)
			for i := 0; i < len(vs); i += 2 {
				a, b := vs[i], vs[i+1]
				next = append(next, g.fadd(g.b.NewShuffleVector(a, b, lo), g.b.NewShuffleVector(a, b, hi)))
			}
			sums, w = 2*sums, w/2
		default: // one vector: fold each sum's lanes in half
			lo, hi := halves(sums * w / 2)
			u := constant.NewUndef(vs[0].Type())
			next = append(next, g.fadd(g.b.NewShuffleVector(vs[0], u, lo), g.b.NewShuffleVector(vs[0], u, hi)))
			w /= 2
		}
		vs = next
	}
	return vs[0]
}
