package codegen

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/cpu"

	gir "github.com/gemmac/gemmac/ir"
)

// kcase is one kernel spec and the test that runs it against a float64 reference.
type kcase struct {
	spec Spec
	run  func(t *testing.T, l *lib, s Spec)
}

// runSplits clears out, runs the kernel over [0, Items()) with every split
// of splits() and calls check after each.
func runSplits(t *testing.T, l *lib, s Spec, args []uintptr, reset func(), check func(what string)) {
	t.Helper()
	for k, sp := range splits(s.Items(), s.Granule()) {
		reset()
		for _, rg := range sp {
			l.call(t, s.Name(), args, rg[0], rg[1])
		}
		check(fmt.Sprintf("split%d %v", k, sp))
	}
}

func matmulCase(R, K, N int, dt gir.DType, nvalid int, softcap float64) kcase {
	return matmulSpecCase(Matmul{R: R, K: K, N: N, WType: dt, Softcap: softcap}, nvalid)
}

func matmulSpecCase(m Matmul, nvalid int) kcase {
	R, K, N, softcap := m.R, m.K, m.N, m.Softcap
	return kcase{m, func(t *testing.T, l *lib, s Spec) {
		xs := float32(1)
		if softcap > 0 {
			xs = 4
		}
		x := randF32(R*K, 1, xs)
		w := newWeights(m.WType, randF32(N*K, 2, 1))
		if m.Panels {
			w.layPanels(N, K, 1)
		}
		out := f32buf(R * N)
		sc := scalarsBuf(3, int64(nvalid))
		want := make([]float64, nvalid*N)
		for r := 0; r < nvalid; r++ {
			for j := 0; j < N; j++ {
				var acc float64
				for k := 0; k < K; k++ {
					acc += float64(x[r*K+k]) * w.vals[j*K+k]
				}
				if softcap > 0 {
					acc = softcap * math.Tanh(acc/softcap)
				}
				want[r*N+j] = acc
			}
		}
		runSplits(t, l, s, []uintptr{addr(out), addr(x), w.addr(), addr(sc)}, func() { clear32(out) },
			func(what string) { checkRel(t, what, out[:nvalid*N], want, 1e-5) })
		runtime.KeepAlive(x)
		runtime.KeepAlive(w)
		runtime.KeepAlive(sc)
	}}
}

func gelu64(g float64) float64 {
	// 0.5·g·(1+tanh(u)) = g·sigmoid(2u); this form does not cancel for g ≪ 0.
	u := 0.7978845608028654 * (g + 0.044715*g*g*g)
	return g / (1 + math.Exp(-2*u))
}

func gegluCase(R, K, F int, dt gir.DType, nvalid int) kcase {
	return gegluSpecCase(GeGLU{R: R, K: K, F: F, WType: dt}, nvalid)
}

func gegluSpecCase(gs GeGLU, nvalid int) kcase {
	R, K, F := gs.R, gs.K, gs.F
	return kcase{gs, func(t *testing.T, l *lib, s Spec) {
		x := randF32(R*K, 3, 1)
		wg := newWeights(gs.WType, randF32(F*K, 4, 0.5))
		wu := newWeights(gs.WType, randF32(F*K, 5, 0.5))
		if gs.Panels {
			wg.layPanels(F, K, 2)
			wu.layPanels(F, K, 2)
		}
		out := f32buf(R * F)
		sc := scalarsBuf(0, int64(nvalid))
		want := make([]float64, nvalid*F)
		for r := 0; r < nvalid; r++ {
			for j := 0; j < F; j++ {
				var g, u float64
				for k := 0; k < K; k++ {
					g += float64(x[r*K+k]) * wg.vals[j*K+k]
					u += float64(x[r*K+k]) * wu.vals[j*K+k]
				}
				want[r*F+j] = gelu64(g) * u
			}
		}
		runSplits(t, l, s, []uintptr{addr(out), addr(x), wg.addr(), wu.addr(), addr(sc)}, func() { clear32(out) },
			func(what string) { checkRel(t, what, out[:nvalid*F], want, 1e-5) })
		runtime.KeepAlive(x)
		runtime.KeepAlive(wg)
		runtime.KeepAlive(wu)
		runtime.KeepAlive(sc)
	}}
}

func rmsRef(x []float64, w []float32, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
	o := make([]float64, len(x))
	for i, v := range x {
		o[i] = v * inv * float64(w[i])
	}
	return o
}

