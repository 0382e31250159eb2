package ptx

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// Matvec computes out[r, n] = x[r]·w[n] for the valid rows r, one warp per
// output column n: 16-byte loads of the weight row (8 bf16 or 4 f32 per
// lane), coalesced across the warp, Unroll chunks in flight per lane, a
// shuffle reduction. With GeGLU it streams the gate and up rows together
// and writes gelu(x·gate)·(x·up); Softcap adds c·tanh(y/c). It is the decode
// GEMV (R = 1) and the fallback matmul for f32 weights.
// Params: out f32[R×N], x f32[R×K], w [N×K] (, up [N×K]), scalars.
type Matvec struct {
	R, K, N int
	WType   gir.DType
	Softcap float64
	GeGLU   bool
}

const (
	mvWarps  = 8
	mvUnroll = 8
)

func (s Matvec) Name() string {
	op := "matvec"
	if s.GeGLU {
		op = "geglu_matvec"
	}
	n := fmt.Sprintf("%s_r%d_k%d_n%d_%v", op, s.R, s.K, s.N, s.WType)
	if s.Softcap != 0 {
		n += "_cap" + fname(s.Softcap)
	}
	return n
}
func (s Matvec) Params() []string {
	if s.GeGLU {
		return []string{"out", "x", "gate", "up", "scalars"}
	}
	return []string{"out", "x", "w", "scalars"}
}
func (s Matvec) Launch() Launch { return launch1(ceilDiv(s.N, mvWarps), 32*mvWarps) }
func (s Matvec) Validate() error {
	if s.WType != gir.F32 && s.WType != gir.BF16 {
		return fmt.Errorf("weight dtype %v (want f32 or bf16)", s.WType)
	}
	if s.K%8 != 0 {
		return fmt.Errorf("K = %d is not a multiple of 8", s.K)
	}
	return positive("R, K and N", s.R, s.K, s.N)
}

func (s Matvec) epc() int {
	if s.WType == gir.BF16 {
		return 8
	}
	return 4
}

func (s Matvec) emit(k *kb) {
	out, x := k.param(0, tF32), k.param(1, vecT(4, tF32))
	nw := 1
	if s.GeGLU {
		nw = 2
	}
	ws := make([]value.Value, nw)
	for i := range ws {
		ws[i] = k.param(2+i, vecT(4, tI32))
	}
	_, nvalid := k.scalars(2 + nw)
	lane, warp := k.lane(), k.warpI()
	n := k.add(k.mulc(k.bidx(), mvWarps), warp)
	k.returnIf(k.sge(n, ci64(int64(s.N))))
	epc := s.epc()
	nch := s.K / epc
	wrow := k.mulc(n, int64(nch))
	rows := k.smin(nvalid, ci64(int64(s.R)))
	k.forRange(ci64(0), rows, 1, func(r value.Value) {
		xrow := k.mulc(r, int64(s.K/4))
		// chunk adds chunk c's products to the accumulators.
		chunk := func(c value.Value, acc []value.Value) []value.Value {
			xs := make([]value.Value, 0, epc)
			for q := 0; q < epc/4; q++ {
				xv := k.load(vecT(4, tF32), x, k.add(xrow, k.addc(k.mulc(c, int64(epc/4)), int64(q))))
				for e := 0; e < 4; e++ {
					xs = append(xs, k.b.NewExtractElement(xv, ci32(int64(e))))
				}
			}
			next := make([]value.Value, len(acc))
			for wi, w := range ws {
				raw := k.load(vecT(4, tI32), w, k.add(wrow, c))
				a := acc[wi]
				for e := 0; e < 4; e++ {
					word := k.b.NewExtractElement(raw, ci32(int64(e)))
					if s.WType == gir.BF16 {
						lo, hi := k.bf16Pair(word)
						a = k.fma(xs[2*e], lo, a)
						a = k.fma(xs[2*e+1], hi, a)
					} else {
						a = k.fma(xs[e], k.b.NewBitCast(word, tF32), a)
					}
				}
				next[wi] = a
			}
			return next
		}
		init := make([]value.Value, nw*mvUnroll)
		for i := range init {
			init[i] = cf(0)
		}
		full := nch / (32 * mvUnroll)
		acc := init
		if full > 0 {
			acc = k.loop(ci64(0), ci64(int64(full)), 1, init, func(g value.Value, c []value.Value) []value.Value {
				base := k.add(k.mulc(g, 32*mvUnroll), lane)
				next := make([]value.Value, len(c))
				for u := 0; u < mvUnroll; u++ {
					part := chunk(k.addc(base, int64(32*u)), c[u*nw:(u+1)*nw])
					copy(next[u*nw:], part)
				}
				return next
			})
		}
		if rest := nch - full*32*mvUnroll; rest > 0 {
			tail := k.loop(k.addc(lane, int64(full*32*mvUnroll)), ci64(int64(nch)), 32, acc[:nw], func(c value.Value, a []value.Value) []value.Value {
				return chunk(c, a)
			})
			acc = append(append([]value.Value{}, tail...), acc[nw:]...)
		}
		sums := make([]value.Value, nw)
		for wi := range sums {
			var t value.Value = acc[wi]
			for u := 1; u < mvUnroll; u++ {
				t = k.fadd(t, acc[u*nw+wi])
			}
			sums[wi] = k.warpSum(t)
		}
		y := sums[0]
		if s.GeGLU {
			y = k.fmul(k.gelu(sums[0]), sums[1])
		}
		if s.Softcap != 0 {
			y = k.softcap(y, s.Softcap)
		}
		k.ifThen(k.b.NewICmp(enum.IPredEQ, lane, ci64(0)), func() {
			k.store(y, out, k.add(k.mulc(r, int64(s.N)), n))
		})
	})
}

