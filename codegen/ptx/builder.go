package ptx

// A small kernel builder over llir/llvm for the nvptx64 target: counted
// loops with phi nodes, thread and block indices, shared memory, barriers,
// warp shuffles, bf16 widening and the f32 math (exp, tanh, gelu) the
// kernels need, written so they lower to plain PTX without libdevice.

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
	tI16  = types.I16
	tI32  = types.I32
	tI64  = types.I64
	tF32  = types.Float
	tVoid = types.Void
)

// gptr is a pointer into global memory (address space 1).
func gptr(elem types.Type) *types.PointerType {
	p := types.NewPointer(elem)
	p.AddrSpace = 1
	return p
}

// sptr is a pointer into shared memory (address space 3).
func sptr(elem types.Type) *types.PointerType {
	p := types.NewPointer(elem)
	p.AddrSpace = 3
	return p
}

func vecT(n int, elem types.Type) *types.VectorType { return types.NewVector(uint64(n), elem) }

func ci64(v int64) *constant.Int { return constant.NewInt(tI64, v) }
func ci32(v int64) *constant.Int { return constant.NewInt(tI32, v) }
func cf(v float64) constant.Constant {
	return constant.NewFloat(tF32, float64(float32(v)))
}

// kb builds one kernel.
type kb struct {
	m      *Module
	f      *ir.Func
	b      *ir.Block
	nblock int
	params []*ir.Param
	exit   *ir.Block
}

func (k *kb) block(name string) *ir.Block {
	k.nblock++
	return k.f.NewBlock(fmt.Sprintf("%s%d", name, k.nblock))
}

// param returns kernel parameter i as a global pointer to elem.
func (k *kb) param(i int, elem types.Type) value.Value {
	return k.b.NewBitCast(k.params[i], gptr(elem))
}

// scalars loads {pos, n_valid} (i64) from parameter i.
func (k *kb) scalars(i int) (pos, nvalid value.Value) {
	p := k.param(i, tI64)
	return k.load(tI64, p, ci64(0)), k.load(tI64, p, ci64(1))
}

// ---- special registers ----

func (k *kb) sreg(name string) value.Value {
	f := k.m.intrinsic("llvm.nvvm.read.ptx.sreg."+name, tI32)
	return k.b.NewZExt(k.b.NewCall(f), tI64)
}
func (k *kb) tid() value.Value   { return k.sreg("tid.x") }
func (k *kb) bidx() value.Value  { return k.sreg("ctaid.x") }
func (k *kb) bidy() value.Value  { return k.sreg("ctaid.y") }
func (k *kb) barrier()           { k.b.NewCall(k.m.intrinsic("llvm.nvvm.barrier0", tVoid)) }
func (k *kb) lane() value.Value  { return k.b.NewAnd(k.tid(), ci64(31)) }
func (k *kb) warpI() value.Value { return k.b.NewLShr(k.tid(), ci64(5)) }

// asm emits a PTX statement with side effects that orders memory.
func (k *kb) asm(text string) {
	a := ir.NewInlineAsm(types.NewPointer(types.NewFunc(tVoid)), text, "~{memory}")
	a.SideEffect = true
	k.b.NewCall(a)
}

// ---- integer arithmetic (i64) ----

func (k *kb) add(x, y value.Value) value.Value { return k.b.NewAdd(x, y) }
func (k *kb) sub(x, y value.Value) value.Value { return k.b.NewSub(x, y) }
func (k *kb) mul(x, y value.Value) value.Value { return k.b.NewMul(x, y) }
func (k *kb) addc(x value.Value, c int64) value.Value {
	if c == 0 {
		return x
	}
	return k.b.NewAdd(x, ci64(c))
}
func (k *kb) mulc(x value.Value, c int64) value.Value {
	if c == 1 {
		return x
	}
	return k.b.NewMul(x, ci64(c))
}
func (k *kb) slt(x, y value.Value) value.Value { return k.b.NewICmp(enum.IPredSLT, x, y) }
func (k *kb) sge(x, y value.Value) value.Value { return k.b.NewICmp(enum.IPredSGE, x, y) }
func (k *kb) smin(x, y value.Value) value.Value {
	return k.b.NewSelect(k.b.NewICmp(enum.IPredSLT, x, y), x, y)
}
func (k *kb) smax(x, y value.Value) value.Value {
	return k.b.NewSelect(k.b.NewICmp(enum.IPredSGT, x, y), x, y)
}