func rmsnormCase(R, H, nvalid int) kcase {
	const eps = 1e-6
	return kcase{RMSNorm{R: R, H: H, Eps: eps}, func(t *testing.T, l *lib, s Spec) {
		x := randF32(R*H, 6, 3)
		w := randF32(H, 7, 1)
		for i := range w {
			w[i] += 1
		}
		out := f32buf(R * H)
		sc := scalarsBuf(0, int64(nvalid))
		var want []float64
		for r := 0; r < nvalid; r++ {
			want = append(want, rmsRef(f64s(x[r*H:(r+1)*H]), w, eps)...)
		}
		runSplits(t, l, s, []uintptr{addr(out), addr(x), addr(w), addr(sc)}, func() { clear32(out) },
			func(what string) { checkElem(t, what, out[:nvalid*H], want, 1e-5, 0) })
		runtime.KeepAlive(x)
		runtime.KeepAlive(w)
		runtime.KeepAlive(sc)
	}}
}

func addRmsnormCase(R, H, nvalid int, alias bool) kcase {
	const eps = 1e-6
	return kcase{AddRMSNorm{R: R, H: H, Eps: eps}, func(t *testing.T, l *lib, s Spec) {
		x0 := randF32(R*H, 8, 2)
		a := randF32(R*H, 9, 5)
		wp, wn := randF32(H, 10, 1), randF32(H, 11, 1)
		for i := range wp {
			wp[i] += 1
			wn[i] += 0.5
		}
		x := f32buf(R * H)
		sum, norm := f32buf(R*H), f32buf(R*H)
		if alias {
			sum = x
		}
		sc := scalarsBuf(0, int64(nvalid))
		var wantS, wantN []float64
		for r := 0; r < nvalid; r++ {
			n := rmsRef(f64s(a[r*H:(r+1)*H]), wp, eps)
			srow := make([]float64, H)
			for i := range srow {
				srow[i] = float64(x0[r*H+i]) + n[i]
			}
			wantS = append(wantS, srow...)
			wantN = append(wantN, rmsRef(srow, wn, eps)...)
		}
		runSplits(t, l, s, []uintptr{addr(sum), addr(norm), addr(x), addr(a), addr(wp), addr(wn), addr(sc)},
			func() { copy(x, x0); clear32(norm); clear32(sum[:0]) },
			func(what string) {
				checkElem(t, what+" sum", sum[:nvalid*H], wantS, 1e-5, 1e-6)
				checkElem(t, what+" norm", norm[:nvalid*H], wantN, 1e-5, 1e-6)
			})
		runtime.KeepAlive(x)
		runtime.KeepAlive(a)
		runtime.KeepAlive(wp)
		runtime.KeepAlive(wn)
		runtime.KeepAlive(sc)
	}}
}

func embedCase(R, H, V int, dt gir.DType, scale float64, nvalid int) kcase {
	return kcase{Embed{R: R, H: H, V: V, TType: dt, Scale: scale}, func(t *testing.T, l *lib, s Spec) {
		tbl := newWeights(dt, randF32(V*H, 12, 1))
		ids := i32buf(R)
		for i := range ids {
			ids[i] = int32((i*7 + 3) % V)
		}
		out := f32buf(R * H)
		sc := scalarsBuf(5, int64(nvalid))
		want := make([]float32, nvalid*H)
		for r := 0; r < nvalid; r++ {
			for i := 0; i < H; i++ {
				want[r*H+i] = float32(tbl.vals[int(ids[r])*H+i]) * float32(scale)
			}
		}
		runSplits(t, l, s, []uintptr{addr(out), tbl.addr(), addr(ids), addr(sc)}, func() { clear32(out) },
			func(what string) { checkExact(t, what, out[:nvalid*H], want) })
		runtime.KeepAlive(tbl)
		runtime.KeepAlive(ids)
		runtime.KeepAlive(sc)
	}}
}

// ropeTable is the cs table the runtime fills: cos then sin per position.
func ropeTable(P, D int, theta float64) []float32 {
	cs := f32buf(P * D)
	for p := 0; p < P; p++ {
		for i := 0; i < D/2; i++ {
			f := float64(p) * math.Pow(theta, -2*float64(i)/float64(D))
			cs[p*D+i] = float32(math.Cos(f))
			cs[p*D+D/2+i] = float32(math.Sin(f))
		}
	}
	return cs
}

