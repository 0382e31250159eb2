package ptx

import (
	"fmt"

	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/value"
)

// Decode attention split over the keys (flash-decoding). For one query
// token (T = 1), AttnPartial runs S blocks per query head: block (s, h)
// takes the s-th of S equal ranges of the keys the query may see (the range
// length ceil(n/S) is computed at run time from the position, so every
// block has work at any length), keeps an online softmax per warp, merges
// its warps and writes the unnormalised partial (max m, sum l, D-wide acc)
// to scratch. AttnCombine merges the partials of each head, writes the
// output and then stores the token's key and value into the cache (the
// partial kernel, which read the cache, has finished by then).
//
// Scratch layout (f32): acc[(h·S + s)·D + d] for h < HQ, s < S, d < D, then
// ml[HQ·S·D + 2(h·S + s) + {0: m, 1: l}]. Only the ranges that are not
// empty (s < used(n)) are written and read.

// attnSplits picks S from the most keys a query can see.
func attnSplits(window, cacheLen int) int {
	nmax := cacheLen
	if window > 0 && window < nmax {
		nmax = window
	}
	return min(32, max(2, ceilDiv(nmax, 16)))
}

// splitRange is the CPU model of the kernels' key ranges: for a query at
// position i with window w (0: global), split s of S covers [lo, hi) (empty
// when lo >= hi), and used is the number of non-empty splits.
func splitRange(i, w, S, s int) (lo, hi, used int) {
	first := 0
	if w > 0 {
		first = max(0, i-w+1)
	}
	n := i + 1 - first
	kps := (n + S - 1) / S
	lo = first + s*kps
	hi = min(lo+kps, i+1)
	used = (n + kps - 1) / kps
	return
}

// AttnScratchBytes is the scratch one split attention needs.
func AttnScratchBytes(hq, d, s int) int64 { return int64(hq*s*(d+2)) * 4 }

// AttnPartial is the first half of the split decode attention.
// Params: part (scratch), q, k, v (the token's), kcache, vcache, scalars.
// Grid: S × HQ blocks of 4 warps.
type AttnPartial struct {
	A Attention // T must be 1
	S int
}

const apWarps = 4

func (s AttnPartial) Name() string {
	a := s.A
	return fmt.Sprintf("attn_partial_hq%d_hkv%d_d%d_w%d_c%d_s%d_cap%s_sc%s",
		a.HQ, a.HKV, a.D, a.Window, a.CacheLen, s.S, fname(a.Softcap), fname(a.Scale))
}
func (s AttnPartial) Params() []string {
	return []string{"part", "q", "k", "v", "kcache", "vcache", "scalars"}
}
func (s AttnPartial) Launch() Launch {
	return Launch{Grid: [3]uint32{uint32(s.S), uint32(s.A.HQ), 1}, Block: [3]uint32{32 * apWarps, 1, 1}}
}
func (s AttnPartial) Validate() error {
	if s.A.T != 1 {
		return fmt.Errorf("split attention is for one query token, got %d", s.A.T)
	}
	if err := positive("S", s.S); err != nil {
		return err
	}
	return s.A.Validate()
}

// attnRange computes, per block, first key, n, kps, i (the query position).
func (k *kb) attnRange(p0 value.Value, window, S int) (first, n, kps, i value.Value) {
	i = p0 // T = 1: the query is at pos
	first = ci64(0)
	if window > 0 {
		first = k.smax(ci64(0), k.addc(i, int64(-window+1)))
	}
	n = k.sub(k.addc(i, 1), first)
	kps = k.b.NewSDiv(k.addc(n, int64(S-1)), ci64(int64(S)))
	return
}

