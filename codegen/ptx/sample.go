package ptx

// The on-GPU sampler: temperature, top-k, top-p (nucleus) and min-p over
// the decode program's logits, drawing with a counter-based random number
// computed on the device, so that a captured generation step (decode +
// sampler) needs nothing from the host but the settings written once per
// generation.

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/runtime/plan"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// The settings buffer (SampleSettingsBytes bytes of device memory, little
// endian, written by the host before a generation; the kernel only reads it):
//
//	offset  0  f32  temperature   > 0 samples; 0 (or anything not > 0) is argmax
//	offset  4  i32  top_k         0 < top_k < N keeps the top_k largest (+ ties); else off
//	offset  8  f32  top_p         0 < top_p < 1 keeps the nucleus; else off
//	offset 12  f32  min_p         > 0 drops tokens below min_p × the top probability
//	offset 16  u64  seed          with the position, seeds the step's random number
//	offset 24  u64  reserved (0)
const (
	SampleSettingsBytes = 32
	// sampleThreads: 512 (two threads per histogram bin) leaves the kernel
	// 128 registers; at 1024 it would need ≤ 64, which LLVM 14 cannot be
	// told (no .maxntid from this module) and ptxas does not reach (72).
	sampleThreads = 512
	// sampleQBits is the fixed-point scale of the weights: a token's weight
	// w = exp((x−max)/T) ∈ (0, 1] is held as ⌊w·2^40⌋, so that every mass
	// (sums of at most 2^31 weights) is an exact u64 and prefix sums agree
	// bit for bit between passes. A weight below 2^-40 counts as 0: at
	// most N·2^-40 (2.3e-7 for 256000 tokens) of mass, relative to the top
	// token's, is never drawn.
	sampleQBits = 40
)

// SampleSettings is the host image of the settings buffer.
type SampleSettings struct {
	Temperature float32
	TopK        int32
	TopP        float32
	MinP        float32
	Seed        uint64
}

// Bytes encodes s in the buffer's layout.
func (s SampleSettings) Bytes() []byte {
	b := make([]byte, SampleSettingsBytes)
	binary.LittleEndian.PutUint32(b[0:], math.Float32bits(s.Temperature))
	binary.LittleEndian.PutUint32(b[4:], uint32(s.TopK))
	binary.LittleEndian.PutUint32(b[8:], math.Float32bits(s.TopP))
	binary.LittleEndian.PutUint32(b[12:], math.Float32bits(s.MinP))
	binary.LittleEndian.PutUint64(b[16:], s.Seed)
	return b
}

// SplitMix64 constants: the generator's increment and its finaliser's
// multipliers. The kernel's RNG is emitted from these same constants.
const (
	rngGamma = 0x9E3779B97F4A7C15
	rngMul1  = 0xBF58476D1CE4E5B9
	rngMul2  = 0x94D049BB133111EB
)

// Mix64 is SplitMix64's finaliser (Stafford's variant 13).
func Mix64(z uint64) uint64 {
	z = (z ^ z>>30) * rngMul1
	z = (z ^ z>>27) * rngMul2
	return z ^ z>>31
}

// SampleRandom is the kernel's random number for a step: output pos+1 of
// a SplitMix64 stream whose state starts at Mix64(seed), computed directly
// from the counter, so a replayed CUDA graph draws a fresh number each
// step. pos is scalars[0] when the kernel runs (the decoded token's
// position).
func SampleRandom(seed uint64, pos int64) uint64 {
	return Mix64(Mix64(seed) + uint64(pos+1)*rngGamma)
}

// SampleTarget maps a random number to a point in [0, z): ⌊r·z / 2^64⌋,
// the kernel's mul.hi.u64.
func SampleTarget(r, z uint64) uint64 {
	hi, _ := bits.Mul64(r, z)
	return hi
}