// ---- float arithmetic (f32 scalars) ----

func (k *kb) fadd(x, y value.Value) value.Value { return k.b.NewFAdd(x, y) }
func (k *kb) fsub(x, y value.Value) value.Value { return k.b.NewFSub(x, y) }
func (k *kb) fmul(x, y value.Value) value.Value { return k.b.NewFMul(x, y) }
func (k *kb) fdiv(x, y value.Value) value.Value { return k.b.NewFDiv(x, y) }
func (k *kb) fmulc(x value.Value, c float64) value.Value {
	return k.b.NewFMul(x, cf(c))
}
func (k *kb) faddc(x value.Value, c float64) value.Value { return k.b.NewFAdd(x, cf(c)) }
func (k *kb) fma(a, b, c value.Value) value.Value {
	return k.b.NewCall(k.m.intrinsic("llvm.fma.f32", tF32, tF32, tF32, tF32), a, b, c)
}
func (k *kb) unary(name string, x value.Value) value.Value {
	return k.b.NewCall(k.m.intrinsic("llvm."+name+".f32", tF32, tF32), x)
}
func (k *kb) fabs(x value.Value) value.Value  { return k.unary("fabs", x) }
func (k *kb) sqrt(x value.Value) value.Value  { return k.unary("sqrt", x) }
func (k *kb) floor(x value.Value) value.Value { return k.unary("floor", x) }
func (k *kb) fmax(x, y value.Value) value.Value {
	return k.b.NewSelect(k.b.NewFCmp(enum.FPredOGT, x, y), x, y)
}
func (k *kb) fmin(x, y value.Value) value.Value {
	return k.b.NewSelect(k.b.NewFCmp(enum.FPredOLT, x, y), x, y)
}
func (k *kb) copysign(mag, sgn value.Value) value.Value {
	return k.b.NewCall(k.m.intrinsic("llvm.copysign.f32", tF32, tF32, tF32), mag, sgn)
}

// ---- memory ----

func (k *kb) gep(elem types.Type, p, idx value.Value) value.Value {
	return k.b.NewGetElementPtr(elem, p, idx)
}

func alignOf(t types.Type) ir.Align {
	switch t {
	case tI64:
		return 8
	case tF32, tI32:
		return 4
	case tI16:
		return 2
	}
	if vt, ok := t.(*types.VectorType); ok {
		return alignOf(vt.ElemType) * ir.Align(vt.Len)
	}
	return 1
}

// load returns p[idx] for p of type elem addrspace(n)*.
func (k *kb) load(elem types.Type, p, idx value.Value) value.Value {
	l := k.b.NewLoad(elem, k.gep(elem, p, idx))
	l.Align = alignOf(elem)
	return l
}

// loadVec loads n elements of elem at p[idx], aligned to the vector size.
func (k *kb) loadVec(elem types.Type, n int, p, idx value.Value) value.Value {
	vt := vecT(n, elem)
	pt := p.Type().(*types.PointerType)
	vp := types.NewPointer(vt)
	vp.AddrSpace = pt.AddrSpace
	l := k.b.NewLoad(vt, k.b.NewBitCast(k.gep(elem, p, idx), vp))
	l.Align = alignOf(vt)
	return l
}

func (k *kb) store(v, p, idx value.Value) {
	s := k.b.NewStore(v, k.gep(v.Type(), p, idx))
	s.Align = alignOf(v.Type())
}