// ropeRef is RoPE in float64 of the first nvalid rows of x (NH heads of D)
// with the cos/sin table cs, row r at position posOf(r), times scale.
func ropeRef(x, cs []float32, NH, D int, scale float64, nvalid int, posOf func(r int) int) []float64 {
	half := D / 2
	want := make([]float64, nvalid*NH*D)
	for r := 0; r < nvalid; r++ {
		p := posOf(r)
		for h := 0; h < NH; h++ {
			b := (r*NH + h) * D
			for i := 0; i < half; i++ {
				a, bb := float64(x[b+i]), float64(x[b+i+half])
				c, sn := float64(cs[p*D+i]), float64(cs[p*D+half+i])
				want[b+i] = (a*c - bb*sn) * scale
				want[b+i+half] = (bb*c + a*sn) * scale
			}
		}
	}
	return want
}

func ropeCase(R, NH, D int, scale float64, pos, nvalid int, alias bool) kcase {
	return kcase{Rope{R: R, NH: NH, D: D, Scale: scale}, func(t *testing.T, l *lib, s Spec) {
		x0 := randF32(R*NH*D, 13, 2)
		cs := ropeTable(pos+R, D, 10000)
		x := f32buf(len(x0))
		out := f32buf(len(x0))
		if alias {
			out = x
		}
		sc := scalarsBuf(int64(pos), int64(nvalid))
		want := ropeRef(x0, cs, NH, D, scale, nvalid, func(r int) int { return pos + r })
		runSplits(t, l, s, []uintptr{addr(out), addr(x), addr(cs), addr(sc)},
			func() { copy(x, x0); clear32(out[:0]) },
			func(what string) { checkRel(t, what, out[:len(want)], want, 1e-5) })
		runtime.KeepAlive(x)
		runtime.KeepAlive(cs)
		runtime.KeepAlive(sc)
	}}
}

// attendKeys is one query's attention in float64: q·key_j over keys
// start..i, scaled and softcapped, a softmax, then Σ p_j·value_j added to
// out. kv(j, e) is element e of key and value j.
func attendKeys(a Attention, q []float32, start, i int, kv func(j, e int) (k, v float64), out []float64) {
	var scores []float64
	mx := math.Inf(-1)
	for j := start; j <= i; j++ {
		var d float64
		for e := range q {
			k, _ := kv(j, e)
			d += float64(q[e]) * k
		}
		d *= a.Scale
		if a.Softcap > 0 {
			d = a.Softcap * math.Tanh(d/a.Softcap)
		}
		scores = append(scores, d)
		mx = math.Max(mx, d)
	}
	var z float64
	for n := range scores {
		scores[n] = math.Exp(scores[n] - mx)
		z += scores[n]
	}
	for j := start; j <= i; j++ {
		p := scores[j-start] / z
		for e := range q {
			_, v := kv(j, e)
			out[e] += p * v
		}
	}
}