// SampleKey is the kernel's order-preserving map from a logit to a u32:
// larger logits give larger keys, -0 is +0, and NaN is 0, below -Inf
// (0x007FFFFF).
func SampleKey(v float32) uint32 {
	if v != v {
		return 0
	}
	b := math.Float32bits(v)
	if b == 0x80000000 {
		b = 0
	}
	if b&0x80000000 != 0 {
		return ^b
	}
	return b | 0x80000000
}

// Sample draws the next token from N logits with the settings buffer's
// temperature, top-k, top-p and min-p (runtime/sample's semantics: NaN is
// -Inf; top-k keeps ties with the k-th; top-p keeps, in order of logit
// then id, each token whose mass ranked above it is below p of the
// candidates' total; min-p applies after top-p; temperature 0, or no
// logit above -Inf, is argmax). It writes the token to tokens[0] and
// advances scalars[0], as Argmax does. Params: logits f32[N], tokens,
// scalars, settings. One block of 512 threads.
//
// Keys are the logits' order-preserving u32 bits (SampleKey). Thresholds
// are found by radix selection, 8 bits per pass from the top, with
// shared-memory histograms (256 bins × 16 lane columns of u64): counts for
// top-k (the k-th largest key) and fixed-point probability mass for top-p
// (the smallest key whose mass strictly above is below ⌈p·total⌉; ties
// at that key are cut by id with one more selection on the ids when only
// some of them survive). The draw is exact in integers: per-thread sums of
// the kept fixed-point weights, a block scan, then a warp narrowing to
// the token whose interval holds ⌊r·total/2^64⌋.
type Sample struct{ N int }

func (s Sample) Name() string     { return fmt.Sprintf("sample_n%d", s.N) }
func (s Sample) Params() []string { return []string{"logits", "tokens", "scalars", "settings"} }
func (s Sample) Launch() Launch   { return launch1(1, sampleThreads) }
func (s Sample) Validate() error {
	if err := positive("N", s.N); err != nil {
		return err
	}
	if s.N >= 1<<30 {
		return fmt.Errorf("N = %d: the sampler indexes tokens with 30 bits", s.N)
	}
	return nil
}

// addSample registers the sampler for the decode program's logits. Its
// settings live in the arena past every program's values (the decode
// program's arena grows by a 256-byte slot), so no program ever writes
// them and each state has its own.
func addSample(mod *Module, progs map[string]*plan.Program) (Sampler, error) {
	dec := progs["decode"]
	sp := Sample{N: dec.Output.Cols}
	ki, err := mod.Add(sp)
	if err != nil {
		return Sampler{}, err
	}
	var top int64
	for _, p := range progs {
		top = max(top, p.ArenaBytes)
	}
	off := (top + 255) &^ 255
	dec.ArenaBytes = off + 256
	return Sampler{Kernel: ki, Launch: sp.Launch(), Args: []plan.Arg{
		{Kind: plan.ArgArena, Offset: dec.Output.Offset}, {Kind: plan.ArgTokens}, scalars,
		{Kind: plan.ArgArena, Offset: off}}}, nil
}

// SettingsOffset is the arena offset of a sampler's settings buffer.
func (s Sampler) SettingsOffset() (int64, error) {
	if len(s.Args) != 4 || s.Args[3].Kind != plan.ArgArena {
		return 0, fmt.Errorf("the sampler has no settings argument")
	}
	return s.Args[3].Offset, nil
}

// sampler emits the kernel; its helpers are methods here rather than on
// kb so that they cannot collide with kb's.
type sampler struct {
	*kb
	n, nt, iters   int
	logits, toks   value.Value
	sc             value.Value
	tid, lane      value.Value
	warp           value.Value
	hist, tot, res value.Value
}

const (
	keyNegInf = 0x007FFFFF // SampleKey(-Inf)
	keyLowest = keyNegInf + 1
)

func (s Sample) emit(k *kb) {
	e := &sampler{kb: k, n: s.N, nt: sampleThreads, iters: ceilDiv(s.N, sampleThreads)}
	e.run()
}