// loadAs loads p[idx] of dtype dt (p of its element type) as f32.
func (k *kb) loadAs(dt gir.DType, p, idx value.Value) value.Value {
	if dt == gir.BF16 {
		return k.bf16(k.load(tI16, p, idx))
	}
	return k.load(tF32, p, idx)
}

// bf16 widens an i16 bfloat16 to f32.
func (k *kb) bf16(v value.Value) value.Value {
	z := k.b.NewZExt(v, tI32)
	return k.b.NewBitCast(k.b.NewShl(z, ci32(16)), tF32)
}

// bf16Pair widens the two bfloat16 packed in an i32 (low half first).
func (k *kb) bf16Pair(w value.Value) (lo, hi value.Value) {
	lo = k.b.NewBitCast(k.b.NewShl(w, ci32(16)), tF32)
	hi = k.b.NewBitCast(k.b.NewAnd(w, ci32(-65536)), tF32)
	return
}

func elemType(dt gir.DType) types.Type {
	if dt == gir.BF16 {
		return tI16
	}
	return tF32
}

// shared declares a shared-memory array of n f32 and returns its base.
func (k *kb) shared(n int) value.Value { return k.sharedOf(n, tF32) }

// sharedOf declares a shared-memory array of n elements of t.
func (k *kb) sharedOf(n int, t types.Type) value.Value {
	k.m.nshared++
	at := types.NewArray(uint64(n), t)
	g := k.m.m.NewGlobalDef(fmt.Sprintf("smem%d", k.m.nshared), constant.NewUndef(at))
	g.AddrSpace = 3
	g.Linkage = enum.LinkageInternal
	g.Align = 16
	g.Typ = sptr(at)
	return k.b.NewGetElementPtr(at, g, ci64(0), ci64(0))
}

// ---- warp and block reductions ----

func (k *kb) shflXor(v value.Value, mask int64) value.Value {
	if v.Type().Equal(tF32) {
		f := k.m.intrinsic("llvm.nvvm.shfl.sync.bfly.f32", tF32, tI32, tF32, tI32, tI32)
		return k.b.NewCall(f, ci32(-1), v, ci32(mask), ci32(0x1f))
	}
	f := k.m.intrinsic("llvm.nvvm.shfl.sync.bfly.i32", tI32, tI32, tI32, tI32, tI32)
	return k.b.NewCall(f, ci32(-1), v, ci32(mask), ci32(0x1f))
}

// warpSum returns the sum of v over the warp, on every lane.
func (k *kb) warpSum(v value.Value) value.Value {
	for m := int64(16); m >= 1; m /= 2 {
		v = k.fadd(v, k.shflXor(v, m))
	}
	return v
}

// blockSum returns the sum of v over a block of nt threads (a multiple of
// 32), on every thread. buf is a shared array of at least nt/32 floats.
func (k *kb) blockSum(v value.Value, buf value.Value, nt int) value.Value {
	v = k.warpSum(v)
	nw := nt / 32
	if nw == 1 {
		return v
	}
	k.ifThen(k.b.NewICmp(enum.IPredEQ, k.lane(), ci64(0)), func() {
		k.store(v, buf, k.warpI())
	})
	k.barrier()
	var s value.Value = k.load(tF32, buf, ci64(0))
	for w := 1; w < nw; w++ {
		s = k.fadd(s, k.load(tF32, buf, ci64(int64(w))))
	}
	k.barrier()
	return s
}

// ---- control flow ----

