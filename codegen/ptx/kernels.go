package ptx

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// rowThreads picks a block size for a row of h elements: the largest of
// 256, 128, 64, 32 dividing h, else 256.
func rowThreads(h int) int {
	for _, n := range []int{256, 128, 64, 32} {
		if h%n == 0 {
			return n
		}
	}
	return 256
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// rowValues loads the elements tid + j·nt (j < ceil(h/nt)) of row base of
// p, with 0 for those past h; ok reports per element whether it exists.
func (k *kb) rowValues(p, base value.Value, h, nt int) (vals, idx []value.Value, ok []value.Value) {
	tid := k.tid()
	for j := 0; j < ceilDiv(h, nt); j++ {
		i := k.addc(tid, int64(j*nt))
		var okj value.Value
		ic := i
		if (j+1)*nt > h {
			okj = k.slt(i, ci64(int64(h)))
			ic = k.smin(i, ci64(int64(h-1)))
		}
		v := k.load(tF32, p, k.add(base, ic))
		if okj != nil {
			v = k.b.NewSelect(okj, v, cf(0))
		}
		vals, idx, ok = append(vals, v), append(idx, ic), append(ok, okj)
	}
	return
}

// normRow is the layout of a normalised row: vw-wide vectors (4 when H is
// a multiple of 4), nt threads (a multiple of 32, at most 1024), per
// vectors per thread: one 16-byte load per thread for H ≤ 4096.
type normRow struct{ vw, nv, nt, per int }

func newNormRow(h int) normRow {
	vw := 1
	if h%4 == 0 {
		vw = 4
	}
	nv := h / vw
	nt := min(1024, ceilDiv(nv, 32)*32)
	return normRow{vw: vw, nv: nv, nt: nt, per: ceilDiv(nv, nt)}
}

// rowVecs loads the vectors tid + j·nt (j < per) of the row at element
// base of p as f32 scalars (vw per vector, 0 past the row); vi are the
// clamped vector indices and ok says which exist (nil: always).
func (k *kb) rowVecs(p, base value.Value, lay normRow) (vals [][]value.Value, vi, ok []value.Value) {
	tid := k.tid()
	for j := 0; j < lay.per; j++ {
		i := k.addc(tid, int64(j*lay.nt))
		var okj value.Value
		if (j+1)*lay.nt > lay.nv {
			okj = k.slt(i, ci64(int64(lay.nv)))
			i = k.smin(i, ci64(int64(lay.nv-1)))
		}
		vals = append(vals, k.vecAt(p, base, i, lay.vw, okj))
		vi, ok = append(vi, i), append(ok, okj)
	}
	return
}

// vecAt loads vector i (vw f32) at element base of p, zeroed unless ok.
func (k *kb) vecAt(p, base, i value.Value, vw int, ok value.Value) []value.Value {
	idx := k.add(base, k.mulc(i, int64(vw)))
	out := make([]value.Value, vw)
	if vw == 1 {
		out[0] = k.load(tF32, p, idx)
	} else {
		v := k.loadVec(tF32, vw, p, idx)
		for e := range out {
			out[e] = k.b.NewExtractElement(v, ci32(int64(e)))
		}
	}
	if ok != nil {
		for e := range out {
			out[e] = k.b.NewSelect(ok, out[e], cf(0))
		}
	}
	return out
}

// storeVecIf stores vals as one vector at element idx of p when ok holds.
func (k *kb) storeVecIf(ok value.Value, vals []value.Value, p, idx value.Value) {
	if len(vals) == 1 {
		k.storeIf(ok, vals[0], p, idx)
		return
	}
	st := func() {
		v := k.pack(vals)
		pt := p.Type().(*types.PointerType)
		vp := types.NewPointer(v.Type())
		vp.AddrSpace = pt.AddrSpace
		s := k.b.NewStore(v, k.b.NewBitCast(k.gep(tF32, p, idx), vp))
		s.Align = alignOf(v.Type())
	}
	if ok == nil {
		st()
		return
	}
	k.ifThen(ok, st)
}

func (k *kb) pack(vals []value.Value) value.Value {
	if len(vals) == 1 {
		return vals[0]
	}
	var v value.Value = constant.NewUndef(vecT(len(vals), tF32))
	for e, x := range vals {
		v = k.b.NewInsertElement(v, x, ci32(int64(e)))
	}
	return v
}

func (k *kb) storeIf(ok, v, p, idx value.Value) {
	if ok == nil {
		k.store(v, p, idx)
		return
	}
	k.ifThen(ok, func() { k.store(v, p, idx) })
}

// ---------------------------------------------------------------------------

// Embed gathers rows of the table and scales them.
// Params: out f32[R×H], table [V×H], tokens i32[R], scalars. Grid: R blocks.
type Embed struct {
	R, H, V int
	TType   gir.DType
	Scale   float64
}

func (s Embed) Name() string {
	return fmt.Sprintf("embed_r%d_h%d_v%d_%v_s%s", s.R, s.H, s.V, s.TType, fname(s.Scale))
}
func (s Embed) Params() []string { return []string{"out", "table", "tokens", "scalars"} }
func (s Embed) Launch() Launch   { return launch1(s.R, rowThreads(s.H)) }
func (s Embed) Validate() error {
	if s.TType != gir.F32 && s.TType != gir.BF16 {
		return fmt.Errorf("table dtype %v (want f32 or bf16)", s.TType)
	}
	return positive("R, H and V", s.R, s.H, s.V)
}
func (s Embed) emit(k *kb) {
	out, table, toks := k.param(0, tF32), k.param(1, elemType(s.TType)), k.param(2, tI32)
	_, nvalid := k.scalars(3)
	r := k.bidx()
	k.returnIf(k.sge(r, nvalid))
	id := k.b.NewSExt(k.load(tI32, toks, r), tI64)
	src := k.mulc(id, int64(s.H))
	dst := k.mulc(r, int64(s.H))
	nt := rowThreads(s.H)
	k.forRange(k.tid(), ci64(int64(s.H)), int64(nt), func(i value.Value) {
		v := k.loadAs(s.TType, table, k.add(src, i))
		k.store(k.fmulc(v, s.Scale), out, k.add(dst, i))
	})
}

// ---------------------------------------------------------------------------

// RMSNorm is out = x · rsqrt(mean(x²)+eps) · w per row, one block per row.
// Params: out, x, w f32[H], scalars.
type RMSNorm struct {
	R, H int
	Eps  float64
}

func (s RMSNorm) Name() string {
	return fmt.Sprintf("rmsnorm_r%d_h%d_eps%s", s.R, s.H, fname(s.Eps))
}
func (s RMSNorm) Params() []string { return []string{"out", "x", "w", "scalars"} }
func (s RMSNorm) Launch() Launch   { return launch1(s.R, newNormRow(s.H).nt) }
func (s RMSNorm) Validate() error  { return positive("R and H", s.R, s.H) }
func (s RMSNorm) emit(k *kb) {
	out, x, w := k.param(0, tF32), k.param(1, tF32), k.param(2, tF32)
	_, nvalid := k.scalars(3)
	lay := newNormRow(s.H)
	buf := k.shared(32)
	r := k.bidx()
	k.returnIf(k.sge(r, nvalid))
	base := k.mulc(r, int64(s.H))
	xs, vi, ok := k.rowVecs(x, base, lay)
	wv := make([][]value.Value, len(xs))
	var ss value.Value = cf(0)
	for j, v := range xs {
		wv[j] = k.vecAt(w, ci64(0), vi[j], lay.vw, nil)
		for _, e := range v {
			ss = k.fma(e, e, ss)
		}
	}
	inv := k.rsqrtMean(k.blockSum(ss, buf, lay.nt), s.H, s.Eps)
	for j, v := range xs {
		ys := make([]value.Value, len(v))
		for e := range v {
			ys[e] = k.fmul(k.fmul(v[e], inv), wv[j][e])
		}
		k.storeVecIf(ok[j], ys, out, k.add(base, k.mulc(vi[j], int64(lay.vw))))
	}
}

func (k *kb) rsqrtMean(ss value.Value, h int, eps float64) value.Value {
	ms := k.faddc(k.fmulc(ss, 1/float64(h)), eps)
	return k.fdiv(cf(1), k.sqrt(ms))
}

// AddRMSNorm: s = x + rmsnorm(a)·w_post; sum_out = s; norm_out = rmsnorm(s)·w_next.
// Params: sum_out (may alias x), norm_out, x, a, w_post, w_next, scalars.
type AddRMSNorm struct {
	R, H int
	Eps  float64
}

func (s AddRMSNorm) Name() string {
	return fmt.Sprintf("add_rmsnorm_r%d_h%d_eps%s", s.R, s.H, fname(s.Eps))
}
func (s AddRMSNorm) Params() []string {
	return []string{"sum_out", "norm_out", "x", "a", "w_post", "w_next", "scalars"}
}
func (s AddRMSNorm) Launch() Launch  { return launch1(s.R, newNormRow(s.H).nt) }
func (s AddRMSNorm) Validate() error { return positive("R and H", s.R, s.H) }
func (s AddRMSNorm) emit(k *kb) {
	sum, norm := k.param(0, tF32), k.param(1, tF32)
	x, a := k.param(2, tF32), k.param(3, tF32)
	wp, wn := k.param(4, tF32), k.param(5, tF32)
	_, nvalid := k.scalars(6)
	lay := newNormRow(s.H)
	buf := k.shared(32)
	r := k.bidx()
	k.returnIf(k.sge(r, nvalid))
	base := k.mulc(r, int64(s.H))
	// Every load is issued up front: one round trip, then two reductions.
	// Each thread writes only the elements it has read (x may alias sum_out).
	as, vi, ok := k.rowVecs(a, base, lay)
	xs, _, _ := k.rowVecs(x, base, lay)
	wps := make([][]value.Value, len(as))
	wns := make([][]value.Value, len(as))
	var ss value.Value = cf(0)
	for j, v := range as {
		wps[j] = k.vecAt(wp, ci64(0), vi[j], lay.vw, nil)
		wns[j] = k.vecAt(wn, ci64(0), vi[j], lay.vw, nil)
		for _, e := range v {
			ss = k.fma(e, e, ss)
		}
	}
	ia := k.rsqrtMean(k.blockSum(ss, buf, lay.nt), s.H, s.Eps)
	sv := make([][]value.Value, len(as))
	ss = cf(0)
	for j, v := range as {
		sv[j] = make([]value.Value, len(v))
		for e := range v {
			// a and x are 0 past the row, so s is too.
			sj := k.fadd(xs[j][e], k.fmul(k.fmul(v[e], ia), wps[j][e]))
			sv[j][e] = sj
			ss = k.fma(sj, sj, ss)
		}
	}
	is := k.rsqrtMean(k.blockSum(ss, buf, lay.nt), s.H, s.Eps)
	for j, v := range sv {
		idx := k.add(base, k.mulc(vi[j], int64(lay.vw)))
		k.storeVecIf(ok[j], v, sum, idx)
		ys := make([]value.Value, len(v))
		for e := range v {
			ys[e] = k.fmul(k.fmul(v[e], is), wns[j][e])
		}
		k.storeVecIf(ok[j], ys, norm, idx)
	}
}

// ---------------------------------------------------------------------------

// RoPE rotates pairs (i, i+D/2) of every head by the table's cos/sin for
// position pos+t, then scales: out[i] = (a·cos − b·sin)·scale.
// Params: out f32[R×NH×D], x, rope f32[context×D], scalars. Grid: R·NH blocks.
type RoPE struct {
	R, NH, D int
	Scale    float64
}

func (s RoPE) Name() string {
	return fmt.Sprintf("rope_r%d_nh%d_d%d_scale%s", s.R, s.NH, s.D, fname(s.Scale))
}
func (s RoPE) Params() []string { return []string{"out", "x", "rope", "scalars"} }
func (s RoPE) Launch() Launch {
	return launch1(s.R*s.NH, max(32, ceilDiv(s.D/2, 32)*32))
}
func (s RoPE) Validate() error {
	if s.D%2 != 0 {
		return fmt.Errorf("odd head dimension %d", s.D)
	}
	return positive("R, NH and D", s.R, s.NH, s.D)
}
func (s RoPE) emit(k *kb) {
	out, x, tbl := k.param(0, tF32), k.param(1, tF32), k.param(2, tF32)
	pos, nvalid := k.scalars(3)
	half := int64(s.D / 2)
	b := k.bidx()
	t := k.b.NewUDiv(b, ci64(int64(s.NH)))
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
	if s.Scale != 1 {
		ra, rb = k.fmulc(ra, s.Scale), k.fmulc(rb, s.Scale)
	}
	k.store(ra, out, ia)
	k.store(rb, out, ib)
}

// ---------------------------------------------------------------------------

// SelectRow copies row n_valid-1 of x [R×H] to out [1×H].
type SelectRow struct{ R, H int }

func (s SelectRow) Name() string     { return fmt.Sprintf("select_row_r%d_h%d", s.R, s.H) }
func (s SelectRow) Params() []string { return []string{"out", "x", "scalars"} }
func (s SelectRow) Launch() Launch   { return launch1(ceilDiv(s.H, 256), 256) }
func (s SelectRow) Validate() error  { return positive("R and H", s.R, s.H) }
func (s SelectRow) emit(k *kb) {
	out, x := k.param(0, tF32), k.param(1, tF32)
	_, nvalid := k.scalars(2)
	i := k.add(k.mulc(k.bidx(), 256), k.tid())
	k.returnIf(k.sge(i, ci64(int64(s.H))))
	row := k.smin(k.smax(k.addc(nvalid, -1), ci64(0)), ci64(int64(s.R-1)))
	k.store(k.load(tF32, x, k.add(k.mulc(row, int64(s.H)), i)), out, i)
}

// ---------------------------------------------------------------------------

// Elementwise ops over N f32.
type EwOp int

const (
	OpAdd EwOp = iota
	OpMul
	OpScale
	OpSoftcap
	OpGelu
)

var ewNames = [...]string{"add", "mul", "scale", "softcap", "gelu"}

// Elementwise: out = a op b (add, mul) or op(a) (scale, softcap, gelu).
type Elementwise struct {
	N  int
	Op EwOp
	C  float64
}

func (s Elementwise) Name() string {
	n := fmt.Sprintf("ew_%s_n%d", ewNames[s.Op], s.N)
	if s.Op == OpScale || s.Op == OpSoftcap {
		n += "_c" + fname(s.C)
	}
	return n
}
func (s Elementwise) Params() []string {
	if s.Op == OpAdd || s.Op == OpMul {
		return []string{"out", "a", "b"}
	}
	return []string{"out", "a"}
}
func (s Elementwise) Launch() Launch  { return launch1(ceilDiv(s.N, 256), 256) }
func (s Elementwise) Validate() error { return positive("N", s.N) }
func (s Elementwise) emit(k *kb) {
	out, a := k.param(0, tF32), k.param(1, tF32)
	i := k.add(k.mulc(k.bidx(), 256), k.tid())
	k.returnIf(k.sge(i, ci64(int64(s.N))))
	x := k.load(tF32, a, i)
	var y value.Value
	switch s.Op {
	case OpAdd, OpMul:
		b := k.load(tF32, k.param(2, tF32), i)
		if s.Op == OpAdd {
			y = k.fadd(x, b)
		} else {
			y = k.fmul(x, b)
		}
	case OpScale:
		y = k.fmulc(x, s.C)
	case OpSoftcap:
		y = k.softcap(x, s.C)
	case OpGelu:
		y = k.gelu(x)
	}
	k.store(y, out, i)
}

// ---------------------------------------------------------------------------

// KVStore writes the chunk's valid keys and values into their cache slots
// (slot = position mod CacheLen). Params: kcache, vcache, k, v, scalars.
type KVStore struct{ T, HKV, D, CacheLen int }

func (s KVStore) Name() string {
	return fmt.Sprintf("kv_store_t%d_hkv%d_d%d_c%d", s.T, s.HKV, s.D, s.CacheLen)
}
func (s KVStore) Params() []string { return []string{"kcache", "vcache", "k", "v", "scalars"} }
func (s KVStore) Launch() Launch   { return launch1(s.T, 256) }
func (s KVStore) Validate() error {
	return positive("T, HKV, D and CacheLen", s.T, s.HKV, s.D, s.CacheLen)
}
func (s KVStore) emit(k *kb) {
	kc, vc, kk, vv := k.param(0, tF32), k.param(1, tF32), k.param(2, tF32), k.param(3, tF32)
	pos, nvalid := k.scalars(4)
	t := k.bidx()
	k.returnIf(k.sge(t, nvalid))
	// A chunk longer than a sliding ring maps rows t and t+CacheLen to one
	// slot; blocks run in any order, so only the last of them may write.
	k.returnIf(k.slt(k.addc(t, int64(s.CacheLen)), nvalid))
	row := int64(s.HKV * s.D)
	slot := k.b.NewSRem(k.add(pos, t), ci64(int64(s.CacheLen)))
	dst, src := k.mulc(slot, row), k.mulc(t, row)
	k.forRange(k.tid(), ci64(row), 256, func(i value.Value) {
		k.store(k.load(tF32, kk, k.add(src, i)), kc, k.add(dst, i))
		k.store(k.load(tF32, vv, k.add(src, i)), vc, k.add(dst, i))
	})
}

// ---------------------------------------------------------------------------

// Attention: one block per (query, head); its warps split the keys the
// query may see and keep an online softmax each (running max, sum and
// D-wide accumulator in registers, D/32 dims per lane), then combine in
// shared memory. Keys before the chunk come from the cache (slot j mod
// CacheLen), the chunk's own from k and v: the chunk is stored afterwards.
// Params: out f32[T×HQ×D], q, k, v (chunk), kcache, vcache, scalars.
type Attention struct {
	T, HQ, HKV, D    int
	Window, CacheLen int
	Softcap, Scale   float64
}

func (s Attention) warps() int {
	if s.T == 1 {
		return 8
	}
	return 4
}

func (s Attention) Name() string {
	return fmt.Sprintf("attention_t%d_hq%d_hkv%d_d%d_w%d_c%d_cap%s_s%s",
		s.T, s.HQ, s.HKV, s.D, s.Window, s.CacheLen, fname(s.Softcap), fname(s.Scale))
}
func (s Attention) Params() []string {
	return []string{"out", "q", "k", "v", "kcache", "vcache", "scalars"}
}
func (s Attention) Launch() Launch { return launch1(s.T*s.HQ, 32*s.warps()) }
func (s Attention) Validate() error {
	if err := positive("T, HQ, HKV, D and CacheLen", s.T, s.HQ, s.HKV, s.D, s.CacheLen); err != nil {
		return err
	}
	if s.HQ%s.HKV != 0 {
		return fmt.Errorf("%d query heads do not group over %d kv heads", s.HQ, s.HKV)
	}
	return nil
}

func (s Attention) emit(k *kb) {
	out, q := k.param(0, tF32), k.param(1, tF32)
	src := keySource{k: k.param(2, tF32), v: k.param(3, tF32), kc: k.param(4, tF32), vc: k.param(5, tF32)}
	p0, nvalid := k.scalars(6)
	src.p0 = p0
	b := k.bidx()
	t := k.b.NewUDiv(b, ci64(int64(s.HQ)))
	h := k.b.NewURem(b, ci64(int64(s.HQ)))
	k.returnIf(k.sge(t, nvalid))
	src.hk = k.b.NewUDiv(h, ci64(int64(s.HQ/s.HKV)))
	i := k.add(p0, t)
	var first value.Value = ci64(0)
	if s.Window > 0 {
		first = k.smax(ci64(0), k.addc(i, int64(-s.Window+1)))
	}
	lanes := k.headLanes(s.D)
	qbase := k.mulc(b, int64(s.D)) // (t·HQ + h)·D
	qs := lanes.load(k, q, qbase)
	nw := s.warps()
	res := k.attendKeys(s, src, lanes, qs, first, k.addc(i, 1), nw)
	_, L, sum := k.mergeWarps(res, lanes, s.D, nw)
	k.forRange(k.tid(), ci64(int64(s.D)), int64(32*nw), func(d value.Value) {
		k.store(k.fdiv(sum(d), L), out, k.add(qbase, d))
	})
}

// ---------------------------------------------------------------------------

// Argmax writes the index of the largest of N logits (the lowest on ties,
// NaN ranking as -Inf) to tokens[0] and advances the position: scalars[0]++.
// It turns a decode step into a generation step whose next input is already
// in place. Params: logits f32[N], tokens, scalars. One block.
type Argmax struct{ N int }

func (s Argmax) Name() string     { return fmt.Sprintf("argmax_n%d", s.N) }
func (s Argmax) Params() []string { return []string{"logits", "tokens", "scalars"} }
func (s Argmax) Launch() Launch   { return launch1(1, 1024) }
func (s Argmax) Validate() error  { return positive("N", s.N) }
func (s Argmax) emit(k *kb) {
	logits, toks, sc := k.param(0, tF32), k.param(1, tI32), k.param(2, tI64)
	smV, smI := k.shared(32), k.shared(32)
	ninf := cf(-3.4e38)
	key := func(v value.Value) value.Value {
		isnan := k.b.NewFCmp(enum.FPredUNO, v, v)
		return k.b.NewSelect(isnan, ninf, k.fmax(v, ninf))
	}
	// better reports whether (v1, i1) beats (v2, i2).
	better := func(v1, i1, v2, i2 value.Value) value.Value {
		gt := k.b.NewFCmp(enum.FPredOGT, v1, v2)
		eq := k.b.NewFCmp(enum.FPredOEQ, v1, v2)
		lt := k.b.NewICmp(enum.IPredSLT, i1, i2)
		return k.b.NewOr(gt, k.b.NewAnd(eq, lt))
	}
	tid := k.tid()
	res := k.loop(tid, ci64(int64(s.N)), 1024, []value.Value{ninf, ci32(int64(s.N))}, func(i value.Value, c []value.Value) []value.Value {
		v := key(k.load(tF32, logits, i))
		i32 := k.b.NewTrunc(i, tI32)
		bt := better(v, i32, c[0], c[1])
		return []value.Value{k.b.NewSelect(bt, v, c[0]), k.b.NewSelect(bt, i32, c[1])}
	})
	v, idx := res[0], res[1]
	reduce := func() {
		for m := int64(16); m >= 1; m /= 2 {
			ov, oi := k.shflXor(v, m), k.shflXor(idx, m)
			bt := better(ov, oi, v, idx)
			v, idx = k.b.NewSelect(bt, ov, v), k.b.NewSelect(bt, oi, idx)
		}
	}
	reduce()
	lane, warp := k.lane(), k.warpI()
	smIp := k.b.NewBitCast(smI, sptr(tI32))
	k.ifThen(k.b.NewICmp(enum.IPredEQ, lane, ci64(0)), func() {
		k.store(v, smV, warp)
		k.store(idx, smIp, warp)
	})
	k.barrier()
	k.returnIf(k.b.NewICmp(enum.IPredNE, warp, ci64(0)))
	v, idx = k.load(tF32, smV, lane), k.load(tI32, smIp, lane)
	reduce()
	k.ifThen(k.b.NewICmp(enum.IPredEQ, lane, ci64(0)), func() {
		k.store(k.smin(idx, ci32(int64(s.N-1))), toks, ci64(0))
		k.store(k.addc(k.load(tI64, sc, ci64(0)), 1), sc, ci64(0))
	})
}