// ---------------------------------------------------------------------------

// MMA is the prefill matmul on tensor cores: out[R×N] = x[R×K]·w[N×K]ᵀ with
// bf16 weights, through mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// (inline PTX). The f32 activations are split into bf16 hi + lo parts and
// both multiplied, so the products keep ~16 bits of x (the weights are exact
// bf16) and the result matches the f32 reference to ~1e-5. A block of 4
// warps covers 64 rows × 8·NT columns; each warp 16 rows × NT n-tiles of 8,
// with A and B fragments loaded straight from global memory (L1-cached).
// Params: out, x, w (, up), scalars. Needs K % 16 == 0 and N % 8 == 0.
type MMA struct {
	R, K, N int
	Softcap float64
	GeGLU   bool
}

func (s MMA) nt() int {
	if s.GeGLU {
		return 4
	}
	return 8
}

func (s MMA) Name() string {
	op := "mma"
	if s.GeGLU {
		op = "geglu_mma"
	}
	n := fmt.Sprintf("%s_r%d_k%d_n%d_bf16", op, s.R, s.K, s.N)
	if s.Softcap != 0 {
		n += "_cap" + fname(s.Softcap)
	}
	return n
}
func (s MMA) Params() []string { return Matvec{GeGLU: s.GeGLU}.Params() }
func (s MMA) Launch() Launch {
	return Launch{Grid: [3]uint32{uint32(ceilDiv(s.N, 8*s.nt())), uint32(ceilDiv(s.R, 64)), 1}, Block: [3]uint32{128, 1, 1}}
}
func (s MMA) Validate() error {
	if s.K%16 != 0 || s.N%8 != 0 {
		return fmt.Errorf("K = %d must be a multiple of 16 and N = %d of 8", s.K, s.N)
	}
	return positive("R, K and N", s.R, s.K, s.N)
}

// UseMMA reports whether a matmul of this shape and weight dtype goes to
// the tensor cores.
func UseMMA(r, k, n int, wt gir.DType) bool {
	return r > 1 && wt == gir.BF16 && k%16 == 0 && n%8 == 0
}

// mmaAsm is one m16n8k16 bf16 MMA with f32 accumulators, C tied to D.
const mmaAsm = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {$0,$1,$2,$3}, {$4,$5,$6,$7}, {$8,$9}, {$10,$11,$12,$13};"

func (k *kb) mma(a [4]value.Value, b [2]value.Value, c []value.Value) []value.Value {
	ret := types.NewStruct(tF32, tF32, tF32, tF32)
	fn := types.NewFunc(ret, tI32, tI32, tI32, tI32, tI32, tI32, tF32, tF32, tF32, tF32)
	asm := ir.NewInlineAsm(types.NewPointer(fn), mmaAsm, "=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3")
	call := k.b.NewCall(asm, a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], c[2], c[3])
	out := make([]value.Value, 4)
	for i := range out {
		out[i] = k.b.NewExtractValue(call, uint64(i))
	}
	return out
}

