package ptx

import (
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/value"
)

// The inner loop both attention kernels share (Attention for prefill
// chunks, AttnPartial for decode): one query head's online softmax over a
// range of keys, the keys spread over the block's warps and D over a
// warp's lanes, then the warps merged through shared memory.

// attnKeysPerStep is how many keys a warp loads before it uses any: their
// loads and dot products overlap, and the running max is corrected once
// per step instead of once per key.
const attnKeysPerStep = 4

// headLanes are the dims of a D-wide row a lane holds, lane + 32e, clamped
// into the row; ok[e] is nil where every lane's dim is inside it.
type headLanes struct {
	dims, ok []value.Value
}

func (k *kb) headLanes(D int) headLanes {
	n := ceilDiv(D, 32)
	l := headLanes{dims: make([]value.Value, n), ok: make([]value.Value, n)}
	lane := k.lane()
	for e := range l.dims {
		d := k.addc(lane, int64(32*e))
		if 32*(e+1) > D {
			l.ok[e] = k.slt(d, ci64(int64(D)))
			d = k.smin(d, ci64(int64(D-1)))
		}
		l.dims[e] = d
	}
	return l
}

// load reads this lane's part of the row at p[base:], zero past D.
func (l headLanes) load(k *kb, p, base value.Value) []value.Value {
	out := make([]value.Value, len(l.dims))
	for e, d := range l.dims {
		out[e] = k.load(tF32, p, k.add(base, d))
		if l.ok[e] != nil {
			out[e] = k.b.NewSelect(l.ok[e], out[e], cf(0))
		}
	}
	return out
}

// keySource finds key and value rows: positions from p0 on are the
// chunk's own (k, v: rows of HKV·D), earlier ones the cache's (slot j mod
// CacheLen), for kv head hk.
type keySource struct {
	k, v, kc, vc, p0, hk value.Value
}

func (k *kb) keyRows(a Attention, src keySource, j value.Value) (kp, vp value.Value) {
	inChunk := k.sge(j, src.p0)
	chunkOff := k.mulc(k.add(k.mulc(k.sub(j, src.p0), int64(a.HKV)), src.hk), int64(a.D))
	slot := k.b.NewSRem(j, ci64(int64(a.CacheLen)))
	cacheOff := k.mulc(k.add(k.mulc(slot, int64(a.HKV)), src.hk), int64(a.D))
	kp = k.b.NewSelect(inChunk, k.gep(tF32, src.k, chunkOff), k.gep(tF32, src.kc, cacheOff))
	vp = k.b.NewSelect(inChunk, k.gep(tF32, src.v, chunkOff), k.gep(tF32, src.vc, cacheOff))
	return
}

// attendKeys runs this warp's keys of [from, to), keys from + warp +
// (g·U + u)·nw, through an online softmax of q·k (scaled, soft-capped) and
// returns {m, l, acc[e]...}: the running max, the sum of exp(s − m) and the
// lane's dims of Σ exp(s − m)·v.
func (k *kb) attendKeys(a Attention, src keySource, lanes headLanes, qs []value.Value, from, to value.Value, nw int) []value.Value {
	const U = attnKeysPerStep
	init := []value.Value{cf(-1e30), cf(0)}
	for range qs {
		init = append(init, cf(0))
	}
	last := k.addc(to, -1)
	return k.loop(k.add(from, k.warpI()), to, int64(nw*U), init, func(j0 value.Value, c []value.Value) []value.Value {
		oks := make([]value.Value, U) // nil: the loop bound holds
		vals := make([][]value.Value, U)
		scores := make([]value.Value, U)
		for u := range vals {
			j := k.addc(j0, int64(u*nw))
			if u > 0 {
				oks[u] = k.slt(j, to)
				j = k.smin(j, last)
			}
			kp, vp := k.keyRows(a, src, j)
			kv := lanes.load(k, kp, ci64(0))
			vals[u] = lanes.load(k, vp, ci64(0))
			var dot value.Value = cf(0)
			for e := range kv {
				dot = k.fma(qs[e], kv[e], dot) // q is 0 past D
			}
			scores[u] = dot
		}
		m := c[0]
		for u, dot := range scores {
			sc := k.warpSum(dot)
			if a.Scale != 1 {
				sc = k.fmulc(sc, a.Scale)
			}
			if a.Softcap > 0 {
				sc = k.softcap(sc, a.Softcap)
			}
			if oks[u] != nil {
				sc = k.b.NewSelect(oks[u], sc, cf(-1e30))
			}
			scores[u] = sc
			m = k.fmax(m, sc)
		}
		corr := k.exp(k.fsub(c[0], m))
		next := []value.Value{m, k.fmul(c[1], corr)}
		for e := range qs {
			next = append(next, k.fmul(c[2+e], corr))
		}
		for u, sc := range scores {
			p := k.exp(k.fsub(sc, m))
			if oks[u] != nil {
				p = k.b.NewSelect(oks[u], p, cf(0)) // exp clamps: not exactly 0
			}
			next[1] = k.fadd(next[1], p)
			for e := range qs {
				next[2+e] = k.fma(p, vals[u][e], next[2+e])
			}
		}
		return next
	})
}

// mergeWarps combines the nw warps' {m, l, acc} of one head: it returns
// the block's max M and sum L, and sum(d), the weighted sum over warps of
// dim d's accumulators (to be divided by L for the output).
func (k *kb) mergeWarps(res []value.Value, lanes headLanes, D, nw int) (M, L value.Value, sum func(d value.Value) value.Value) {
	smM, smL, smA := k.shared(nw), k.shared(nw), k.shared(nw*D)
	lane, warp := k.lane(), k.warpI()
	k.ifThen(k.b.NewICmp(enum.IPredEQ, lane, ci64(0)), func() {
		k.store(res[0], smM, warp)
		k.store(res[1], smL, warp)
	})
	for e, d := range lanes.dims {
		k.storeIf(lanes.ok[e], res[2+e], smA, k.add(k.mulc(warp, int64(D)), d))
	}
	k.barrier()
	M = k.load(tF32, smM, ci64(0))
	for w := 1; w < nw; w++ {
		M = k.fmax(M, k.load(tF32, smM, ci64(int64(w))))
	}
	ws := make([]value.Value, nw)
	L = cf(0)
	for w := 0; w < nw; w++ {
		ws[w] = k.exp(k.fsub(k.load(tF32, smM, ci64(int64(w))), M))
		L = k.fma(k.load(tF32, smL, ci64(int64(w))), ws[w], L)
	}
	sum = func(d value.Value) value.Value {
		var acc value.Value = cf(0)
		for w := 0; w < nw; w++ {
			acc = k.fma(k.load(tF32, smA, k.addc(d, int64(w*D))), ws[w], acc)
		}
		return acc
	}
	return M, L, sum
}
