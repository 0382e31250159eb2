package ptx

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// MMA is the prefill matmul on tensor cores: out[R×N] = x[R×K]·w[N×K]ᵀ with
// bf16 weights, through mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// (inline PTX). With GeGLU it multiplies by gate and up together and writes
// gelu(x·gate)·(x·up); Softcap adds c·tanh(y/c).
//
// A block of 4 warps (2×2) computes BM rows × 64 columns. Tiles of BK = 16
// along K go through shared memory in a three-stage cp.async pipeline, so
// the copies of the next two tiles are in flight while the warps multiply
// the current one, and each weight and activation element is read from
// global memory once per block instead of once per warp. The activations
// stay f32 in shared memory and are rounded to bf16 as the fragments are
// loaded. With Exact each is split into bf16 hi + lo parts, both
// multiplied, so the products keep ~16 bits of x and the result matches
// the f32 reference to ~1e-5; without it x is rounded to nearest bf16 as
// the other engines do, for half the tensor-core work.
// Params: out, x, w (, up), scalars. Needs K % 16 == 0 and N % 8 == 0.
//
// With Split (not with GeGLU or Softcap) it computes several matrices of
// one input in one launch, as Matvec does for decode: N = ΣSplit, each part
// a multiple of the block's 64 columns, written to its own R×Split[i]
// output. Params: out_0 … out_{m-1}, x, w_0 … w_{m-1}, scalars.
type MMA struct {
	R, K, N int
	Softcap float64
	GeGLU   bool
	Exact   bool
	Split   []int
}

const (
	mmaBN     = 64 // output columns per block
	mmaBK     = 16 // K per pipeline stage
	mmaStages = 3
	// Shared-memory row strides, padded so that the fragment loads of a
	// warp (8 rows × 4 lanes) fall in 32 different banks.
	mmaAStride = mmaBK + 8       // f32 per activation row
	mmaBStride = (mmaBK + 8) / 2 // 32-bit words (bf16 pairs) per weight row
)

func (s MMA) nw() int {
	if s.GeGLU {
		return 2
	}
	return 1
}

// bm is the block's rows: 128 where that still gives about two blocks per
// SM of a large GPU, else 64 (always for GeGLU, whose two matrices double
// the accumulators).
func (s MMA) bm() int {
	if !s.GeGLU && ceilDiv(s.R, 128)*ceilDiv(s.N, mmaBN) >= 256 {
		return 128
	}
	return 64
}

func (s MMA) Name() string {
	n := projectionName("mma", s.GeGLU, s.Split, s.R, s.K, s.N, "bf16")
	if s.Exact {
		n += "_x2"
	}
	if s.Softcap != 0 {
		n += "_cap" + fname(s.Softcap)
	}
	return n
}
func (s MMA) Params() []string {
	if len(s.Split) == 0 {
		return Matvec{GeGLU: s.GeGLU}.Params()
	}
	var ps []string
	for i := range s.Split {
		ps = append(ps, fmt.Sprintf("out%d", i))
	}
	ps = append(ps, "x")
	for i := range s.Split {
		ps = append(ps, fmt.Sprintf("w%d", i))
	}
	return append(ps, "scalars")
}
func (s MMA) Launch() Launch {
	// Row blocks vary fastest, so the blocks sharing a slice of the weights
	// run together and read it from L2 rather than HBM.
	return Launch{Grid: [3]uint32{uint32(ceilDiv(s.R, s.bm())), uint32(ceilDiv(s.N, mmaBN)), 1}, Block: [3]uint32{128, 1, 1}}
}
func (s MMA) Validate() error {
	if s.K%mmaBK != 0 || s.N%8 != 0 {
		return fmt.Errorf("K = %d must be a multiple of %d and N = %d of 8", s.K, mmaBK, s.N)
	}
	if ceilDiv(s.N, mmaBN) > 65535 {
		return fmt.Errorf("N = %d needs more than 65535 column blocks", s.N)
	}
	if len(s.Split) > 0 {
		sum := 0
		for _, p := range s.Split {
			if p <= 0 || p%mmaBN != 0 {
				return fmt.Errorf("split part %d is not a positive multiple of %d", p, mmaBN)
			}
			sum += p
		}
		if sum != s.N || s.GeGLU || s.Softcap != 0 || len(s.Split) < 2 {
			return fmt.Errorf("split %v does not fit N = %d (or with GeGLU/softcap)", s.Split, s.N)
		}
	}
	return positive("R, K and N", s.R, s.K, s.N)
}