// splitBF16 packs the pair (x0, x1) as bf16x2 hi (truncated) and lo = x − hi
// (truncated), the lower k index in the low half.
func (k *kb) splitBF16(xv value.Value) (hi, lo value.Value) {
	mask := ci32(-65536)
	var his, los [2]value.Value
	for e := 0; e < 2; e++ {
		x := k.b.NewExtractElement(xv, ci32(int64(e)))
		bits := k.b.NewBitCast(x, tI32)
		h := k.b.NewAnd(bits, mask)
		l := k.fsub(x, k.b.NewBitCast(h, tF32))
		his[e], los[e] = h, k.b.NewAnd(k.b.NewBitCast(l, tI32), mask)
	}
	hi = k.b.NewOr(his[1], k.b.NewLShr(his[0], ci32(16)))
	lo = k.b.NewOr(los[1], k.b.NewLShr(los[0], ci32(16)))
	return
}

func (s MMA) emit(k *kb) {
	out, x := k.param(0, tF32), k.param(1, tF32)
	nw := 1
	if s.GeGLU {
		nw = 2
	}
	ws := make([]value.Value, nw)
	for i := range ws {
		ws[i] = k.param(2+i, tI32)
	}
	_, nvalid := k.scalars(2 + nw)
	NT := s.nt()
	lane, warp := k.lane(), k.warpI()
	g := k.b.NewLShr(lane, ci64(2))
	tq := k.b.NewAnd(lane, ci64(3))
	m0 := k.mulc(k.bidy(), 64)
	k.returnIf(k.sge(m0, nvalid))
	ra := k.add(k.add(m0, k.mulc(warp, 16)), g)
	rb := k.addc(ra, 8)
	last := ci64(int64(s.R - 1))
	xa := k.add(k.mulc(k.smin(ra, last), int64(s.K)), k.mulc(tq, 2))
	xb := k.add(k.mulc(k.smin(rb, last), int64(s.K)), k.mulc(tq, 2))
	n0 := k.mulc(k.bidx(), int64(8*NT))
	wrow := make([]value.Value, NT) // i32 index of W[col][2tq]
	for j := 0; j < NT; j++ {
		col := k.smin(k.add(k.addc(n0, int64(8*j)), g), ci64(int64(s.N-1)))
		wrow[j] = k.add(k.mulc(col, int64(s.K/2)), tq)
	}
	init := make([]value.Value, NT*4*nw)
	for i := range init {
		init[i] = cf(0)
	}
	acc := k.loop(ci64(0), ci64(int64(s.K)), 16, init, func(kk value.Value, c []value.Value) []value.Value {
		x0 := k.loadVec(tF32, 2, x, k.add(xa, kk))
		x1 := k.loadVec(tF32, 2, x, k.add(xb, kk))
		x2 := k.loadVec(tF32, 2, x, k.addc(k.add(xa, kk), 8))
		x3 := k.loadVec(tF32, 2, x, k.addc(k.add(xb, kk), 8))
		var ahi, alo [4]value.Value
		for i, xv := range []value.Value{x0, x1, x2, x3} {
			ahi[i], alo[i] = k.splitBF16(xv)
		}
		kw := k.b.NewLShr(kk, ci64(1))
		next := make([]value.Value, len(c))
		for wi, w := range ws {
			for j := 0; j < NT; j++ {
				off := k.add(wrow[j], kw)
				b := [2]value.Value{k.load(tI32, w, off), k.load(tI32, w, k.addc(off, 4))}
				base := (wi*NT + j) * 4
				d := k.mma(ahi, b, c[base:base+4])
				d = k.mma(alo, b, d)
				copy(next[base:], d)
			}
		}
		return next
	})
	rows := k.smin(nvalid, ci64(int64(s.R)))
	for j := 0; j < NT; j++ {
		col := k.add(k.addc(n0, int64(8*j)), k.mulc(tq, 2))
		colOK := k.slt(col, ci64(int64(s.N)))
		for half, row := range []value.Value{ra, rb} {
			ok := k.b.NewAnd(colOK, k.slt(row, rows))
			k.ifThen(ok, func() {
				for e := 0; e < 2; e++ {
					y := acc[j*4+half*2+e]
					if s.GeGLU {
						y = k.fmul(k.gelu(y), acc[(NT+j)*4+half*2+e])
					}
					if s.Softcap != 0 {
						y = k.softcap(y, s.Softcap)
					}
					k.store(y, out, k.addc(k.add(k.mulc(row, int64(s.N)), col), int64(e)))
				}
			})
		}
	}
}

var _ = constant.NewInt
