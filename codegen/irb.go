package codegen

// A thin helper layer over llir/llvm: counted loops with phi nodes, vector
// loads that widen bf16/f16 in registers, fma, horizontal reductions and a few
// math functions (exp, tanh, gelu) that work on scalars and vectors alike.
//
// Kernel bodies only see a *gen: the function being built, the current block,
// and [lo, hi) as values. A CPU kernel gets lo/hi from its parameters; a GPU
// renderer can build the same body with lo/hi derived from thread indices.

import (
	"fmt"
	"math"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

var (
	tI1   = types.I1
	tI8   = types.I8
	tI16  = types.I16
	tI32  = types.I32
	tI64  = types.I64
	tF32  = types.Float
	tF16  = types.Half
	tVoid = types.Void
	tI8P  = types.NewPointer(types.I8)
	tI8PP = types.NewPointer(tI8P)
)

func vecT(n int, elem types.Type) *types.VectorType { return types.NewVector(uint64(n), elem) }
func ptrT(elem types.Type) *types.PointerType       { return types.NewPointer(elem) }

// gen builds one kernel function.
type gen struct {
	m      *Module
	t      Target
	f      *ir.Func
	b      *ir.Block // current insertion block
	nblock int

	args   value.Value // i8**
	lo, hi value.Value // i64
}

// L is the number of f32 lanes of a vector on the target.
func (g *gen) L() int { return g.t.Lanes }

// vf is <L x float>.
func (g *gen) vf() types.Type { return vecT(g.L(), tF32) }

func (g *gen) block(name string) *ir.Block {
	g.nblock++
	return g.f.NewBlock(fmt.Sprintf("%s%d", name, g.nblock))
}

// ---- constants ----

func ci64(v int64) *constant.Int { return constant.NewInt(tI64, v) }
func ci32(v int64) *constant.Int { return constant.NewInt(tI32, v) }

// cf returns v as a constant of type t (float or vector of float, splatted).
func cf(t types.Type, v float64) constant.Constant {
	if vt, ok := t.(*types.VectorType); ok {
		e := cf(vt.ElemType, v)
		elems := make([]constant.Constant, vt.Len)
		for i := range elems {
			elems[i] = e
		}
		return constant.NewVector(vt, elems...)
	}
	if it, ok := t.(*types.IntType); ok {
		return constant.NewInt(it, int64(v))
	}
	return constant.NewFloat(t.(*types.FloatType), float64(float32(v)))
}

// ci returns an integer constant of type t (int or vector of int, splatted).
func ci(t types.Type, v int64) constant.Constant {
	if vt, ok := t.(*types.VectorType); ok {
		e := ci(vt.ElemType, v)
		elems := make([]constant.Constant, vt.Len)
		for i := range elems {
			elems[i] = e
		}
		return constant.NewVector(vt, elems...)
	}
	return constant.NewInt(t.(*types.IntType), v)
}

// maskConst is a constant <n x i1> with the first k lanes set.
func maskConst(n, k int) constant.Constant {
	elems := make([]constant.Constant, n)
	for i := range elems {
		elems[i] = constant.NewBool(i < k)
	}
	return constant.NewVector(vecT(n, tI1), elems...)
}

// maskBelow is an <n x i1> with lanes i < k set (k an i64 known only at
// run time; k ≤ 0 sets none, k ≥ n all).
func (g *gen) maskBelow(n int, k value.Value) value.Value {
	return g.slt(laneIndices(n), g.splat(k, n))
}

// maskFrom is the mask of lanes i ≥ k of n.
func (g *gen) maskFrom(n int, k value.Value) value.Value {
	return g.slt(g.splat(g.addc(k, -1), n), laneIndices(n))
}

// laneIndices is the i64 vector 0, 1, …, n−1.
func laneIndices(n int) *constant.Vector {
	lanes := make([]constant.Constant, n)
	for i := range lanes {
		lanes[i] = ci64(int64(i))
	}
	return constant.NewVector(vecT(n, tI64), lanes...)
}

// ---- integer arithmetic (i64) ----

func (g *gen) add(x, y value.Value) value.Value { return g.b.NewAdd(x, y) }
func (g *gen) sub(x, y value.Value) value.Value { return g.b.NewSub(x, y) }
func (g *gen) mul(x, y value.Value) value.Value { return g.b.NewMul(x, y) }
func (g *gen) addc(x value.Value, c int64) value.Value {
	if c == 0 {
		return x
	}
	return g.b.NewAdd(x, ci64(c))
}
func (g *gen) mulc(x value.Value, c int64) value.Value {
	if c == 1 {
		return x
	}
	return g.b.NewMul(x, ci64(c))
}
func (g *gen) slt(x, y value.Value) value.Value { return g.b.NewICmp(enum.IPredSLT, x, y) }
func (g *gen) smin(x, y value.Value) value.Value {
	return g.b.NewSelect(g.b.NewICmp(enum.IPredSLT, x, y), x, y)
}
func (g *gen) smax(x, y value.Value) value.Value {
	return g.b.NewSelect(g.b.NewICmp(enum.IPredSGT, x, y), x, y)
}

// ---- float arithmetic (scalars or vectors) ----

func (g *gen) fadd(x, y value.Value) value.Value { return g.b.NewFAdd(x, y) }
func (g *gen) fsub(x, y value.Value) value.Value { return g.b.NewFSub(x, y) }
func (g *gen) fmul(x, y value.Value) value.Value { return g.b.NewFMul(x, y) }
func (g *gen) fdiv(x, y value.Value) value.Value { return g.b.NewFDiv(x, y) }

// fmulc multiplies by a constant (splatted for vectors).
func (g *gen) fmulc(x value.Value, c float64) value.Value { return g.b.NewFMul(x, cf(x.Type(), c)) }
func (g *gen) faddc(x value.Value, c float64) value.Value { return g.b.NewFAdd(x, cf(x.Type(), c)) }

// fma returns a·b + c with one rounding (llvm.fma).
func (g *gen) fma(a, b, c value.Value) value.Value {
	t := a.Type()
	return g.b.NewCall(g.m.intrinsic("llvm.fma."+tsuffix(t), t, t, t, t), a, b, c)
}

func (g *gen) unary(name string, x value.Value) value.Value {
	t := x.Type()
	return g.b.NewCall(g.m.intrinsic("llvm."+name+"."+tsuffix(t), t, t), x)
}

func (g *gen) binary(name string, x, y value.Value) value.Value {
	t := x.Type()
	return g.b.NewCall(g.m.intrinsic("llvm."+name+"."+tsuffix(t), t, t, t), x, y)
}

func (g *gen) fabs(x value.Value) value.Value  { return g.unary("fabs", x) }
func (g *gen) sqrt(x value.Value) value.Value  { return g.unary("sqrt", x) }
func (g *gen) floor(x value.Value) value.Value { return g.unary("floor", x) }
func (g *gen) fmax(x, y value.Value) value.Value {
	return g.b.NewSelect(g.b.NewFCmp(enum.FPredOGT, x, y), x, y)
}
func (g *gen) fmin(x, y value.Value) value.Value {
	return g.b.NewSelect(g.b.NewFCmp(enum.FPredOLT, x, y), x, y)
}
func (g *gen) copysign(mag, sgn value.Value) value.Value { return g.binary("copysign", mag, sgn) }

// splat broadcasts a scalar to a vector of n lanes.
func (g *gen) splat(x value.Value, n int) value.Value {
	if c, ok := x.(constant.Constant); ok {
		elems := make([]constant.Constant, n)
		for i := range elems {
			elems[i] = c
		}
		return constant.NewVector(vecT(n, x.Type()), elems...)
	}
	vt := vecT(n, x.Type())
	v := g.b.NewInsertElement(constant.NewUndef(vt), x, ci32(0))
	return g.b.NewShuffleVector(v, constant.NewUndef(vt), constant.NewZeroInitializer(vecT(n, tI32)))
}

// reduce sums the lanes of a float vector (reassociation allowed).
func (g *gen) reduce(v value.Value) value.Value {
	vt := v.Type().(*types.VectorType)
	fn := g.m.intrinsic("llvm.vector.reduce.fadd."+tsuffix(vt), vt.ElemType, vt.ElemType, vt)
	c := g.b.NewCall(fn, cf(tF32, math.Copysign(0, -1)), v) // -0.0 is the identity
	c.FastMathFlags = []enum.FastMathFlag{enum.FastMathFlagReassoc}
	return c
}

// sum adds values pairwise (tree), all of the same type.
func (g *gen) sum(vs []value.Value) value.Value {
	for len(vs) > 1 {
		var next []value.Value
		for i := 0; i+1 < len(vs); i += 2 {
			next = append(next, g.fadd(vs[i], vs[i+1]))
		}
		if len(vs)%2 == 1 {
			next = append(next, vs[len(vs)-1])
		}
		vs = next
	}
	return vs[0]
}

// ---- memory ----

// argPtr loads args[i] and casts it to elem*.
func (g *gen) argPtr(i int, elem types.Type) value.Value {
	p := g.b.NewGetElementPtr(tI8P, g.args, ci64(int64(i)))
	raw := g.b.NewLoad(tI8P, p)
	raw.Align = 8
	return g.b.NewBitCast(raw, ptrT(elem))
}

// scalars loads {pos, n_valid} from the scalar block args[i].
func (g *gen) scalars(i int) (pos, nvalid value.Value) {
	p := g.argPtr(i, tI64)
	pos = g.load(tI64, p, ci64(0))
	nvalid = g.load(tI64, p, ci64(1))
	return
}

// gep returns &p[idx] for p of type elem*.
func (g *gen) gep(elem types.Type, p, idx value.Value) value.Value {
	return g.b.NewGetElementPtr(elem, p, idx)
}

func alignOf(t types.Type) ir.Align {
	switch t {
	case tI64:
		return 8
	case tF32, tI32:
		return 4
	case tI16, tF16:
		return 2
	}
	return 1
}

// load returns p[idx] for p of type elem*.
func (g *gen) load(elem types.Type, p, idx value.Value) value.Value {
	l := g.b.NewLoad(elem, g.gep(elem, p, idx))
	l.Align = alignOf(elem)
	return l
}

// store writes v to p[idx].
func (g *gen) store(v, p, idx value.Value) {
	elem := v.Type()
	s := g.b.NewStore(v, g.gep(elem, p, idx))
	s.Align = alignOf(elem)
}

// elemType is the in-memory element type of a dtype (bf16 as raw i16).
func elemType(dt gir.DType) types.Type {
	switch dt {
	case gir.BF16:
		return tI16
	case gir.F16:
		return tF16
	case gir.I32:
		return tI32
	}
	return tF32
}

// srcElemType is the element type of a weight argument stored as dt:
// quantised blocks are addressed in bytes.
func srcElemType(dt gir.DType) types.Type {
	if dt.IsQuantized() {
		return tI8
	}
	return elemType(dt)
}

// loadVecRaw loads n elements of type elem from p[idx...] (masked if mask != nil;
// masked-off lanes read as zero and are never touched in memory).
func (g *gen) loadVecRaw(elem types.Type, n int, p, idx, mask value.Value) value.Value {
	vt := vecT(n, elem)
	vp := g.b.NewBitCast(g.gep(elem, p, idx), ptrT(vt))
	if mask == nil {
		l := g.b.NewLoad(vt, vp)
		l.Align = alignOf(elem)
		return l
	}
	fn := g.m.intrinsic(fmt.Sprintf("llvm.masked.load.%s.p0%s", tsuffix(vt), tsuffix(vt)), vt, ptrT(vt), tI32, vecT(n, tI1), vt)
	return g.b.NewCall(fn, vp, ci32(int64(alignOf(elem))), mask, constant.NewZeroInitializer(vt))
}

// widen converts a vector of dtype dt (as loaded) to f32 lanes, in registers.
func (g *gen) widen(v value.Value, dt gir.DType) value.Value {
	n := int(v.Type().(*types.VectorType).Len)
	switch dt {
	case gir.BF16:
		z := g.b.NewZExt(v, vecT(n, tI32))
		s := g.b.NewShl(z, ci(vecT(n, tI32), 16))
		return g.b.NewBitCast(s, vecT(n, tF32))
	case gir.F16:
		if !g.t.nativeF16() {
			return g.halfBits(g.b.NewBitCast(v, vecT(n, tI16)))
		}
		return g.b.NewFPExt(v, vecT(n, tF32))
	}
	return v
}

// halfBits widens IEEE half bits (i16 or vector of i16) to f32 with integer
// ops, for targets without a half conversion instruction: the exponent and
// mantissa shifted into place and scaled by 2^112 (exact for normals and
// subnormals), Inf/NaN patched, the sign or-ed back.
func (g *gen) halfBits(h value.Value) value.Value {
	it, ft := types.Type(tI32), types.Type(tF32)
	if vt, ok := h.Type().(*types.VectorType); ok {
		it, ft = vecT(int(vt.Len), tI32), vecT(int(vt.Len), tF32)
	}
	z := g.b.NewZExt(h, it)
	sign := g.b.NewShl(g.b.NewAnd(z, ci(it, 0x8000)), ci(it, 16))
	em := g.b.NewAnd(z, ci(it, 0x7fff))
	sh := g.b.NewShl(em, ci(it, 13))
	fin := g.b.NewBitCast(g.fmul(g.b.NewBitCast(sh, ft), cf(ft, 0x1p112)), it)
	inf := g.b.NewOr(sh, ci(it, 0x7f800000))
	bits := g.b.NewSelect(g.b.NewICmp(enum.IPredUGE, em, ci(it, 0x7c00)), inf, fin)
	return g.b.NewBitCast(g.b.NewOr(bits, sign), ft)
}

// loadVec loads n elements of dtype dt at p[idx] and widens them to f32.
func (g *gen) loadVec(dt gir.DType, n int, p, idx, mask value.Value) value.Value {
	return g.widen(g.loadVecRaw(elemType(dt), n, p, idx, mask), dt)
}

// loadScalar loads p[idx] of dtype dt as f32.
func (g *gen) loadScalar(dt gir.DType, p, idx value.Value) value.Value {
	v := g.load(elemType(dt), p, idx)
	switch dt {
	case gir.BF16:
		z := g.b.NewZExt(v, tI32)
		return g.b.NewBitCast(g.b.NewShl(z, ci32(16)), tF32)
	case gir.F16:
		if !g.t.nativeF16() {
			return g.halfBits(g.b.NewBitCast(v, tI16))
		}
		return g.b.NewFPExt(v, tF32)
	}
	return v
}

// storeVec stores a float vector to p[idx] (p is float*), masked if mask != nil.
func (g *gen) storeVec(v, p, idx, mask value.Value) { g.storeVecRaw(tF32, v, p, idx, mask) }

// storeVecRaw stores the vector v (of elem) at p[idx], p an elem*, masked
// if mask != nil: loadVecRaw's counterpart.
func (g *gen) storeVecRaw(elem types.Type, v, p, idx, mask value.Value) {
	vt := v.Type().(*types.VectorType)
	vp := g.b.NewBitCast(g.gep(elem, p, idx), ptrT(vt))
	if mask == nil {
		s := g.b.NewStore(v, vp)
		s.Align = alignOf(elem)
		return
	}
	fn := g.m.intrinsic(fmt.Sprintf("llvm.masked.store.%s.p0%s", tsuffix(vt), tsuffix(vt)), tVoid, vt, ptrT(vt), tI32, vecT(int(vt.Len), tI1))
	g.b.NewCall(fn, v, vp, ci32(int64(alignOf(elem))), mask)
}

// ---- control flow ----

// loop emits `for i := from; i < to; i += step { carry = body(i, carry) }` and
// returns the final i and carried values. body may create blocks; it must
// return values of the same types as init.
func (g *gen) loop(from, to value.Value, step int64, init []value.Value,
	body func(i value.Value, carry []value.Value) []value.Value) (value.Value, []value.Value) {
	pre := g.b
	hdr, bodyB, exit := g.block("loop"), g.block("body"), g.block("exit")
	pre.NewBr(hdr)
	g.b = hdr
	iphi := hdr.NewPhi(ir.NewIncoming(from, pre))
	phis := make([]*ir.InstPhi, len(init))
	carry := make([]value.Value, len(init))
	for k, v := range init {
		phis[k] = hdr.NewPhi(ir.NewIncoming(v, pre))
		carry[k] = phis[k]
	}
	hdr.NewCondBr(hdr.NewICmp(enum.IPredSLT, iphi, to), bodyB, exit)
	g.b = bodyB
	next := body(iphi, carry)
	inext := g.addc(iphi, step)
	latch := g.b
	latch.NewBr(hdr)
	iphi.Incs = append(iphi.Incs, ir.NewIncoming(inext, latch))
	for k := range phis {
		phis[k].Incs = append(phis[k].Incs, ir.NewIncoming(next[k], latch))
	}
	g.b = exit
	return iphi, carry
}

// forRange is loop without carried values.
func (g *gen) forRange(from, to value.Value, step int64, body func(i value.Value)) value.Value {
	i, _ := g.loop(from, to, step, nil, func(i value.Value, _ []value.Value) []value.Value {
		body(i)
		return nil
	})
	return i
}

// ifThen emits `if cond { then() }`.
func (g *gen) ifThen(cond value.Value, then func()) {
	thenB, join := g.block("then"), g.block("join")
	g.b.NewCondBr(cond, thenB, join)
	g.b = thenB
	then()
	g.b.NewBr(join)
	g.b = join
}

// ifThenValues emits `if cond { vals = then() } else { vals = otherwise }`
// and returns vals.
func (g *gen) ifThenValues(cond value.Value, then func() []value.Value, otherwise []value.Value) []value.Value {
	return CondValues(&g.b, g.block, cond, then, otherwise)
}

// CondValues emits, at the end of *cur, a branch on cond to a block where
// then builds values, and returns them joined (phis) with otherwise (values
// available before the branch) for the path that skipped it; *cur is then
// the join block. newBlock names and appends blocks. It serves every IR
// builder of gemmac (the CPU kernels' and the PTX kernels').
func CondValues(cur **ir.Block, newBlock func(name string) *ir.Block, cond value.Value, then func() []value.Value, otherwise []value.Value) []value.Value {
	pre := *cur
	thenB, join := newBlock("then"), newBlock("join")
	pre.NewCondBr(cond, thenB, join)
	*cur = thenB
	vals := then()
	end := *cur
	end.NewBr(join)
	*cur = join
	out := make([]value.Value, len(vals))
	for i := range vals {
		out[i] = join.NewPhi(ir.NewIncoming(vals[i], end), ir.NewIncoming(otherwise[i], pre))
	}
	return out
}

// ifElse emits `if cond { then() } else { els() }`.
func (g *gen) ifElse(cond value.Value, then, els func()) {
	thenB, elseB, join := g.block("then"), g.block("else"), g.block("join")
	g.b.NewCondBr(cond, thenB, elseB)
	g.b = thenB
	then()
	g.b.NewBr(join)
	g.b = elseB
	els()
	g.b.NewBr(join)
	g.b = join
}

// shuffleMask is the n-lane shufflevector mask whose lane i takes lane
// from(i) of the operands.
func shuffleMask(n int, from func(i int) int) *constant.Vector {
	m := make([]constant.Constant, n)
	for i := range m {
		m[i] = ci32(int64(from(i)))
	}
	return constant.NewVector(vecT(n, tI32), m...)
}

// stack allocates n elements of elem on the stack, aligned for any vector
// (call it in the entry block: an alloca elsewhere grows the stack on
// every pass).
func (g *gen) stack(elem types.Type, n int) value.Value {
	a := g.b.NewAlloca(elem)
	a.NElems = ci64(int64(n))
	a.Align = 64
	return a
}

// vecLoop walks n (compile-time) f32 elements in vectors of L lanes: full
// vectors in a loop, then one masked vector for the remainder. body gets the
// element offset and the mask (nil for full vectors).
func (g *gen) vecLoop(n int, init []value.Value,
	body func(off, mask value.Value, carry []value.Value) []value.Value) []value.Value {
	L := g.L()
	full := n / L * L
	carry := init
	if full > 0 {
		if full == L {
			carry = body(ci64(0), nil, carry)
		} else {
			_, carry = g.loop(ci64(0), ci64(int64(full)), int64(L), carry, func(i value.Value, c []value.Value) []value.Value {
				return body(i, nil, c)
			})
		}
	}
	if n%L != 0 {
		carry = body(ci64(int64(full)), maskConst(L, n%L), carry)
	}
	return carry
}

// ---- math ----

// exp computes e^x for f32 scalars or vectors (Cephes expf: Cody-Waite range
// reduction, degree-6 polynomial, 2^n built in the exponent bits; ~2 ulp).
// Inputs are clamped to [-87.3, 88.3].
func (g *gen) exp(x value.Value) value.Value {
	t := x.Type()
	x = g.fmin(g.fmax(x, cf(t, -87.3)), cf(t, 88.3))
	fx := g.floor(g.fma(x, cf(t, math.Log2E), cf(t, 0.5)))
	r := g.fma(fx, cf(t, -0.693359375), x)
	r = g.fma(fx, cf(t, 2.12194440e-4), r)
	var y value.Value = cf(t, 1.9875691500e-4)
	for _, c := range []float64{1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1} {
		y = g.fma(y, r, cf(t, c))
	}
	y = g.fma(y, g.fmul(r, r), g.faddc(r, 1))
	it := types.Type(tI32)
	if vt, ok := t.(*types.VectorType); ok {
		it = vecT(int(vt.Len), tI32)
	}
	n := g.b.NewFPToSI(fx, it)
	e := g.b.NewShl(g.b.NewAdd(n, ci(it, 127)), ci(it, 23))
	return g.fmul(y, g.b.NewBitCast(e, t))
}

// tanh computes tanh(x): an odd Taylor polynomial for |x| < 0.3 and
// sign(x)·(1 − 2/(e^{2|x|}+1)) otherwise (relative error ~1e-7).
func (g *gen) tanh(x value.Value) value.Value {
	t := x.Type()
	ax := g.fabs(x)
	e := g.exp(g.fmulc(ax, 2))
	big := g.fsub(cf(t, 1), g.fdiv(cf(t, 2), g.faddc(e, 1)))
	big = g.copysign(big, x)
	x2 := g.fmul(x, x)
	var p value.Value = cf(t, -1382.0/155925.0)
	for _, c := range []float64{62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0} {
		p = g.fma(p, x2, cf(t, c))
	}
	small := g.fma(g.fmul(p, x2), x, x)
	return g.b.NewSelect(g.b.NewFCmp(enum.FPredOLT, ax, cf(t, 0.3)), small, big)
}

// softcap computes c·tanh(x/c).
func (g *gen) softcap(x value.Value, c float64) value.Value {
	return g.fmulc(g.tanh(g.fmulc(x, 1/c)), c)
}

// gelu computes the tanh approximation of GELU as x·sigmoid(2u),
// u = √(2/π)(x + 0.044715x³), which equals 0.5x(1+tanh(u)) without the
// cancellation for negative x.
func (g *gen) gelu(x value.Value) value.Value {
	x2 := g.fmul(x, x)
	inner := g.fma(g.fmulc(x2, 0.044715), x, x) // x + 0.044715x³
	m2u := g.fmulc(inner, -2*0.7978845608028654)
	return g.fdiv(x, g.faddc(g.exp(m2u), 1))
}

// tsuffix is the overload suffix of an intrinsic for type t.
func tsuffix(t types.Type) string {
	switch t := t.(type) {
	case *types.VectorType:
		return fmt.Sprintf("v%d%s", t.Len, tsuffix(t.ElemType))
	case *types.FloatType:
		switch t.Kind {
		case types.FloatKindFloat:
			return "f32"
		case types.FloatKindHalf:
			return "f16"
		case types.FloatKindDouble:
			return "f64"
		}
	case *types.IntType:
		return fmt.Sprintf("i%d", t.BitSize)
	}
	panic(fmt.Sprintf("codegen: no intrinsic suffix for %v", t))
}

// loadF loads one f32 vector (L lanes) at p[idx].
func (g *gen) loadF(p, idx, mask value.Value) value.Value {
	return g.loadVecRaw(tF32, g.L(), p, idx, mask)
}