func cu64(v uint64) *constant.Int { return constant.NewInt(tI64, int64(v)) }

// matches reports whether the sampler's arguments fit its kernel.
func (s Sampler) matches(es []Entry) bool {
	return s.Kernel >= 0 && s.Kernel < len(es) && len(s.Args) == es[s.Kernel].Params
}

func (e *sampler) shfl32(mode string, v value.Value, b int64) value.Value {
	f := e.m.intrinsic("llvm.nvvm.shfl.sync."+mode+".i32", tI32, tI32, tI32, tI32, tI32)
	c := int64(0x1f)
	if mode == "up" {
		c = 0
	}
	return e.b.NewCall(f, ci32(-1), v, ci32(b), ci32(c))
}

func (e *sampler) shfl64(mode string, v value.Value, b int64) value.Value {
	lo := e.b.NewTrunc(v, tI32)
	hi := e.b.NewTrunc(e.b.NewLShr(v, ci64(32)), tI32)
	lo2, hi2 := e.shfl32(mode, lo, b), e.shfl32(mode, hi, b)
	return e.b.NewOr(e.b.NewZExt(lo2, tI64), e.b.NewShl(e.b.NewZExt(hi2, tI64), ci64(32)))
}

func (e *sampler) icmp(p enum.IPred, x, y value.Value) value.Value { return e.b.NewICmp(p, x, y) }
func (e *sampler) sel(c, x, y value.Value) value.Value             { return e.b.NewSelect(c, x, y) }
func (e *sampler) and(x, y value.Value) value.Value                { return e.b.NewAnd(x, y) }
func (e *sampler) or(x, y value.Value) value.Value                 { return e.b.NewOr(x, y) }
func (e *sampler) umax(x, y value.Value) value.Value {
	return e.sel(e.icmp(enum.IPredUGT, x, y), x, y)
}
func (e *sampler) umin(x, y value.Value) value.Value {
	return e.sel(e.icmp(enum.IPredULT, x, y), x, y)
}

// cond runs then when c holds and returns its values, or otherwise (values
// available before the branch) when it does not.
func (e *sampler) cond(c value.Value, then func() []value.Value, otherwise []value.Value) []value.Value {
	return codegen.CondValues(&e.b, e.block, c, then, otherwise)
}

// key is SampleKey on the device (i32, compared unsigned).
func (e *sampler) key(v value.Value) value.Value {
	var b value.Value = e.b.NewBitCast(v, tI32)
	b = e.sel(e.icmp(enum.IPredEQ, b, ci32(-0x80000000)), ci32(0), b)
	neg := e.icmp(enum.IPredSLT, b, ci32(0))
	k := e.sel(neg, e.b.NewXor(b, ci32(-1)), e.or(b, ci32(-0x80000000)))
	return e.sel(e.b.NewFCmp(enum.FPredUNO, v, v), ci32(0), k)
}

// unkey inverts key for non-NaN keys.
func (e *sampler) unkey(k value.Value) value.Value {
	neg := e.icmp(enum.IPredSLT, k, ci32(0)) // top bit set: a non-negative float
	b := e.sel(neg, e.and(k, ci32(0x7FFFFFFF)), e.b.NewXor(k, ci32(-1)))
	return e.b.NewBitCast(b, tF32)
}

// forAll runs body for i = tid + j·nt, j < ceil(N/nt), on every thread the
// same number of times; ok says whether i < N (nil: always), and i is
// clamped to N−1 for loads.
func (e *sampler) forAll(init []value.Value, body func(i, ok value.Value, c []value.Value) []value.Value) []value.Value {
	return e.loop(ci64(0), ci64(int64(e.iters*e.nt)), int64(e.nt), init, func(base value.Value, c []value.Value) []value.Value {
		i := e.add(base, e.tid)
		var ok value.Value
		if e.n%e.nt != 0 {
			ok = e.slt(i, ci64(int64(e.n)))
			i = e.smin(i, ci64(int64(e.n-1)))
		}
		return body(i, ok, c)
	})
}

