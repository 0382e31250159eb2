package ptx

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/value"
)

// Matvec computes out[r, n] = x[r]·w[n] for the valid rows r, kw warps per
// output column n (see kw): 16-byte loads of the weight row (8 bf16 or 4 f32 per
// lane), coalesced across the warp, Unroll chunks in flight per lane, a
// shuffle reduction. With GeGLU it streams the gate and up rows together
// and writes gelu(x·gate)·(x·up); Softcap adds c·tanh(y/c). It is the decode
// GEMV (R = 1) and the fallback matmul for f32 weights.
// Params: out f32[R×N], x f32[R×K], w [N×K] (, up [N×K]), scalars.
//
// With Split (decode only, not with GeGLU or Softcap) it computes several
// matrices of one input in one launch: N = ΣSplit, output rows
// [Σ_{j<i}Split, Σ_{j≤i}Split) from weight i, stored contiguously.
// Params: out, x, w_0 … w_{m-1}, scalars.
type Matvec struct {
	R, K, N int
	WType   gir.DType
	Softcap float64
	GeGLU   bool
	Split   []int
	MatvecShape
}

// MatvecShape tunes a decode GEMV's launch; zero fields take the
// defaults, the best of bench/gpu's sweep on an H200 for the 2B's shapes
// (4 warps of 8 loads in flight: 2–10% faster than 8 warps, and than 16
// loads or more warps per output).
type MatvecShape struct {
	Warps    int // warps per block (mvWarps)
	Unroll   int // 16-byte chunks in flight per lane (mvUnroll)
	MinWarps int // kw grows until N·kw reaches this (mvMinWarps)
}

const (
	mvWarps    = 4
	mvUnroll   = 8
	mvMinWarps = 8192
)

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func (s Matvec) warps() int    { return orDefault(s.Warps, mvWarps) }
func (s Matvec) unroll() int   { return orDefault(s.Unroll, mvUnroll) }
func (s Matvec) minWarps() int { return orDefault(s.MinWarps, mvMinWarps) }

// projectionName names a matvec or matmul kernel: op is base, geglu_base,
// or base followed by the number of matrices of a fused Split, whose row
// counts end the name.
func projectionName(base string, geglu bool, split []int, R, K, N int, wtype string) string {
	op := base
	if geglu {
		op = "geglu_" + base
	}
	if len(split) > 0 {
		op = fmt.Sprintf("%s%d", base, len(split))
	}
	n := fmt.Sprintf("%s_r%d_k%d_n%d_%s", op, R, K, N, wtype)
	for _, p := range split {
		n += fmt.Sprintf("_%d", p)
	}
	return n
}

func (s Matvec) Name() string {
	n := projectionName("matvec", s.GeGLU, s.Split, s.R, s.K, s.N, s.WType.String())
	if s.Softcap != 0 {
		n += "_cap" + fname(s.Softcap)
	}
	if s.Warps != 0 || s.Unroll != 0 || s.MinWarps != 0 {
		n += fmt.Sprintf("_w%du%dt%d", s.warps(), s.unroll(), s.minWarps())
	}
	return n
}
func (s Matvec) Params() []string {
	if len(s.Split) > 0 {
		ps := []string{"out", "x"}
		for i := range s.Split {
			ps = append(ps, fmt.Sprintf("w%d", i))
		}
		return append(ps, "scalars")
	}
	if s.GeGLU {
		return []string{"out", "x", "gate", "up", "scalars"}
	}
	return []string{"out", "x", "w", "scalars"}
}
func (s Matvec) Launch() Launch {
	return launch1(ceilDiv(s.N, s.warps()/s.kw()), 32*s.warps())
}

// kw is the number of warps that split one output's K (a power of two up
// to the block's warps; their sums meet in shared memory): for a decode
// GEMV (R = 1) with few outputs, the least that gives N·kw ≥ MinWarps
// warps, kept to kw ≤ nch/8 (nch: the 16-byte chunks of a weight row) so
// each warp has chunks to stream.
func (s Matvec) kw() int {
	if s.R != 1 {
		return 1
	}
	nch := s.K / s.epc()
	kw := 1
	for kw < s.warps() && s.N*kw < s.minWarps() && nch >= 8*(2*kw) {
		kw *= 2
	}
	return kw
}