// attentionCase checks Attention against float64. With a bf16 cache (a.KV)
// the cached keys and values are bf16 and the chunk's own are rounded to
// bf16 as the cache will hold them.
func attentionCase(a Attention, pos, nvalid int) kcase {
	return kcase{a, func(t *testing.T, l *lib, s Spec) {
		T, HQ, HKV, D, C := a.T, a.HQ, a.HKV, a.D, a.CacheLen
		q := randF32(T*HQ*D, 14, 1)
		k := randF32(T*HKV*D, 15, 1)
		v := randF32(T*HKV*D, 16, 1)
		kc := randF32(C*HKV*D, 17, 1)
		vc := randF32(C*HKV*D, 18, 1)
		round := func(x float32) float32 { return x }
		if kvType(a.KV) == gir.BF16 {
			round = func(x float32) float32 { return gir.RoundTo(x, gir.BF16) }
			for i := range kc {
				kc[i], vc[i] = round(kc[i]), round(vc[i])
			}
		}
		kcArg, vcArg := cacheBuf(kc, a.KV), cacheBuf(vc, a.KV)
		kc0, vc0 := bytes.Clone(kcArg), bytes.Clone(vcArg)
		out := f32buf(T * HQ * D)
		sc := scalarsBuf(int64(pos), int64(nvalid))
		want := make([]float64, nvalid*HQ*D)
		group := HQ / HKV
		for t0 := 0; t0 < nvalid; t0++ {
			i := pos + t0
			start := 0
			if a.Window > 0 {
				start = max(0, i-a.Window+1)
			}
			for h := 0; h < HQ; h++ {
				kvh := h / group
				row := func(j int) (kr, vr []float32) {
					if j >= pos {
						o := ((j-pos)*HKV + kvh) * D
						return k[o : o+D], v[o : o+D]
					}
					o := ((j%C)*HKV + kvh) * D
					return kc[o : o+D], vc[o : o+D]
				}
				attendKeys(a, q[(t0*HQ+h)*D:(t0*HQ+h+1)*D], start, i, func(j, e int) (float64, float64) {
					kr, vr := row(j)
					return float64(round(kr[e])), float64(round(vr[e]))
				}, want[(t0*HQ+h)*D:])
			}
		}
		runSplits(t, l, s, []uintptr{addr(out), addr(q), addr(k), addr(v), addr(kcArg), addr(vcArg), addr(sc)},
			func() { clear32(out) },
			func(what string) {
				checkRel(t, what, out[:len(want)], want, 1e-5)
				if !bytes.Equal(kcArg, kc0) || !bytes.Equal(vcArg, vc0) {
					t.Fatalf("%s: the cache was written", what)
				}
			})
		runtime.KeepAlive(q)
		runtime.KeepAlive(k)
		runtime.KeepAlive(v)
		runtime.KeepAlive(kcArg)
		runtime.KeepAlive(vcArg)
		runtime.KeepAlive(sc)
	}}
}

// cacheBuf is x as a cache of kv's element type, in an aligned buffer.
func cacheBuf(x []float32, kv gir.DType) []byte {
	if kvType(kv) == gir.BF16 {
		b := u16buf(len(x))
		for i, v := range x {
			b[i] = gir.F32ToBF16(v)
		}
		return unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), 2*len(x))
	}
	b := f32buf(len(x))
	copy(b, x)
	return unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), 4*len(x))
}

func kvStoreCase(T, HKV, D, C, pos, nvalid int) kcase {
	return kcase{KVStore{T: T, HKV: HKV, D: D, CacheLen: C}, func(t *testing.T, l *lib, s Spec) {
		k, v := randF32(T*HKV*D, 19, 1), randF32(T*HKV*D, 20, 1)
		kc0, vc0 := randF32(C*HKV*D, 21, 1), randF32(C*HKV*D, 22, 1)
		kc, vc := f32buf(len(kc0)), f32buf(len(vc0))
		wantK, wantV := append([]float32(nil), kc0...), append([]float32(nil), vc0...)
		row := HKV * D
		for t0 := 0; t0 < nvalid; t0++ {
			slot := (pos + t0) % C
			copy(wantK[slot*row:(slot+1)*row], k[t0*row:])
			copy(wantV[slot*row:(slot+1)*row], v[t0*row:])
		}
		sc := scalarsBuf(int64(pos), int64(nvalid))
		runSplits(t, l, s, []uintptr{addr(kc), addr(vc), addr(k), addr(v), addr(sc)},
			func() { copy(kc, kc0); copy(vc, vc0) },
			func(what string) {
				checkExact(t, what+" k", kc, wantK)
				checkExact(t, what+" v", vc, wantV)
			})
		runtime.KeepAlive(k)
		runtime.KeepAlive(v)
		runtime.KeepAlive(sc)
	}}
}

func selectRowCase(R, H, nvalid int) kcase {
	return kcase{SelectRow{R: R, H: H}, func(t *testing.T, l *lib, s Spec) {
		x := randF32(R*H, 23, 1)
		out := f32buf(H)
		sc := scalarsBuf(0, int64(nvalid))
		runSplits(t, l, s, []uintptr{addr(out), addr(x), addr(sc)}, func() { clear32(out) },
			func(what string) { checkExact(t, what, out, x[(nvalid-1)*H:nvalid*H]) })
		runtime.KeepAlive(x)
		runtime.KeepAlive(sc)
	}}
}

