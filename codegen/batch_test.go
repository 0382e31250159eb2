package codegen

import (
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	gir "github.com/gemmac/gemmac/ir"
)

// The kernels of a batched decode step, against float64 references: row t
// at its own position pos[t], with its own caches behind pointer tables.

// batchScalars is the scalars block of a batched step: {0, n_valid, pos...}.
func batchScalars(pos []int, nvalid int) []int64 {
	b := alignedBytes(8 * BatchScalarsLen(len(pos)))
	s := unsafe.Slice((*int64)(unsafe.Pointer(&b[0])), BatchScalarsLen(len(pos)))
	s[1] = int64(nvalid)
	for t, p := range pos {
		s[2+t] = int64(p)
	}
	return s
}

// ptrTable is a table of row pointers, as the engine fills them.
func ptrTable(bufs [][]float32) []uintptr {
	tbl := make([]uintptr, len(bufs))
	for i, b := range bufs {
		tbl[i] = addr(b)
	}
	return tbl
}

func ropeRowsCase(R, NH, D int, scale float64, pos []int, nvalid int) kcase {
	return kcase{Rope{R: R, NH: NH, D: D, Scale: scale, Rows: true}, func(t *testing.T, l *lib, s Spec) {
		x := randF32(R*NH*D, 31, 2)
		cs := ropeTable(100, D, 10000)
		out := f32buf(len(x))
		sc := batchScalars(pos, nvalid)
		want := ropeRef(x, cs, NH, D, scale, nvalid, func(r int) int { return pos[r] })
		runSplits(t, l, s, []uintptr{addr(out), addr(x), addr(cs), addr(sc)}, func() { clear32(out) },
			func(what string) {
				checkRel(t, what, out[:len(want)], want, 1e-5)
				for i, v := range out[len(want):] {
					if v == v { // clear32 fills NaN
						t.Fatalf("%s: padding element %d written", what, i)
					}
				}
			})
		runtime.KeepAlive(x)
		runtime.KeepAlive(cs)
		runtime.KeepAlive(sc)
	}}
}

// attendRef is one query against keys start..i: those before i from the
// ring kc/vc, key i from kn/vn.
func attendRef(a Attention, q, kn, vn, kc, vc []float32, kvh, i int) []float64 {
	D, HKV := a.D, a.HKV
	start := 0
	if a.Window > 0 {
		start = max(0, i-a.Window+1)
	}
	row := func(j int) (kr, vr []float32) {
		if j == i {
			return kn[kvh*D : (kvh+1)*D], vn[kvh*D : (kvh+1)*D]
		}
		o := ((j%a.CacheLen)*HKV + kvh) * D
		return kc[o : o+D], vc[o : o+D]
	}
	out := make([]float64, D)
	attendKeys(a, q[:D], start, i, func(j, e int) (float64, float64) {
		kr, vr := row(j)
		return float64(kr[e]), float64(vr[e])
	}, out)
	return out
}

func attentionRowsCase(a Attention, pos []int, nvalid int) kcase {
	a.Rows = true
	return kcase{a, func(t *testing.T, l *lib, s Spec) {
		T, HQ, HKV, D, C := a.T, a.HQ, a.HKV, a.D, a.CacheLen
		q := randF32(T*HQ*D, 32, 1)
		k := randF32(T*HKV*D, 33, 1)
		v := randF32(T*HKV*D, 34, 1)
		var kcs, vcs, kc0s, vc0s [][]float32
		for r := 0; r < T; r++ {
			kcs = append(kcs, randF32(C*HKV*D, uint64(40+r), 1))
			vcs = append(vcs, randF32(C*HKV*D, uint64(60+r), 1))
			kc0s = append(kc0s, append([]float32(nil), kcs[r]...))
			vc0s = append(vc0s, append([]float32(nil), vcs[r]...))
		}
		ktbl, vtbl := ptrTable(kcs), ptrTable(vcs)
		out := f32buf(T * HQ * D)
		sc := batchScalars(pos, nvalid)
		want := make([]float64, nvalid*HQ*D)
		for r := 0; r < nvalid; r++ {
			for h := 0; h < HQ; h++ {
				o := attendRef(a, q[(r*HQ+h)*D:], k[r*HKV*D:], v[r*HKV*D:], kcs[r], vcs[r], h/(HQ/HKV), pos[r])
				copy(want[(r*HQ+h)*D:], o)
			}
		}
		runSplits(t, l, s, []uintptr{addr(out), addr(q), addr(k), addr(v), addr(ktbl), addr(vtbl), addr(sc)},
			func() { clear32(out) },
			func(what string) {
				checkRel(t, what, out[:len(want)], want, 1e-5)
				for r := range kcs {
					checkExact(t, fmt.Sprintf("%s row %d kcache untouched", what, r), kcs[r], kc0s[r])
					checkExact(t, fmt.Sprintf("%s row %d vcache untouched", what, r), vcs[r], vc0s[r])
				}
			})
		runtime.KeepAlive(q)
		runtime.KeepAlive(k)
		runtime.KeepAlive(v)
		runtime.KeepAlive(kcs)
		runtime.KeepAlive(vcs)
		runtime.KeepAlive(ktbl)
		runtime.KeepAlive(vtbl)
		runtime.KeepAlive(sc)
	}}
}