func (e *sampler) andOK(ok, c value.Value) value.Value {
	if ok == nil {
		return c
	}
	return e.and(ok, c)
}

// blockMax and blockSum reduce an i64 over the block; every thread gets
// the result. Each call uses its own 32-entry buffer.
func (e *sampler) blockReduce(v value.Value, op func(x, y value.Value) value.Value) value.Value {
	for m := int64(16); m >= 1; m /= 2 {
		v = op(v, e.shfl64("bfly", v, m))
	}
	buf := e.sharedOf(32, tI64)
	e.ifThen(e.icmp(enum.IPredEQ, e.lane, ci64(0)), func() { e.store(v, buf, e.warp) })
	e.barrier()
	r := e.load(tI64, buf, ci64(0))
	for w := 1; w < e.nt/32; w++ {
		r = op(r, e.load(tI64, buf, ci64(int64(w))))
	}
	return r
}

// weight returns a candidate's weight exp((v−M)/T) = 2^((v−M)·s2) (s2 =
// log2(e)/T), exactly 1 for the top key, and its fixed-point value.
func (e *sampler) weight(v, k, keyMax, M, s2 value.Value) (w, q value.Value) {
	ex2 := e.m.intrinsic("llvm.nvvm.ex2.approx.f", tF32, tF32)
	w = e.b.NewCall(ex2, e.fmul(e.fsub(v, M), s2))
	w = e.sel(e.icmp(enum.IPredEQ, k, keyMax), cf(1), w)
	q = e.b.NewFPToUI(e.fmul(w, cf(math.Ldexp(1, sampleQBits))), tI64)
	return w, q
}