func elemCase(N int, op ElemOp, c float64, lo, hi float32) kcase {
	return kcase{Elementwise{N: N, Op: op, C: c}, func(t *testing.T, l *lib, s Spec) {
		a, b := f32buf(N), randF32(N, 25, 3)
		for i := range a { // a sweep of [lo, hi] and some tiny values
			a[i] = lo + (hi-lo)*float32(i)/float32(N-1)
			if i%7 == 0 {
				a[i] *= 1e-4
			}
		}
		out := f32buf(N)
		want := make([]float64, N)
		exact := make([]float32, N)
		for i := range want {
			x := float64(a[i])
			switch op {
			case OpAdd:
				exact[i] = a[i] + b[i]
			case OpMul:
				exact[i] = a[i] * b[i]
			case OpScale:
				exact[i] = a[i] * float32(c)
			case OpSoftcap:
				want[i] = c * math.Tanh(x/c)
			case OpGelu:
				want[i] = gelu64(x)
			}
		}
		args := []uintptr{addr(out), addr(a)}
		if op.Binary() {
			args = append(args, addr(b))
		}
		runSplits(t, l, s, args, func() { clear32(out) }, func(what string) {
			switch op {
			case OpSoftcap:
				checkElem(t, what, out, want, 1e-6, 1e-37)
			case OpGelu:
				// For g ≪ 0, gelu ≈ g·e^{−2|u|} and the f32 rounding of 2u
				// (|2u| up to ~88) alone costs |2u|·6e-8 relative.
				checkElem(t, what, out, want, 1e-5, 1e-30)
			default:
				checkExact(t, what, out, exact)
			}
		})
		runtime.KeepAlive(a)
		runtime.KeepAlive(b)
	}}
}

func probeCases() []kcase {
	rd := ProbeRead{Bytes: 64 << 10}
	fm := ProbeFMA{Iters: 100}
	return []kcase{
		{rd, func(t *testing.T, l *lib, s Spec) {
			buf := f32buf(int(rd.Bytes / 4))
			for i := range buf {
				buf[i] = 1
			}
			out := f32buf(int(rd.Items()) * 16)
			runSplits(t, l, s, []uintptr{addr(buf), addr(out)}, func() {
				for i := range out {
					out[i] = 0
				}
			}, func(what string) {
				for it := 0; it < int(rd.Items()); it++ {
					var sum float32
					for _, v := range out[it*16 : it*16+16] {
						sum += v
					}
					if sum != PageBytes/4 {
						t.Fatalf("%s: item %d lane sum %v, want %d", what, it, sum, PageBytes/4)
					}
				}
			})
			runtime.KeepAlive(buf)
		}},
		{fm, func(t *testing.T, l *lib, s Spec) {
			n := int(fm.Items())
			out := f32buf(n * 16)
			lanes := l.lanes
			runSplits(t, l, s, []uintptr{addr(out)}, func() { clear32(out) }, func(what string) {
				for it := 0; it < n; it++ {
					var want float64
					for c := 0; c < Chains; c++ {
						x := float32(float32(it) * float32(1e-3*float64(c+1)))
						for k := 0; k < fm.Iters; k++ {
							x = float32(math.FMA(float64(x), float64(float32(0.999999)), float64(float32(1e-6))))
						}
						want += float64(x)
					}
					checkRel(t, what, out[it*16:it*16+1], []float64{want}, 1e-5)
					_ = lanes
				}
			})
		}},
	}
}