func kvStoreRowsCase(T, HKV, D, C int, pos []int, nvalid int) kcase {
	return kcase{KVStoreRows{T: T, HKV: HKV, D: D, CacheLen: C}, func(t *testing.T, l *lib, s Spec) {
		row := HKV * D
		k, v := randF32(T*row, 35, 1), randF32(T*row, 36, 1)
		var kcs, vcs, wantK, wantV [][]float32
		for r := 0; r < T; r++ {
			kcs = append(kcs, f32buf(C*row))
			vcs = append(vcs, f32buf(C*row))
			wantK = append(wantK, randF32(C*row, uint64(80+r), 1))
			wantV = append(wantV, randF32(C*row, uint64(90+r), 1))
		}
		kc0 := make([][]float32, T)
		vc0 := make([][]float32, T)
		for r := 0; r < T; r++ {
			kc0[r] = append([]float32(nil), wantK[r]...)
			vc0[r] = append([]float32(nil), wantV[r]...)
			if r < nvalid {
				slot := pos[r] % C
				copy(wantK[r][slot*row:(slot+1)*row], k[r*row:])
				copy(wantV[r][slot*row:(slot+1)*row], v[r*row:])
			}
		}
		ktbl, vtbl := ptrTable(kcs), ptrTable(vcs)
		sc := batchScalars(pos, nvalid)
		runSplits(t, l, s, []uintptr{addr(ktbl), addr(vtbl), addr(k), addr(v), addr(sc)},
			func() {
				for r := range kcs {
					copy(kcs[r], kc0[r])
					copy(vcs[r], vc0[r])
				}
			},
			func(what string) {
				for r := range kcs {
					// Rows past n_valid keep their caches as they were.
					checkExact(t, fmt.Sprintf("%s row %d k", what, r), kcs[r], wantK[r])
					checkExact(t, fmt.Sprintf("%s row %d v", what, r), vcs[r], wantV[r])
				}
			})
		runtime.KeepAlive(k)
		runtime.KeepAlive(v)
		runtime.KeepAlive(kcs)
		runtime.KeepAlive(vcs)
		runtime.KeepAlive(ktbl)
		runtime.KeepAlive(vtbl)
		runtime.KeepAlive(sc)
	}}
}

func batchCases() []kcase {
	B, H, F := gir.BF16, gir.F16, gir.F32
	var cs []kcase
	// A batched step's matmuls (one tile of every valid row) at every
	// row count, each dtype, odd K and N (masked tails, single columns).
	for n := 1; n <= 4; n++ {
		cs = append(cs, matmulCase(4, 100, 13, B, n, 0), matmulCase(4, 64, 9, F, n, 0))
	}
	cs = append(cs,
		matmulCase(4, 96, 11, H, 3, 0),
		matmulCase(4, 256, 37, B, 4, 30),
		matmulCase(8, 72, 10, B, 6, 0),
		matmulCase(2, 300, 17, F, 2, 0),
		gegluCase(4, 96, 9, B, 4),
		gegluCase(4, 40, 7, F, 2),
		gegluCase(3, 64, 5, H, 3),
		ropeRowsCase(4, 4, 16, 1, []int{3, 0, 17, 9}, 4),
		ropeRowsCase(4, 2, 64, 0.0625, []int{50, 2, 0, 0}, 2),
		// Rows at different positions: before, at and past the window
		// (ring wrap-around), and padding rows that must stay untouched.
		attentionRowsCase(Attention{T: 4, HQ: 4, HKV: 2, D: 16, CacheLen: 32, Scale: 0.25}, []int{0, 7, 31, 12}, 4),
		attentionRowsCase(Attention{T: 4, HQ: 8, HKV: 4, D: 64, Window: 4, CacheLen: 4, Softcap: 50, Scale: 0.125}, []int{2, 3, 9, 40}, 4),
		attentionRowsCase(Attention{T: 4, HQ: 4, HKV: 2, D: 32, Window: 6, CacheLen: 6, Softcap: 5, Scale: 0.5}, []int{20, 1, 0, 0}, 2),
		kvStoreRowsCase(4, 2, 16, 8, []int{3, 8, 0, 21}, 4),
		kvStoreRowsCase(4, 4, 64, 4, []int{5, 9, 0, 0}, 2),
	)
	return cs
}

func TestBatchKernels(t *testing.T) {
	for _, tg := range testTargets() {
		t.Run(tg.Name, func(t *testing.T) {
			cases := batchCases()
			m := NewModule(tg)
			for _, c := range cases {
				m.MustAdd(c.spec)
			}
			l := buildLib(t, m)
			l.lanes = tg.Lanes
			for _, c := range cases {
				t.Run(c.spec.Name(), func(t *testing.T) { c.run(t, l, c.spec) })
			}
		})
	}
}