// UseMMA reports whether a matmul of this shape and weight dtype goes to
// the tensor cores.
func UseMMA(r, k, n int, wt gir.DType) bool {
	return r > 1 && wt == gir.BF16 && k%mmaBK == 0 && n%8 == 0
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

// roundBF16x2 packs the pair (x0, x1) as bf16x2 rounded to nearest even,
// x0 in the low half (cvt.rn.bf16x2.f32 puts its first source high).
func (k *kb) roundBF16x2(xv value.Value) value.Value {
	fn := types.NewFunc(tI32, tF32, tF32)
	asm := ir.NewInlineAsm(types.NewPointer(fn), "cvt.rn.bf16x2.f32 $0, $1, $2;", "=r,f,f")
	return k.b.NewCall(asm, k.b.NewExtractElement(xv, ci32(1)), k.b.NewExtractElement(xv, ci32(0)))
}

// cpAsync16 starts a 16-byte copy from global src to shared dst.
func (k *kb) cpAsync16(dst, src value.Value) {
	i8s, i8g := sptr(types.I8), gptr(types.I8)
	f := k.m.intrinsic("llvm.nvvm.cp.async.cg.shared.global.16", tVoid, i8s, i8g)
	k.b.NewCall(f, k.b.NewBitCast(dst, i8s), k.b.NewBitCast(src, i8g))
}

func (k *kb) cpAsyncCommit() {
	k.b.NewCall(k.m.intrinsic("llvm.nvvm.cp.async.commit.group", tVoid))
}

// cpAsyncWait waits until at most n of this thread's copy groups are pending.
func (k *kb) cpAsyncWait(n int64) {
	k.b.NewCall(k.m.intrinsic("llvm.nvvm.cp.async.wait.group", tVoid, tI32), ci32(n))
}

// mmaOperands are the pointers and column range of one block: with Split,
// those of the matrix its 64 columns fall in.
type mmaOperands struct {
	out, x value.Value
	ws     []value.Value
	n0     value.Value // the block's first column in its matrix
	n      value.Value // that matrix's columns
	nvalid value.Value
}

func (s MMA) operands(k *kb) mmaOperands {
	n0 := k.mulc(k.bidy(), mmaBN)
	if len(s.Split) == 0 {
		o := mmaOperands{out: k.param(0, tF32), x: k.param(1, tF32), n0: n0, n: ci64(int64(s.N))}
		for i := 0; i < s.nw(); i++ {
			o.ws = append(o.ws, k.param(2+i, tI16))
		}
		_, o.nvalid = k.scalars(2 + s.nw())
		return o
	}
	m := len(s.Split)
	o := mmaOperands{out: k.param(0, tF32), x: k.param(m, tF32), ws: []value.Value{k.param(m+1, tI16)},
		n0: n0, n: ci64(int64(s.Split[0]))}
	start := 0
	for i, p := range s.Split {
		if i > 0 {
			in := k.sge(n0, ci64(int64(start)))
			o.out = k.b.NewSelect(in, k.param(i, tF32), o.out)
			o.ws[0] = k.b.NewSelect(in, k.param(m+1+i, tI16), o.ws[0])
			o.n0 = k.b.NewSelect(in, k.addc(n0, int64(-start)), o.n0)
			o.n = k.b.NewSelect(in, ci64(int64(p)), o.n)
		}
		start += p
	}
	_, o.nvalid = k.scalars(2*m + 1)
	return o
}

func (s MMA) emit(k *kb) {
	ops := s.operands(k)
	out, x, ws, nvalid := ops.out, ops.x, ops.ws, ops.nvalid
	nw := s.nw()
	BM := s.bm()
	WM := BM / 2      // rows per warp
	MT := WM / 16     // m16 tiles per warp
	const NT = 4      // n8 tiles per warp and matrix: 32 columns
	KT := s.K / mmaBK // pipeline steps
	tid, lane, warp := k.tid(), k.lane(), k.warpI()
	g := k.b.NewLShr(lane, ci64(2))
	tq := k.b.NewAnd(lane, ci64(3))
	m0 := k.mulc(k.bidx(), int64(BM))
	k.returnIf(k.sge(m0, nvalid)) // whole blocks only: the barriers stay uniform
	n0, ncols := ops.n0, ops.n

	aStage := int64(BM * mmaAStride)         // f32 per stage
	bStage := int64(nw * mmaBN * mmaBStride) // words per stage
	sA := k.shared(mmaStages * int(aStage))
	sB := k.b.NewBitCast(k.shared(mmaStages*int(bStage)), sptr(tI32))

	// Each thread copies BM/32 16-byte pieces of the activation tile (rows
	// past R re-read row R−1: loaded, never stored) and one per weight
	// matrix (64 rows × 2 pieces).
	type piece struct{ src, dst value.Value }
	var aPieces []piece
	for c := 0; c < BM/32; c++ {
		idx := k.addc(tid, int64(128*c))
		row, q := k.b.NewLShr(idx, ci64(2)), k.b.NewAnd(idx, ci64(3))
		grow := k.smin(k.add(m0, row), ci64(int64(s.R-1)))
		aPieces = append(aPieces, piece{
			src: k.add(k.mulc(grow, int64(s.K)), k.mulc(q, 4)),
			dst: k.add(k.mulc(row, mmaAStride), k.mulc(q, 4)),
		})
	}
	brow, bq := k.b.NewLShr(tid, ci64(1)), k.b.NewAnd(tid, ci64(1))
	gcol := k.smin(k.add(n0, brow), k.addc(ncols, -1))
	bSrc := k.add(k.mulc(gcol, int64(s.K)), k.mulc(bq, 8)) // bf16 index
	bDst := k.add(k.mulc(brow, mmaBStride), k.mulc(bq, 4)) // word index
	issue := func(kt value.Value) {
		k.ifThen(k.slt(kt, ci64(int64(KT))), func() {
			st := k.b.NewURem(kt, ci64(mmaStages))
			k0 := k.mulc(kt, mmaBK)
			for _, p := range aPieces {
				k.cpAsync16(k.gep(tF32, sA, k.add(k.mulc(st, aStage), p.dst)), k.gep(tF32, x, k.add(p.src, k0)))
			}
			for i, w := range ws {
				dst := k.add(k.mulc(st, bStage), k.addc(bDst, int64(i*mmaBN*mmaBStride)))
				k.cpAsync16(k.gep(tI32, sB, dst), k.gep(tI16, w, k.add(bSrc, k0)))
			}
		})
		k.cpAsyncCommit() // empty groups past the end keep the count uniform
	}
	for st := 0; st < mmaStages-1; st++ {
		issue(ci64(int64(st)))
	}

	wmI, wnI := k.b.NewLShr(warp, ci64(1)), k.b.NewAnd(warp, ci64(1))
	aRow := k.add(k.mulc(wmI, int64(WM)), g) // local row of a0 in m-tile 0
	bRow := k.add(k.mulc(wnI, 32), g)        // local weight row of b0 in n-tile 0
	nacc := MT * NT * nw * 4
	init := make([]value.Value, nacc)
	for i := range init {
		init[i] = cf(0)
	}
	acc := k.loop(ci64(0), ci64(int64(KT)), 1, init, func(kt value.Value, c []value.Value) []value.Value {
		k.cpAsyncWait(mmaStages - 2) // this thread's pieces of tile kt are in
		k.barrier()                  // everyone's are, and tile kt−1's buffer is free
		issue(k.addc(kt, mmaStages-1))
		st := k.b.NewURem(kt, ci64(mmaStages))
		aBase, bBase := k.mulc(st, aStage), k.mulc(st, bStage)
		// A fragments (rows g and g+8, k pairs 2tq and 2tq+8).
		var ahi, alo [][4]value.Value
		for i := 0; i < MT; i++ {
			r := k.addc(aRow, int64(16*i))
			var hi, lo [4]value.Value
			for e := 0; e < 4; e++ {
				off := k.add(aBase, k.add(k.mulc(k.addc(r, int64(8*(e&1))), mmaAStride), k.addc(k.mulc(tq, 2), int64(8*(e>>1)))))
				pair := k.loadVec(tF32, 2, sA, off)
				if s.Exact {
					hi[e], lo[e] = k.splitBF16(pair)
				} else {
					hi[e] = k.roundBF16x2(pair)
				}
			}
			ahi, alo = append(ahi, hi), append(alo, lo)
		}
		next := append([]value.Value(nil), c...)
		for m := 0; m < nw; m++ {
			for j := 0; j < NT; j++ {
				wrow := k.addc(bRow, int64(m*mmaBN+8*j))
				off := k.add(bBase, k.add(k.mulc(wrow, mmaBStride), tq))
				b := [2]value.Value{k.load(tI32, sB, off), k.load(tI32, sB, k.addc(off, 4))}
				for i := 0; i < MT; i++ {
					base := ((i*nw+m)*NT + j) * 4
					d := k.mma(ahi[i], b, next[base:base+4])
					if s.Exact {
						d = k.mma(alo[i], b, d)
					}
					copy(next[base:], d)
				}
			}
		}
		return next
	})
	k.cpAsyncWait(0) // no copy may outlive the block

	rows := k.smin(nvalid, ci64(int64(s.R)))
	for i := 0; i < MT; i++ {
		for j := 0; j < NT; j++ {
			col := k.add(k.add(n0, k.addc(k.mulc(wnI, 32), int64(8*j))), k.mulc(tq, 2))
			colOK := k.slt(col, ncols)
			for half := 0; half < 2; half++ {
				row := k.add(m0, k.addc(aRow, int64(16*i+8*half)))
				k.ifThen(k.b.NewAnd(colOK, k.slt(row, rows)), func() {
					ys := make([]value.Value, 2)
					for e := range ys {
						y := acc[((i*nw+0)*NT+j)*4+half*2+e]
						if s.GeGLU {
							y = k.fmul(k.gelu(y), acc[((i*nw+1)*NT+j)*4+half*2+e])
						}
						if s.Softcap != 0 {
							y = k.softcap(y, s.Softcap)
						}
						ys[e] = y
					}
					k.storeVecIf(nil, ys, out, k.add(k.mul(row, ncols), col))
				})
			}
		}
	}
}