func allCases() []kcase {
	B, H, F := gir.BF16, gir.F16, gir.F32
	cs := []kcase{
		matmulCase(1, 64, 7, F, 1, 0),
		matmulCase(1, 96, 13, B, 1, 0),
		matmulCase(1, 256, 9, H, 1, 0),
		matmulCase(1, 100, 5, B, 1, 0),
		// bf16 decode GEMVs read 8 rows at a time (tuned for Zen, short
		// rows, up to zenShortRowBytes, one at a time): column tiles and
		// single columns, a masked K tail, x de-interleaved and (K > 4096)
		// not.
		matmulCase(1, 2304, 9, B, 1, 30),
		matmulCase(1, 2330, 19, B, 1, 0),
		matmulCase(1, 4200, 11, B, 1, 0),
		matmulCase(1, 256, 11, F, 1, 30),
		matmulCase(5, 96, 11, B, 4, 0),
		matmulCase(5, 70, 6, H, 5, 0),
		matmulCase(64, 64, 10, F, 61, 0),
		matmulCase(64, 256, 9, B, 64, 30),
		gegluCase(1, 64, 7, B, 1),
		// bf16 decode GeGLU: two rows of each matrix a pair of vectors at a
		// time (for Zen one row, four pairs): whole steps and a masked
		// tail, with x de-interleaved (K ≤ 4096) and without.
		gegluCase(1, 328, 5, B, 1),
		gegluCase(1, 4200, 3, B, 1),
		gegluCase(1, 72, 5, F, 1),
		gegluCase(5, 96, 9, F, 3),
		gegluCase(64, 64, 6, H, 63),
		// Prefill panels (panel.go): several K blocks of a panel (partial
		// sums in out, or GeGLU's scratch), K not a multiple of the block
		// or of the vector width, rows not a multiple of the tile, and
		// chunks of whole panels plus a masked remainder.
		gegluCase(64, 2304, 9, F, 61),
		gegluCase(16, 1200, 9, B, 13),
		matmulCase(64, 2304, 9, F, 62, 0),
		matmulCase(7, 9216, 5, B, 7, 30),
		matmulCase(64, 2048, 9, F, 61, 0),
		matmulCase(16, 2048, 7, B, 13, 30),
		matmulCase(12, 512, 7, F, 11, 0),
		gegluCase(24, 1024, 5, F, 23),
		matmulCase(13, 300, 150, F, 13, 0),
		matmulCase(9, 70, 131, H, 9, 30),
		gegluCase(20, 600, 70, B, 17),
		// f32 weights laid out in panels (ir.LayPanels), read where they
		// are by decode, batched steps and prefill alike: one row, a few,
		// several K blocks and row tiles, a last panel padded with zeros.
		matmulSpecCase(Matmul{R: 1, K: 2304, N: 150, WType: F, Softcap: 30, Panels: true}, 1),
		matmulSpecCase(Matmul{R: 1, K: 70, N: 64, WType: F, Panels: true}, 1),
		matmulSpecCase(Matmul{R: 8, K: 300, N: 70, WType: F, Panels: true}, 5),
		matmulSpecCase(Matmul{R: 64, K: 2304, N: 130, WType: F, Panels: true}, 61),
		matmulSpecCase(Matmul{R: 13, K: 9216, N: 64, WType: F, Panels: true}, 13),
		gegluSpecCase(GeGLU{R: 1, K: 2304, F: 40, WType: F, Panels: true}, 1),
		gegluSpecCase(GeGLU{R: 6, K: 100, F: 32, WType: F, Panels: true}, 4),
		gegluSpecCase(GeGLU{R: 24, K: 1200, F: 70, WType: F, Panels: true}, 23),
		rmsnormCase(5, 64, 4),
		rmsnormCase(1, 100, 1),
		rmsnormCase(3, 2304, 3),
		addRmsnormCase(5, 96, 4, false),
		addRmsnormCase(2, 40, 2, true),
		embedCase(5, 64, 50, B, 48, 4),
		embedCase(1, 40, 7, F, 1, 1),
		embedCase(3, 32, 9, H, 2.5, 3),
		ropeCase(5, 4, 16, 1, 3, 4, false),
		ropeCase(2, 8, 64, 0.0625, 100, 2, true),
		ropeCase(1, 2, 256, 1, 7, 1, false),
		attentionCase(Attention{T: 5, HQ: 4, HKV: 2, D: 16, CacheLen: 32, Scale: 0.25}, 7, 4),
		attentionCase(Attention{T: 8, HQ: 8, HKV: 4, D: 64, Window: 4, CacheLen: 4, Softcap: 50, Scale: 0.125}, 10, 8),
		attentionCase(Attention{T: 1, HQ: 8, HKV: 4, D: 256, CacheLen: 40, Softcap: 50, Scale: 1.0 / 16}, 33, 1),
		attentionCase(Attention{T: 1, HQ: 4, HKV: 2, D: 64, Window: 6, CacheLen: 6, Softcap: 5, Scale: 0.5}, 20, 1),
		attentionCase(Attention{T: 6, HQ: 4, HKV: 4, D: 32, Window: 3, CacheLen: 3, Scale: 0.3}, 0, 5),
		// Runs of keys longer than attnKeysPerStep in the cache and in the chunk.
		attentionCase(Attention{T: 16, HQ: 4, HKV: 2, D: 32, CacheLen: 64, Softcap: 30, Scale: 0.2}, 21, 15),
		attentionCase(Attention{T: 12, HQ: 2, HKV: 1, D: 16, Window: 9, CacheLen: 9, Scale: 0.5}, 30, 12),
		kvStoreCase(5, 2, 16, 32, 30, 4),
		kvStoreCase(8, 4, 64, 4, 10, 7),
		selectRowCase(5, 40, 3),
		selectRowCase(1, 2304, 1),
		elemCase(100, OpAdd, 0, -3, 3),
		elemCase(100, OpMul, 0, -3, 3),
		elemCase(37, OpScale, 0.125, -3, 3),
		elemCase(1000, OpSoftcap, 1, -12, 12),
		elemCase(999, OpSoftcap, 30, -200, 200),
		elemCase(1000, OpGelu, 0, -12, 8),
	}
	return append(cs, probeCases()...)
}

