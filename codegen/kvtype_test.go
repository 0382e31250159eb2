package codegen

import (
	"runtime"
	"testing"

	gir "github.com/gemmac/gemmac/ir"
)

// kvStoreBF16Case checks that KVStore rounds each valid row into its slot
// exactly as ir.F32ToBF16 does and touches nothing else.
func kvStoreBF16Case(T, HKV, D, C, pos, nvalid int) kcase {
	return kcase{KVStore{T: T, HKV: HKV, D: D, CacheLen: C, KV: gir.BF16}, func(t *testing.T, l *lib, s Spec) {
		row := HKV * D
		k, v := randF32(T*row, 21, 3), randF32(T*row, 22, 3)
		kc, vc := u16buf(C*row), u16buf(C*row)
		sc := scalarsBuf(int64(pos), int64(nvalid))
		const sentinel = 0xdead
		wantK, wantV := make([]uint16, C*row), make([]uint16, C*row)
		for i := range wantK {
			wantK[i], wantV[i] = sentinel, sentinel
		}
		for r := max(0, nvalid-C); r < nvalid; r++ {
			slot := (pos + r) % C
			for e := 0; e < row; e++ {
				wantK[slot*row+e] = gir.F32ToBF16(k[r*row+e])
				wantV[slot*row+e] = gir.F32ToBF16(v[r*row+e])
			}
		}
		runSplits(t, l, s, []uintptr{addr(kc), addr(vc), addr(k), addr(v), addr(sc)},
			func() {
				for i := range kc {
					kc[i], vc[i] = sentinel, sentinel
				}
			},
			func(what string) {
				for i := range kc {
					if kc[i] != wantK[i] || vc[i] != wantV[i] {
						t.Fatalf("%s: element %d: k %#x v %#x, want %#x %#x", what, i, kc[i], vc[i], wantK[i], wantV[i])
					}
				}
			})
		runtime.KeepAlive(k)
		runtime.KeepAlive(v)
		runtime.KeepAlive(sc)
	}}
}

func TestKVCacheBF16Kernels(t *testing.T) {
	cases := []kcase{
		kvStoreBF16Case(5, 2, 16, 32, 30, 4),
		kvStoreBF16Case(8, 4, 64, 4, 10, 7),
		attentionCase(Attention{T: 5, HQ: 4, HKV: 2, D: 16, CacheLen: 32, Scale: 0.25, KV: gir.BF16}, 7, 4),
		attentionCase(Attention{T: 1, HQ: 8, HKV: 4, D: 256, CacheLen: 40, Softcap: 50, Scale: 1.0 / 16, KV: gir.BF16}, 33, 1),
		attentionCase(Attention{T: 1, HQ: 4, HKV: 2, D: 64, Window: 6, CacheLen: 6, Softcap: 5, Scale: 0.5, KV: gir.BF16}, 20, 1),
	}
	runCases(t, testTargets(), cases)
	if err := (KVStore{T: 1, HKV: 1, D: 16, CacheLen: 1, KV: gir.Q8_0}).Validate(); err == nil {
		t.Error("a q8_0 KV cache was accepted")
	}
}