func (s Matvec) Validate() error {
	if s.WType != gir.F32 && s.WType != gir.BF16 {
		return fmt.Errorf("weight dtype %v (want f32 or bf16)", s.WType)
	}
	if s.K%8 != 0 {
		return fmt.Errorf("K = %d is not a multiple of 8", s.K)
	}
	if len(s.Split) > 0 {
		sum := 0
		for _, p := range s.Split {
			if p <= 0 || p%4 != 0 {
				return fmt.Errorf("split part %d is not a positive multiple of 4", p)
			}
			sum += p
		}
		if sum != s.N || s.GeGLU || s.Softcap != 0 || len(s.Split) < 2 {
			return fmt.Errorf("split %v does not fit N = %d (or with GeGLU/softcap)", s.Split, s.N)
		}
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
	np := nw
	if len(s.Split) > 0 {
		np = len(s.Split)
	}
	kw := s.kw()
	W, U := s.warps(), s.unroll()
	rpb := W / kw // outputs per block
	lane, warp := k.lane(), k.warpI()
	wr, wk := k.b.NewUDiv(warp, ci64(int64(kw))), k.b.NewURem(warp, ci64(int64(kw)))
	n := k.add(k.mulc(k.bidx(), int64(rpb)), wr)
	valid := k.slt(n, ci64(int64(s.N)))
	// No early return: with kw > 1 every warp must reach the barriers.
	nc := k.smin(n, ci64(int64(s.N-1)))
	epc := s.epc()
	nch := s.K / epc
	wrow := k.mulc(nc, int64(nch))
	if len(s.Split) > 0 {
		// Pick the matrix of output nc and its row there.
		w, local, start := k.param(2, vecT(4, tI32)), nc, 0
		for i, p := range s.Split {
			if i > 0 {
				in := k.sge(nc, ci64(int64(start)))
				w = k.b.NewSelect(in, k.param(2+i, vecT(4, tI32)), w)
				local = k.b.NewSelect(in, k.addc(nc, int64(-start)), local)
			}
			start += p
		}
		ws[0] = w
		wrow = k.mulc(local, int64(nch))
	}
	_, nvalid := k.scalars(2 + np)
	var red value.Value
	if kw > 1 {
		red = k.shared(W * nw)
	}
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
		init := make([]value.Value, nw*U)
		for i := range init {
			init[i] = cf(0)
		}
		// Chunks of a row: super-steps of 32·U·kw, warp wk of the row taking
		// 32·U consecutive ones; the rest in predicated steps of 32·kw.
		super := 32 * U * kw
		full := nch / super
		acc := init
		if full > 0 {
			acc = k.loop(ci64(0), ci64(int64(full)), 1, init, func(g value.Value, c []value.Value) []value.Value {
				base := k.add(k.add(k.mulc(g, int64(super)), k.mulc(wk, int64(32*U))), lane)
				next := make([]value.Value, len(c))
				for u := 0; u < U; u++ {
					copy(next[u*nw:], chunk(k.addc(base, int64(32*u)), c[u*nw:(u+1)*nw]))
				}
				return next
			})
		}
		rest := nch - full*super
		acc = append([]value.Value(nil), acc...)
		for u := 0; u*32*kw < rest; u++ {
			c := k.add(k.addc(k.mulc(wk, 32), int64(full*super+u*32*kw)), lane)
			cur := acc[u*nw : (u+1)*nw]
			if (u+1)*32*kw <= rest {
				copy(acc[u*nw:], chunk(c, cur))
				continue
			}
			ok := k.slt(c, ci64(int64(nch)))
			part := chunk(k.smin(c, ci64(int64(nch-1))), cur)
			for wi := range part {
				acc[u*nw+wi] = k.b.NewSelect(ok, part[wi], cur[wi])
			}
		}
		sums := make([]value.Value, nw)
		for wi := range sums {
			var t value.Value = acc[wi]
			for u := 1; u < U; u++ {
				t = k.fadd(t, acc[u*nw+wi])
			}
			sums[wi] = k.warpSum(t)
		}
		lane0 := k.b.NewICmp(enum.IPredEQ, lane, ci64(0))
		if kw > 1 {
			k.ifThen(lane0, func() {
				for wi := range sums {
					k.store(sums[wi], red, k.addc(k.mulc(warp, int64(nw)), int64(wi)))
				}
			})
			k.barrier()
			first := k.mulc(k.mulc(wr, int64(kw)), int64(nw)) // warp wr·kw's slots
			for wi := range sums {
				var t value.Value = k.load(tF32, red, k.addc(first, int64(wi)))
				for j := 1; j < kw; j++ {
					t = k.fadd(t, k.load(tF32, red, k.addc(first, int64(j*nw+wi))))
				}
				sums[wi] = t
			}
		}
		y := sums[0]
		if s.GeGLU {
			y = k.fmul(k.gelu(sums[0]), sums[1])
		}
		if s.Softcap != 0 {
			y = k.softcap(y, s.Softcap)
		}
		store := k.b.NewAnd(k.b.NewAnd(lane0, valid), k.b.NewICmp(enum.IPredEQ, wk, ci64(0)))
		k.ifThen(store, func() {
			k.store(y, out, k.add(k.mulc(r, int64(s.N)), n))
		})
		if kw > 1 {
			k.barrier() // the next row reuses red
		}
	})
}