func (s AttnPartial) emit(k *kb) {
	a := s.A
	part, q := k.param(0, tF32), k.param(1, tF32)
	src := keySource{k: k.param(2, tF32), v: k.param(3, tF32), kc: k.param(4, tF32), vc: k.param(5, tF32)}
	p0, nvalid := k.scalars(6)
	src.p0 = p0
	D := a.D
	sp, h := k.bidx(), k.bidy()
	k.returnIf(k.sge(ci64(0), nvalid))
	first, _, kps, i := k.attnRange(p0, a.Window, s.S)
	lo := k.add(first, k.mul(sp, kps))
	hi := k.smin(k.add(lo, kps), k.addc(i, 1))
	k.returnIf(k.sge(lo, hi)) // uniform over the block
	src.hk = k.b.NewUDiv(h, ci64(int64(a.HQ/a.HKV)))
	lanes := k.headLanes(D)
	qs := lanes.load(k, q, k.mulc(h, int64(D)))
	res := k.attendKeys(a, src, lanes, qs, lo, hi, apWarps)
	M, L, sum := k.mergeWarps(res, lanes, D, apWarps)
	blk := k.add(k.mulc(h, int64(s.S)), sp) // h·S + s
	accBase := k.mulc(blk, int64(D))
	k.forRange(k.tid(), ci64(int64(D)), int64(32*apWarps), func(d value.Value) {
		k.store(sum(d), part, k.add(accBase, d))
	})
	k.ifThen(k.b.NewICmp(enum.IPredEQ, k.tid(), ci64(0)), func() {
		ml := k.addc(k.mulc(blk, 2), int64(a.HQ*s.S*D))
		k.store(M, part, ml)
		k.store(L, part, k.addc(ml, 1))
	})
}

// AttnCombine merges the partials of each head and stores the token's key
// and value in the cache. Params: out f32[HQ×D], part, kcache, vcache, k,
// v, scalars. Grid: HQ blocks.
type AttnCombine struct {
	HQ, HKV, D       int
	Window, CacheLen int
	S                int
}

func (s AttnCombine) threads() int { return min(1024, max(32, ceilDiv(s.D, 32)*32)) }

func (s AttnCombine) Name() string {
	return fmt.Sprintf("attn_combine_hq%d_hkv%d_d%d_w%d_c%d_s%d", s.HQ, s.HKV, s.D, s.Window, s.CacheLen, s.S)
}
func (s AttnCombine) Params() []string {
	return []string{"out", "part", "kcache", "vcache", "k", "v", "scalars"}
}
func (s AttnCombine) Launch() Launch { return launch1(s.HQ, s.threads()) }
func (s AttnCombine) Validate() error {
	if s.S > 32 {
		return fmt.Errorf("%d splits (at most 32)", s.S)
	}
	return positive("HQ, HKV, D, CacheLen and S", s.HQ, s.HKV, s.D, s.CacheLen, s.S)
}

func (s AttnCombine) emit(k *kb) {
	out, part := k.param(0, tF32), k.param(1, tF32)
	kc, vc, kk, vv := k.param(2, tF32), k.param(3, tF32), k.param(4, tF32), k.param(5, tF32)
	p0, nvalid := k.scalars(6)
	nt := s.threads()
	D := s.D
	h := k.bidx()
	k.returnIf(k.sge(ci64(0), nvalid))
	_, n, kps, _ := k.attnRange(p0, s.Window, s.S)
	used := k.b.NewSDiv(k.sub(k.add(n, kps), ci64(1)), kps)
	hS := k.mulc(h, int64(s.S))
	mlBase := k.addc(k.mulc(hS, 2), int64(s.HQ*s.S*D))
	// Warp 0 weighs the partials (S ≤ 32: one per lane): w_s = exp(m_s − M)
	// and L = Σ l_s·w_s; unused splits weigh 0 and are never read.
	smW, smL := k.shared(32), k.shared(32)
	lane, warp := k.lane(), k.warpI()
	k.ifThen(k.b.NewICmp(enum.IPredEQ, warp, ci64(0)), func() {
		ok := k.slt(lane, used)
		ml := k.add(mlBase, k.mulc(k.smin(lane, k.addc(used, -1)), 2))
		m := k.b.NewSelect(ok, k.load(tF32, part, ml), cf(-1e30))
		var M value.Value = m
		for x := int64(16); x >= 1; x /= 2 {
			M = k.fmax(M, k.shflXor(M, x))
		}
		w := k.b.NewSelect(ok, k.exp(k.fsub(m, M)), cf(0))
		lw := k.b.NewSelect(ok, k.fmul(k.load(tF32, part, k.addc(ml, 1)), w), cf(0))
		L := k.warpSum(lw)
		k.store(w, smW, lane)
		k.ifThen(k.b.NewICmp(enum.IPredEQ, lane, ci64(0)), func() { k.store(L, smL, ci64(0)) })
	})
	k.barrier()
	L := k.load(tF32, smL, ci64(0))
	ws := make([]value.Value, s.S)
	for sp := range ws {
		ws[sp] = k.load(tF32, smW, ci64(int64(sp)))
	}
	k.forRange(k.tid(), ci64(int64(D)), int64(nt), func(d value.Value) {
		var acc value.Value = cf(0)
		for sp := 0; sp < s.S; sp++ {
			ok := k.slt(ci64(int64(sp)), used)
			spc := k.smin(ci64(int64(sp)), k.addc(used, -1))
			v := k.load(tF32, part, k.add(k.mulc(k.add(hS, spc), int64(D)), d))
			acc = k.fma(k.b.NewSelect(ok, v, cf(0)), ws[sp], acc)
		}
		k.store(k.fdiv(acc, L), out, k.add(k.mulc(h, int64(D)), d))
	})
	// The token's key and value go to slot pos mod CacheLen.
	row := int64(s.HKV * D)
	slot := k.b.NewSRem(p0, ci64(int64(s.CacheLen)))
	dst := k.mulc(slot, row)
	k.forRange(k.add(k.mulc(h, int64(nt)), k.tid()), ci64(row), int64(s.HQ*nt), func(i value.Value) {
		k.store(k.load(tF32, kk, i), kc, k.add(dst, i))
		k.store(k.load(tF32, vv, i), vc, k.add(dst, i))
	})
}