// loop emits for i := from; i < to; i += step { carry = body(i, carry) }.
func (k *kb) loop(from, to value.Value, step int64, init []value.Value,
	body func(i value.Value, carry []value.Value) []value.Value) []value.Value {
	pre := k.b
	hdr, bodyB, exit := k.block("loop"), k.block("body"), k.block("exit")
	pre.NewBr(hdr)
	k.b = hdr
	iphi := hdr.NewPhi(ir.NewIncoming(from, pre))
	phis := make([]*ir.InstPhi, len(init))
	carry := make([]value.Value, len(init))
	for j, v := range init {
		phis[j] = hdr.NewPhi(ir.NewIncoming(v, pre))
		carry[j] = phis[j]
	}
	hdr.NewCondBr(hdr.NewICmp(enum.IPredSLT, iphi, to), bodyB, exit)
	k.b = bodyB
	next := body(iphi, carry)
	inext := k.addc(iphi, step)
	latch := k.b
	latch.NewBr(hdr)
	iphi.Incs = append(iphi.Incs, ir.NewIncoming(inext, latch))
	for j := range phis {
		phis[j].Incs = append(phis[j].Incs, ir.NewIncoming(next[j], latch))
	}
	k.b = exit
	return carry
}

func (k *kb) forRange(from, to value.Value, step int64, body func(i value.Value)) {
	k.loop(from, to, step, nil, func(i value.Value, _ []value.Value) []value.Value {
		body(i)
		return nil
	})
}

func (k *kb) ifThen(cond value.Value, then func()) {
	thenB, join := k.block("then"), k.block("join")
	k.b.NewCondBr(cond, thenB, join)
	k.b = thenB
	then()
	k.b.NewBr(join)
	k.b = join
}

// returnIf ends the kernel for the threads where cond holds.
func (k *kb) returnIf(cond value.Value) {
	cont := k.block("cont")
	k.b.NewCondBr(cond, k.exit, cont)
	k.b = cont
}

// ---- math (f32 scalars; no libdevice) ----

// exp is Cephes expf: Cody-Waite reduction, degree-6 polynomial, 2^n in
// the exponent bits (~2 ulp); inputs clamped to [-87.3, 88.3].
func (k *kb) exp(x value.Value) value.Value {
	x = k.fmin(k.fmax(x, cf(-87.3)), cf(88.3))
	fx := k.floor(k.fma(x, cf(math.Log2E), cf(0.5)))
	r := k.fma(fx, cf(-0.693359375), x)
	r = k.fma(fx, cf(2.12194440e-4), r)
	var y value.Value = cf(1.9875691500e-4)
	for _, c := range []float64{1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1} {
		y = k.fma(y, r, cf(c))
	}
	y = k.fma(y, k.fmul(r, r), k.faddc(r, 1))
	n := k.b.NewFPToSI(fx, tI32)
	e := k.b.NewShl(k.b.NewAdd(n, ci32(127)), ci32(23))
	return k.fmul(y, k.b.NewBitCast(e, tF32))
}

// tanh: odd Taylor polynomial for |x| < 0.3, else sign(x)(1 − 2/(e^{2|x|}+1)).
func (k *kb) tanh(x value.Value) value.Value {
	ax := k.fabs(x)
	e := k.exp(k.fmulc(ax, 2))
	big := k.fsub(cf(1), k.fdiv(cf(2), k.faddc(e, 1)))
	big = k.copysign(big, x)
	x2 := k.fmul(x, x)
	var p value.Value = cf(-1382.0 / 155925.0)
	for _, c := range []float64{62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0} {
		p = k.fma(p, x2, cf(c))
	}
	small := k.fma(k.fmul(p, x2), x, x)
	return k.b.NewSelect(k.b.NewFCmp(enum.FPredOLT, ax, cf(0.3)), small, big)
}

func (k *kb) softcap(x value.Value, c float64) value.Value {
	return k.fmulc(k.tanh(k.fmulc(x, 1/c)), c)
}

// gelu is the tanh approximation as x·sigmoid(2u), u = √(2/π)(x+0.044715x³).
func (k *kb) gelu(x value.Value) value.Value {
	x2 := k.fmul(x, x)
	inner := k.fma(k.fmulc(x2, 0.044715), x, x)
	m2u := k.fmulc(inner, -2*0.7978845608028654)
	return k.fdiv(x, k.faddc(k.exp(m2u), 1))
}