// testTargets are the targets whose kernels run here: the host's, the
// host's with the other x86 tuning (so both choices of tiles run on any
// machine), and the narrower x86 ones when the host is x86 (so the 8- and
// 4-lane code paths are checked on an AVX-512 machine too).
func testTargets() []Target {
	h := HostTarget()
	ts := []Target{h}
	if h.isX86() {
		other := h
		other.Tune = TuneZen
		if h.Tune == TuneZen {
			other.Tune = ""
		}
		ts = append(ts, other)
		for _, n := range []string{"x86-64-v3", "x86-64"} {
			t, _ := TargetByName(n)
			if t.Name != h.Name && (n != "x86-64-v3" || cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C) {
				ts = append(ts, t)
			}
		}
	}
	return ts
}

func TestKernels(t *testing.T) { runCases(t, testTargets(), allCases()) }

// runCases compiles the cases' kernels for each target into one library
// and runs every case on it.
func runCases(t *testing.T, targets []Target, cases []kcase) {
	for _, tg := range targets {
		t.Run(tg.String(), func(t *testing.T) {
			m := NewModule(tg)
			for _, c := range cases {
				m.MustAdd(c.spec)
			}
			l := buildLib(t, m)
			l.lanes = tg.Lanes
			l.target = tg
			for _, c := range cases {
				t.Run(c.spec.Name(), func(t *testing.T) { c.run(t, l, c.spec) })
			}
		})
	}
}

// TestCrossCompile checks that every kernel compiles for AArch64 (NEON) —
// it cannot run here.
func TestCrossCompile(t *testing.T) {
	tc, err := FindToolchain()
	if err != nil {
		t.Fatal(err)
	}
	tg, err := TargetByName("aarch64")
	if err != nil {
		t.Fatal(err)
	}
	m := NewModule(tg)
	m.MustAdd(Worker{})
	for _, c := range allCases() {
		m.MustAdd(c.spec)
	}
	dir := t.TempDir()
	if err := tc.Compile(m, dir+"/k_arm64.o", EmitOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := tc.EmitAsm(m, dir+"/k_arm64.s", EmitOptions{}); err != nil {
		t.Fatal(err)
	}
	asm, _ := os.ReadFile(dir + "/k_arm64.s")
	if !strings.Contains(string(asm), "fmla") {
		t.Errorf("aarch64 assembly has no fmla (vector FMA)")
	}
}

func TestModuleDedupe(t *testing.T) {
	m := NewModule(HostTarget())
	a := m.MustAdd(Matmul{R: 1, K: 64, N: 8, WType: gir.BF16})
	b := m.MustAdd(RMSNorm{R: 1, H: 64, Eps: 1e-6})
	c := m.MustAdd(Matmul{R: 1, K: 64, N: 8, WType: gir.BF16})
	if a != 0 || b != 1 || c != 0 || m.Len() != 2 {
		t.Fatalf("indices %d %d %d, len %d", a, b, c, m.Len())
	}
	if _, err := m.Add(Attention{T: 1, HQ: 3, HKV: 2, D: 16, CacheLen: 4, Scale: 1}); err == nil {
		t.Fatal("HQ not a multiple of HKV accepted")
	}
	ll := m.String()
	for _, want := range []string{"@gemmac_kernels = constant [2 x i8*]", "@gemmac_kernel_count = constant i64 2",
		"define void @matmul_r1_k64_n8_bf16(i8** %args, i64 %lo, i64 %hi)"} {
		if !strings.Contains(ll, want) {
			t.Errorf("module text lacks %q", want)
		}
	}
}