// RoPE2 is two RoPE calls of one position range in one launch (the query
// and key heads of a layer): blocks [0, R·NH1) rotate x1 into out1 with
// Scale1, the next R·NH2 blocks x2 into out2 with Scale2.
// Params: out1, x1, out2, x2, rope, scalars.
type RoPE2 struct {
	R, NH1, NH2, D int
	Scale1, Scale2 float64
}

func (s RoPE2) Name() string {
	return fmt.Sprintf("rope2_r%d_nh%d_%d_d%d_scale%s_%s", s.R, s.NH1, s.NH2, s.D, fname(s.Scale1), fname(s.Scale2))
}
func (s RoPE2) Params() []string { return []string{"out1", "x1", "out2", "x2", "rope", "scalars"} }
func (s RoPE2) Launch() Launch {
	return launch1(s.R*(s.NH1+s.NH2), max(32, ceilDiv(s.D/2, 32)*32))
}
func (s RoPE2) Validate() error {
	if s.D%2 != 0 {
		return fmt.Errorf("odd head dimension %d", s.D)
	}
	return positive("R, NH1, NH2 and D", s.R, s.NH1, s.NH2, s.D)
}
func (s RoPE2) emit(k *kb) {
	out1, x1, out2, x2 := k.param(0, tF32), k.param(1, tF32), k.param(2, tF32), k.param(3, tF32)
	tbl := k.param(4, tF32)
	pos, nvalid := k.scalars(5)
	half := int64(s.D / 2)
	b0 := k.bidx()
	second := k.sge(b0, ci64(int64(s.R*s.NH1)))
	b := k.b.NewSelect(second, k.addc(b0, int64(-s.R*s.NH1)), b0)
	nh := k.b.NewSelect(second, ci64(int64(s.NH2)), ci64(int64(s.NH1)))
	out := k.b.NewSelect(second, out2, out1)
	x := k.b.NewSelect(second, x2, x1)
	t := k.b.NewUDiv(b, nh)
	i := k.tid()
	k.returnIf(k.b.NewOr(k.sge(t, nvalid), k.sge(i, ci64(half))))
	p := k.add(pos, t)
	cs := k.load(tF32, tbl, k.add(k.mulc(p, int64(s.D)), i))
	sn := k.load(tF32, tbl, k.add(k.mulc(p, int64(s.D)), k.addc(i, half)))
	base := k.mulc(b, int64(s.D))
	ia, ib := k.add(base, i), k.add(base, k.addc(i, half))
	av, bv := k.load(tF32, x, ia), k.load(tF32, x, ib)
	ra := k.fsub(k.fmul(av, cs), k.fmul(bv, sn))
	rb := k.fadd(k.fmul(bv, cs), k.fmul(av, sn))
	if s.Scale1 != 1 || s.Scale2 != 1 {
		sc := k.b.NewSelect(second, cf(s.Scale2), cf(s.Scale1))
		ra, rb = k.fmul(ra, sc), k.fmul(rb, sc)
	}
	k.store(ra, out, ia)
	k.store(rb, out, ib)
}