// walk is one radix selection over the u32 values val(i) of the elements
// that pass (and are < N), each weighing wt(i): it returns the largest x
// such that the weight of the values ≥ x reaches target, with above, the
// weight of the values > x, and bin, that of the values = x (above <
// target ≤ above + bin). target is computed from the total weight, on
// warp 0 (its result is returned too).
func (e *sampler) walk(val func(i, v, k value.Value) (x, pass value.Value), wt func(v, k value.Value) value.Value,
	target func(total value.Value) value.Value) (x, above, bin, tgt value.Value) {
	prefix, mask := value.Value(ci32(0)), value.Value(ci32(0))
	above, tgt = ci64(0), ci64(0)
	for level := 0; level < 4; level++ {
		shift := int64(24 - 8*level)
		for c := 0; c < 256*16/e.nt; c++ {
			e.store(ci64(0), e.hist, e.addc(e.tid, int64(c*e.nt)))
		}
		e.barrier()
		col := e.b.NewAnd(e.lane, ci64(15))
		e.forAll(nil, func(i, ok value.Value, _ []value.Value) []value.Value {
			v := e.load(tF32, e.logits, i)
			k := e.key(v)
			xv, pass := val(i, v, k)
			match := e.andOK(ok, e.and(pass, e.icmp(enum.IPredEQ, e.and(xv, mask), prefix)))
			e.ifThen(match, func() {
				d := e.b.NewZExt(e.and(e.b.NewLShr(xv, ci32(shift)), ci32(255)), tI64)
				p := e.gep(tI64, e.hist, e.add(e.mulc(d, 16), col))
				e.b.NewAtomicRMW(enum.AtomicOpAdd, p, wt(v, k), enum.AtomicOrderingMonotonic)
			})
			return nil
		})
		e.barrier()
		// Bin d is the sum of its 16 columns, split over tpb threads.
		tpb := int64(e.nt / 256)
		per := 16 / tpb
		d := e.b.NewUDiv(e.tid, ci64(tpb))
		part := e.b.NewURem(e.tid, ci64(tpb))
		base := e.add(e.mulc(d, 16), e.mulc(part, per))
		var sum value.Value = e.load(tI64, e.hist, base)
		for c := int64(1); c < per; c++ {
			sum = e.add(sum, e.load(tI64, e.hist, e.addc(base, c)))
		}
		for m := int64(1); m < tpb; m *= 2 {
			sum = e.add(sum, e.shfl64("bfly", sum, m))
		}
		e.ifThen(e.icmp(enum.IPredEQ, part, ci64(0)), func() { e.store(sum, e.tot, d) })
		e.barrier()
		// Warp 0 finds the highest bin where the weight from the top
		// reaches the target: lane l owns bins 8l..8l+7.
		ab := above
		first := level == 0
		e.ifThen(e.icmp(enum.IPredEQ, e.warp, ci64(0)), func() {
			b0 := e.mulc(e.lane, 8)
			// The bins are loaded twice rather than held: the kernel
			// must fit 64 registers for 1024 threads.
			tc := func(c int) value.Value { return e.load(tI64, e.tot, e.addc(b0, int64(c))) }
			var cs value.Value = ci64(0)
			for c := 0; c < 8; c++ {
				cs = e.add(cs, tc(c))
			}
			suf := cs
			for off := int64(1); off < 32; off *= 2 {
				o := e.shfl64("down", suf, off)
				suf = e.sel(e.slt(e.addc(e.lane, off), ci64(32)), e.add(suf, o), suf)
			}
			tg := tgt
			if first {
				total := e.shfl64("idx", suf, 0) // lane 0's suffix is everything
				tg = target(total)
				e.ifThen(e.icmp(enum.IPredEQ, e.lane, ci64(0)), func() { e.store(tg, e.res, ci64(3)) })
			}
			run := e.sub(suf, cs)
			fd, fa, fb := value.Value(ci32(-1)), value.Value(ci64(0)), value.Value(ci64(0))
			for c := 7; c >= 0; c-- {
				prev := run
				tcv := tc(c)
				run = e.add(run, tcv)
				hit := e.and(e.icmp(enum.IPredUGE, e.add(ab, run), tg), e.icmp(enum.IPredSLT, fd, ci32(0)))
				fd = e.sel(hit, e.b.NewTrunc(e.addc(b0, int64(c)), tI32), fd)
				fa = e.sel(hit, e.add(ab, prev), fa)
				fb = e.sel(hit, tcv, fb)
			}
			dm := fd
			for m := int64(16); m >= 1; m /= 2 {
				dm = e.smax(dm, e.shfl32("bfly", dm, m))
			}
			win := e.and(e.icmp(enum.IPredEQ, fd, dm), e.icmp(enum.IPredSGE, dm, ci32(0)))
			e.ifThen(win, func() {
				e.store(e.b.NewZExt(dm, tI64), e.res, ci64(0))
				e.store(fa, e.res, ci64(1))
				e.store(fb, e.res, ci64(2))
			})
			// Cannot happen (above < target ≤ above + the bins' total);
			// keep the state sane if it does.
			none := e.and(e.icmp(enum.IPredSLT, dm, ci32(0)), e.icmp(enum.IPredEQ, e.lane, ci64(0)))
			e.ifThen(none, func() {
				e.store(ci64(0), e.res, ci64(0))
				e.store(ab, e.res, ci64(1))
				e.store(ci64(0), e.res, ci64(2))
			})
		})
		e.barrier()
		if first {
			tgt = e.load(tI64, e.res, ci64(3))
		}
		dsel := e.b.NewTrunc(e.load(tI64, e.res, ci64(0)), tI32)
		above = e.load(tI64, e.res, ci64(1))
		bin = e.load(tI64, e.res, ci64(2))
		prefix = e.or(prefix, e.b.NewShl(dsel, ci32(shift)))
		mask = e.or(mask, ci32(255<<shift))
	}
	return prefix, above, bin, tgt
}

// finish writes the token and advances the position (one thread calls it).
func (e *sampler) finish(tok, pos value.Value) {
	e.store(e.b.NewTrunc(tok, tI32), e.toks, ci64(0))
	e.store(e.addc(pos, 1), e.sc, ci64(0))
}

func (e *sampler) run() {
	e.logits, e.toks, e.sc = e.param(0, tF32), e.param(1, tI32), e.param(2, tI64)
	set := e.param(3, tI32)
	e.tid, e.lane, e.warp = e.kb.tid(), e.kb.lane(), e.warpI()
	e.hist = e.sharedOf(256*16, tI64)
	e.tot = e.sharedOf(256, tI64)
	e.res = e.sharedOf(8, tI64)
	own := e.sharedOf(2, tI64)

	setF := e.b.NewBitCast(set, gptr(tF32))
	temp := e.load(tF32, setF, ci64(0))
	topK := e.load(tI32, set, ci64(1))
	topP := e.load(tF32, setF, ci64(2))
	minP := e.load(tF32, setF, ci64(3))
	seed := e.load(tI64, e.b.NewBitCast(set, gptr(tI64)), ci64(2))
	pos := e.load(tI64, e.sc, ci64(0))

	// Pass 1: the largest key, lowest id first: max of key<<32 | ^id.
	best := e.forAll([]value.Value{ci64(0)}, func(i, ok value.Value, c []value.Value) []value.Value {
		k := e.key(e.load(tF32, e.logits, i))
		p := e.or(e.b.NewShl(e.b.NewZExt(k, tI64), ci64(32)), e.sub(ci64(0xFFFFFFFF), i))
		if ok != nil {
			p = e.sel(ok, p, ci64(0))
		}
		return []value.Value{e.umax(c[0], p)}
	})[0]
	best = e.blockReduce(best, e.umax)
	keyMax := e.b.NewTrunc(e.b.NewLShr(best, ci64(32)), tI32)
	argIdx := e.sub(ci64(0xFFFFFFFF), e.b.NewAnd(best, ci64(0xFFFFFFFF)))
	greedy := e.or(e.b.NewFCmp(enum.FPredULE, temp, cf(0)), e.icmp(enum.IPredULT, keyMax, ci32(keyLowest)))
	e.ifThen(e.and(greedy, e.icmp(enum.IPredEQ, e.tid, ci64(0))), func() { e.finish(argIdx, pos) })
	e.returnIf(greedy)

	M := e.unkey(keyMax)
	s2 := e.fdiv(cf(math.Log2E), temp)
	wt := func(v, k value.Value) value.Value { _, q := e.weight(v, k, keyMax, M, s2); return q }
	one := func(v, k value.Value) value.Value { return ci64(1) }
	konst := func(c value.Value) func(value.Value) value.Value {
		return func(value.Value) value.Value { return c }
	}

	// Top-k: the k-th largest key over all N (NaN and -Inf included, as
	// the CPU's heap); candidates are the keys ≥ it and above -Inf.
	n := int64(e.n)
	useK := e.and(e.icmp(enum.IPredSGT, topK, ci32(0)), e.icmp(enum.IPredSLT, topK, ci32(n)))
	lo := e.cond(useK, func() []value.Value {
		kth, _, _, _ := e.walk(func(i, v, k value.Value) (value.Value, value.Value) { return k, constant.True },
			one, konst(e.b.NewSExt(topK, tI64)))
		return []value.Value{e.umax(kth, ci32(keyLowest))}
	}, []value.Value{ci32(keyLowest)})[0]
	isCand := func(k value.Value) value.Value { return e.icmp(enum.IPredUGE, k, lo) }

	// Top-p: the smallest key whose mass strictly above is below
	// ⌈p·total⌉, total being the candidates' mass; then how many of the
	// tokens tied at it survive, lowest ids first.
	useP := e.and(e.b.NewFCmp(enum.FPredOGT, topP, cf(0)), e.b.NewFCmp(enum.FPredOLT, topP, cf(1)))
	pres := e.cond(useP, func() []value.Value {
		tp, g, mt, tgt := e.walk(func(i, v, k value.Value) (value.Value, value.Value) { return k, isCand(k) },
			wt, func(total value.Value) value.Value {
				x := e.b.NewFMul(e.b.NewFPExt(topP, types.Double), e.b.NewUIToFP(total, types.Double))
				ceil := e.m.intrinsic("llvm.ceil.f64", types.Double, types.Double)
				t := e.b.NewFPToUI(e.b.NewCall(ceil, x), tI64)
				return e.umin(e.umax(t, ci64(1)), total)
			})
		_, qt := e.weight(e.unkey(tp), tp, keyMax, M, s2)
		qz := e.icmp(enum.IPredEQ, qt, ci64(0))
		qd := e.sel(qz, ci64(1), qt)
		nt := e.b.NewUDiv(mt, qd)
		c := e.b.NewUDiv(e.add(e.sub(tgt, g), e.sub(qd, ci64(1))), qd)
		needCut := e.and(e.b.NewXor(qz, constant.True), e.icmp(enum.IPredULT, c, nt))
		cut := e.cond(needCut, func() []value.Value {
			// The c-th smallest id among the tied tokens is the c-th
			// largest of ^id.
			x, _, _, _ := e.walk(func(i, v, k value.Value) (value.Value, value.Value) {
				return e.b.NewXor(e.b.NewTrunc(i, tI32), ci32(-1)), e.icmp(enum.IPredEQ, k, tp)
			}, one, konst(c))
			return []value.Value{e.b.NewZExt(e.b.NewXor(x, ci32(-1)), tI64)}
		}, []value.Value{ci64(n)})[0]
		return []value.Value{tp, cut}
	}, []value.Value{lo, ci64(n)})
	tp, cut := pres[0], pres[1]
	minW := e.sel(e.b.NewFCmp(enum.FPredOGT, minP, cf(0)), minP, cf(0))
	// kept returns the fixed-point weight of element i if it survives
	// every filter, else 0.
	kept := func(i, ok value.Value) value.Value {
		v := e.load(tF32, e.logits, i)
		k := e.key(v)
		w, q := e.weight(v, k, keyMax, M, s2)
		in := e.and(isCand(k), e.or(e.icmp(enum.IPredUGT, k, tp),
			e.and(e.icmp(enum.IPredEQ, k, tp), e.icmp(enum.IPredSLE, i, cut))))
		in = e.and(in, e.b.NewFCmp(enum.FPredOGE, w, minW))
		return e.sel(e.andOK(ok, in), q, ci64(0))
	}

	// The draw: thread t owns elements t + j·nt; an inclusive scan of the
	// owners' sums gives each an interval of [0, Z).
	st := e.forAll([]value.Value{ci64(0)}, func(i, ok value.Value, c []value.Value) []value.Value {
		return []value.Value{e.add(c[0], kept(i, ok))}
	})[0]
	incl := st
	for off := int64(1); off < 32; off *= 2 {
		o := e.shfl64("up", incl, off)
		incl = e.sel(e.sge(e.lane, ci64(off)), e.add(incl, o), incl)
	}
	wsum := e.sharedOf(32, tI64)
	e.ifThen(e.icmp(enum.IPredEQ, e.lane, ci64(31)), func() { e.store(incl, wsum, e.warp) })
	e.ifThen(e.icmp(enum.IPredEQ, e.tid, ci64(0)), func() { e.store(ci64(-1), own, ci64(0)) })
	e.barrier()
	var woff, Z value.Value = ci64(0), ci64(0)
	for w := 0; w < e.nt/32; w++ {
		x := e.load(tI64, wsum, ci64(int64(w)))
		woff = e.add(woff, e.sel(e.slt(ci64(int64(w)), e.warp), x, ci64(0)))
		Z = e.add(Z, x)
	}
	incl = e.add(incl, woff)
	excl := e.sub(incl, st)
	mulhi := e.m.intrinsic("llvm.nvvm.mulhi.ull", tI64, tI64, tI64)
	target := e.b.NewCall(mulhi, e.rng(seed, pos), Z)
	isOwner := e.and(e.icmp(enum.IPredULE, excl, target), e.icmp(enum.IPredULT, target, incl))
	e.ifThen(isOwner, func() {
		e.store(e.tid, own, ci64(0))
		e.store(excl, own, ci64(1))
	})
	e.barrier()
	e.returnIf(e.icmp(enum.IPredNE, e.warp, ci64(0)))

	// Warp 0 narrows to the owner's elements: lane l takes j in
	// [l·J2, (l+1)·J2), then the lane holding the target scans its own.
	ot := e.load(tI64, own, ci64(0))
	valid := e.icmp(enum.IPredULT, ot, ci64(int64(e.nt)))
	ot = e.sel(valid, ot, ci64(0))
	r2 := e.sub(target, e.load(tI64, own, ci64(1)))
	j2 := ceilDiv(e.iters, 32)
	jlo := e.smin(e.mulc(e.lane, int64(j2)), ci64(int64(e.iters)))
	jhi := e.smin(e.addc(jlo, int64(j2)), ci64(int64(e.iters)))
	elem := func(j value.Value) (i, ok value.Value) {
		i = e.add(ot, e.mulc(j, int64(e.nt)))
		ok = e.slt(i, ci64(n))
		return e.smin(i, ci64(n-1)), ok
	}
	sig := e.loop(jlo, jhi, 1, []value.Value{ci64(0)}, func(j value.Value, c []value.Value) []value.Value {
		return []value.Value{e.add(c[0], kept(elem(j)))}
	})[0]
	inc := sig
	for off := int64(1); off < 32; off *= 2 {
		o := e.shfl64("up", inc, off)
		inc = e.sel(e.sge(e.lane, ci64(off)), e.add(inc, o), inc)
	}
	exc := e.sub(inc, sig)
	mine := e.and(valid, e.and(e.icmp(enum.IPredULE, exc, r2), e.icmp(enum.IPredULT, r2, inc)))
	var anyOwner value.Value = e.b.NewZExt(mine, tI32)
	for m := int64(16); m >= 1; m /= 2 {
		anyOwner = e.or(anyOwner, e.shfl32("bfly", anyOwner, m))
	}
	e.ifThen(mine, func() {
		res := e.loop(jlo, jhi, 1, []value.Value{exc, argIdx, constant.False}, func(j value.Value, c []value.Value) []value.Value {
			i, ok := elem(j)
			cum := e.add(c[0], kept(i, ok))
			hit := e.and(e.b.NewXor(c[2], constant.True), e.icmp(enum.IPredULT, r2, cum))
			return []value.Value{cum, e.sel(hit, i, c[1]), e.or(c[2], hit)}
		})
		e.finish(res[1], pos)
	})
	// Cannot happen with exact integer sums; fall back to argmax.
	e.ifThen(e.and(e.icmp(enum.IPredEQ, anyOwner, ci32(0)), e.icmp(enum.IPredEQ, e.lane, ci64(0))), func() {
		e.finish(argIdx, pos)
	})
}

// rng is SampleRandom on the device.
func (e *sampler) rng(seed, pos value.Value) value.Value {
	mix := func(z value.Value) value.Value {
		z = e.mul(e.b.NewXor(z, e.b.NewLShr(z, ci64(30))), cu64(rngMul1))
		z = e.mul(e.b.NewXor(z, e.b.NewLShr(z, ci64(27))), cu64(rngMul2))
		return e.b.NewXor(z, e.b.NewLShr(z, ci64(31)))
	}
	ctr := e.mul(e.addc(pos, 1), cu64(rngGamma))
	return mix(e.add(mix(seed), ctr))
}
