package codegen

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/x448/float16"
	"golang.org/x/sys/unix"

	gir "github.com/gemmac/gemmac/ir"
)

// qdotRef is x · row j of w in float64: with the dequantised weights (bits
// 0), or as the integer dot product kernels compute it: x quantised per
// block of 32 to bits (Q = 127 or 32767, d = amax/Q in f32, q = x·(Q/amax)
// rounded to even), and Σ_b d_w·d_x·Σ q_w·q_x.
func qdotRef(x []float32, w *qbuf, j int, bits int) float64 {
	K := len(x)
	var acc float64
	if bits == 0 {
		for k := range x {
			acc += float64(x[k]) * w.vals[j*K+k]
		}
		return acc
	}
	for b := 0; b < K/gir.QK; b++ {
		blk := x[b*gir.QK : (b+1)*gir.QK]
		var amax float32
		for _, v := range blk {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		Q := float32(int(1)<<(bits-1) - 1)
		var inv float32
		if amax > 0 {
			inv = Q / amax
		}
		// The weights' integers: dequantised values over the block's
		// stored scale (exact).
		dw := w.scale(j, b)
		var dot float64
		for i, v := range blk {
			q := math.RoundToEven(float64(v * inv))
			if dw != 0 {
				dot += q * math.Round(w.vals[j*K+b*gir.QK+i]/dw)
			}
		}
		acc += dw * float64(amax/Q) * dot
	}
	return acc
}

// qbuf is a quantised weight matrix: its blocks (ending where an
// inaccessible page begins) and the dequantised values in float64.
type qbuf struct {
	dt   gir.DType
	cols int
	data []byte
	vals []float64
}

// newQWeights quantises rows×cols values (cols a multiple of 32) with
// llama.cpp's rounding and dequantises them back with ir.DequantizeRow.
func newQWeights(t testing.TB, dt gir.DType, rows, cols int, src []float32) *qbuf {
	t.Helper()
	q, err := gir.Quantize(dt, gir.Shape{rows, cols}, src)
	if err != nil {
		t.Fatal(err)
	}
	w := &qbuf{dt: dt, cols: cols, data: guardedBytes(t, len(q.Data)), vals: make([]float64, rows*cols)}
	copy(w.data, q.Data)
	deq := make([]float32, rows*cols)
	if err := gir.DequantizeRow(dt, q.Data, deq); err != nil {
		t.Fatal(err)
	}
	for i, v := range deq {
		w.vals[i] = float64(v)
	}
	return w
}

func (w *qbuf) addr() uintptr { return addr(w.data) }

// guardedBytes returns n bytes that end where an inaccessible page begins,
// so a kernel that reads past the end of its weights faults in the test.
func guardedBytes(t testing.TB, n int) []byte {
	t.Helper()
	page := unix.Getpagesize()
	size := (n+page-1)/page*page + page
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mprotect(mem[size-page:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem[size-page-n : size-page : size-page]
}

// scale is the f16 scale of block b of row j, widened.
func (w *qbuf) scale(j, b int) float64 {
	bb := w.dt.BlockBytes()
	off := (j*w.cols/gir.QK + b) * bb
	return float64(float16.Frombits(uint16(w.data[off]) | uint16(w.data[off+1])<<8).Float32())
}

func qmatmulCase(R, K, N int, dt gir.DType, nvalid int, softcap float64) kcase {
	return qmatmulSpecCase(QMatmul{R: R, K: K, N: N, WType: dt, Softcap: softcap}, nvalid)
}

// qmatmulSpecCase checks s (with XBits, x goes through the QuantizeRows
// kernel first) against qdotRef.
func qmatmulSpecCase(spec QMatmul, nvalid int) kcase {
	R, K, N, dt, softcap := spec.R, spec.K, spec.N, spec.WType, spec.Softcap
	return kcase{spec, func(t *testing.T, l *lib, s Spec) {
		xs := float32(1)
		if softcap > 0 {
			xs = 4
		}
		x := randF32(R*K, 1, xs)
		w := newQWeights(t, dt, N, K, randF32(N*K, 2, 1))
		out := f32buf(R * N)
		sc := scalarsBuf(3, int64(nvalid))
		want := make([]float64, nvalid*N)
		for r := 0; r < nvalid; r++ {
			xr := x[r*K : (r+1)*K]
			for j := 0; j < N; j++ {
				acc := qdotRef(xr, w, j, l.xbits(R, dt, spec.XBits))
				if softcap > 0 {
					acc = softcap * math.Tanh(acc/softcap)
				}
				want[r*N+j] = acc
			}
		}
		xa := xArg(t, l, spec.XBits, x, R, K, nvalid)
		runSplits(t, l, s, []uintptr{addr(out), xa, w.addr(), addr(sc)}, func() { clear32(out) },
			func(what string) {
				checkRel(t, what, out[:nvalid*N], want, 1e-5)
				checkUntouched(t, what, out[nvalid*N:])
			})
		runtime.KeepAlive(x)
		runtime.KeepAlive(w)
		runtime.KeepAlive(sc)
	}}
}

func qgegluCase(R, K, F int, dt gir.DType, nvalid int) kcase {
	return qgegluSpecCase(QGeGLU{R: R, K: K, F: F, WType: dt}, nvalid)
}

func qgegluSpecCase(spec QGeGLU, nvalid int) kcase {
	R, K, F, dt := spec.R, spec.K, spec.F, spec.WType
	return kcase{spec, func(t *testing.T, l *lib, s Spec) {
		x := randF32(R*K, 3, 1)
		wg := newQWeights(t, dt, F, K, randF32(F*K, 4, 0.5))
		wu := newQWeights(t, dt, F, K, randF32(F*K, 5, 0.5))
		out := f32buf(R * F)
		sc := scalarsBuf(0, int64(nvalid))
		want := make([]float64, nvalid*F)
		for r := 0; r < nvalid; r++ {
			xr := x[r*K : (r+1)*K]
			for j := 0; j < F; j++ {
				bits := l.xbits(R, dt, spec.XBits)
				want[r*F+j] = gelu64(qdotRef(xr, wg, j, bits)) * qdotRef(xr, wu, j, bits)
			}
		}
		xa := xArg(t, l, spec.XBits, x, R, K, nvalid)
		runSplits(t, l, s, []uintptr{addr(out), xa, wg.addr(), wu.addr(), addr(sc)}, func() { clear32(out) },
			func(what string) {
				checkRel(t, what, out[:nvalid*F], want, 1e-5)
				checkUntouched(t, what, out[nvalid*F:])
			})
		runtime.KeepAlive(x)
		runtime.KeepAlive(wg)
		runtime.KeepAlive(wu)
		runtime.KeepAlive(sc)
	}}
}

// qembedCase checks Embed on a quantised table: bit for bit (q·d)·scale.
func qembedCase(R, H, V int, dt gir.DType, scale float64, nvalid int) kcase {
	return kcase{Embed{R: R, H: H, V: V, TType: dt, Scale: scale}, func(t *testing.T, l *lib, s Spec) {
		tbl := newQWeights(t, dt, V, H, randF32(V*H, 12, 1))
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
			func(what string) {
				checkExact(t, what, out[:nvalid*H], want)
				checkUntouched(t, what, out[nvalid*H:])
			})
		runtime.KeepAlive(tbl)
		runtime.KeepAlive(ids)
		runtime.KeepAlive(sc)
	}}
}

// checkUntouched fails unless every element still holds clear32's NaN
// (rows ≥ n_valid are never written).
func checkUntouched(tb testing.TB, what string, s []float32) {
	tb.Helper()
	for i, v := range s {
		if v == v {
			tb.Fatalf("%s: element %d past the valid rows was written (%v)", what, i, v)
		}
	}
}

// xArg is the x argument of a quantised matmul: x itself or, with xbits,
// its first nvalid rows quantised by the module's QuantizeRows kernel (kept
// alive by the test's cleanup).
func xArg(t *testing.T, l *lib, xbits int, x []float32, R, K, nvalid int) uintptr {
	if xbits == 0 {
		return addr(x)
	}
	xq := alignedBytes(int(QuantizedRowsBytes(R, K, xbits)))
	l.call(t, QuantizeRows{R: R, K: K, Bits: xbits}.Name(), []uintptr{addr(xq), addr(x)}, 0, int64(nvalid))
	t.Cleanup(func() { runtime.KeepAlive(xq) })
	return addr(xq)
}

// quantizeRowsCase checks QuantizeRows against llama.cpp's q8_0 rounding
// (bits 8: d = amax/127, q = x·(127/amax) to even) and the corrections
// −8·Σq, or the same to 16 bits in the word panels' order, row by row.
func quantizeRowsCase(R, K, bits int) kcase {
	return kcase{QuantizeRows{R: R, K: K, Bits: bits}, func(t *testing.T, l *lib, s Spec) {
		x := randF32(R*K, 7, 3)
		x[5] = 0 // a row's blocks include an all-zero one
		for i := 0; i < gir.QK; i++ {
			x[K+i] = 0
		}
		nb := K / gir.QK
		Q := float32(int(1)<<(bits-1) - 1)
		xq := alignedBytes(int(QuantizedRowsBytes(R, K, bits)))
		l.call(t, s.Name(), []uintptr{addr(xq), addr(x)}, 0, int64(R))
		scales := xq[R*K*bits/8:]
		for r := 0; r < R; r++ {
			for b := 0; b < nb; b++ {
				blk := x[(r*K + b*gir.QK):][:gir.QK]
				var amax float32
				for _, v := range blk {
					amax = max(amax, float32(math.Abs(float64(v))))
				}
				var sum int32
				for i := range blk {
					k, got := i, int32(int8(xq[r*K+b*gir.QK+i]))
					if bits == 16 {
						k = wordOrderK(i)
						got = int32(int16(binary.LittleEndian.Uint16(xq[2*(r*K+b*gir.QK+i):])))
					}
					var q int32
					if amax > 0 {
						q = int32(math.RoundToEven(float64(blk[k] * (Q / amax))))
					}
					sum += q
					if got != q {
						t.Fatalf("row %d block %d: x_q of k = %d is %d, want %d", r, b, k, got, q)
					}
				}
				d := math.Float32frombits(binary.LittleEndian.Uint32(scales[4*(r*nb+b):]))
				if d != amax/Q {
					t.Fatalf("row %d block %d: scale %g, want %g", r, b, d, amax/Q)
				}
				if bits == 8 {
					if c := int32(binary.LittleEndian.Uint32(scales[4*R*nb+4*(r*nb+b):])); c != -8*sum {
						t.Fatalf("row %d block %d: correction %d, want %d", r, b, c, -8*sum)
					}
				}
			}
		}
		runtime.KeepAlive(x)
	}}
}

// intPanelCases are the prefill kernels that take x as integers, for
// targets with VNNI (q4_0 as bytes, q8_0 as words): K blocks of 16 and 9
// blocks (bytes; 8 and 1 for words) with the softcap after the last, masked
// panels, row remainders, and the GeGLU's partial sums.
func intPanelCases() []kcase {
	var cs []kcase
	for _, c := range []struct {
		dt   gir.DType
		bits int
	}{{gir.Q4_0, 8}, {gir.Q8_0, 16}} {
		dt, bits := c.dt, c.bits
		cs = append(cs,
			quantizeRowsCase(20, 800, bits),
			quantizeRowsCase(13, 1024, bits),
			quantizeRowsCase(10, 2304, bits),
			qmatmulSpecCase(QMatmul{R: 20, K: 800, N: 70, WType: dt, Softcap: 30, XBits: bits}, 19),
			qmatmulSpecCase(QMatmul{R: 13, K: 1024, N: 150, WType: dt, XBits: bits}, 13),
			qgegluSpecCase(QGeGLU{R: 10, K: 2304, F: 40, WType: dt, XBits: bits}, 8),
			qgegluSpecCase(QGeGLU{R: 13, K: 1024, F: 70, WType: dt, XBits: bits}, 12),
		)
	}
	return cs
}

func quantCases() []kcase {
	Q8, Q4 := gir.Q8_0, gir.Q4_0
	var cs []kcase
	for _, dt := range []gir.DType{Q8, Q4} {
		cs = append(cs,
			qmatmulCase(1, 64, 7, dt, 1, 0),
			qmatmulCase(1, 96, 13, dt, 1, 0),
			qmatmulCase(1, 2304, 19, dt, 1, 0),
			// q4_0 decode (byte dot products): an odd block count and a
			// masked last chunk, whole periods of 9 chunks and no tail.
			qmatmulCase(1, 160, 9, dt, 1, 0),
			qmatmulCase(1, 2048, 7, dt, 1, 0),
			qmatmulCase(1, 288, 17, dt, 1, 0),
			// Decode: granule-aligned pieces of whole column tiles of
			// either path (3 and 8 rows) and a tail.
			qmatmulCase(1, 160, 53, dt, 1, 0),
			qmatmulCase(1, 96, 11, dt, 1, 30),
			qmatmulCase(5, 64, 11, dt, 4, 0),
			qmatmulCase(5, 96, 9, dt, 5, 30),
			qmatmulCase(5, 2304, 7, dt, 3, 0),
			qmatmulCase(16, 96, 6, dt, 13, 0),
			// Prefill (panels): K blocks of whole q blocks, a column tail,
			// rows left over from the row tiles.
			qmatmulCase(16, 2304, 13, dt, 11, 0),
			qmatmulCase(12, 4608, 7, dt, 12, 30),
			qgegluCase(16, 2304, 9, dt, 14),
			qmatmulCase(13, 1024, 150, dt, 13, 0), // prefill panels: two whole and a masked one
			qgegluCase(9, 320, 70, dt, 9),
			qgegluCase(10, 160, 5, dt, 9),
			qgegluCase(1, 64, 7, dt, 1),
			qgegluCase(1, 2304, 9, dt, 1),
			qgegluCase(1, 288, 5, dt, 1),
			qgegluCase(5, 96, 9, dt, 3),
			qgegluCase(5, 2304, 5, dt, 5),
			qembedCase(5, 64, 50, dt, 8, 4),
			qembedCase(1, 2304, 3, dt, 48, 1),
		)
	}
	return cs
}

func TestQuantKernels(t *testing.T) {
	targets := testTargets()
	if targets[0].hasVNNI() {
		// The f32-activation decode kernels, as x86-64-v4 without VNNI
		// runs them.
		v4, _ := TargetByName("x86-64-v4")
		targets = append(targets, v4)
	}
	runCases(t, targets, quantCases())
	if targets[0].hasVNNI() {
		runCases(t, targets[:1], intPanelCases())
	}
}

// TestQuantCrossCompile checks that the quantised kernels compile for
// AArch64 (NEON).
func TestQuantCrossCompile(t *testing.T) {
	tc, err := FindToolchain()
	if err != nil {
		t.Fatal(err)
	}
	tg, err := TargetByName("aarch64")
	if err != nil {
		t.Fatal(err)
	}
	m := NewModule(tg)
	for _, c := range quantCases() {
		m.MustAdd(c.spec)
	}
	if err := tc.Compile(m, t.TempDir()+"/q_arm64.o", EmitOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestQuantValidate(t *testing.T) {
	bad := []Spec{
		QMatmul{R: 1, K: 48, N: 4, WType: gir.Q8_0},
		QMatmul{R: 1, K: 64, N: 4, WType: gir.BF16},
		QMatmul{R: 1, K: 64, N: 4, WType: gir.Q4_0, Softcap: -1},
		QGeGLU{R: 1, K: 40, F: 4, WType: gir.Q4_0},
		QGeGLU{R: 0, K: 64, F: 4, WType: gir.Q4_0},
		QMatmul{R: 128, K: 64, N: 4, WType: gir.Q8_0, XBits: 8},
		QMatmul{R: 128, K: 64, N: 4, WType: gir.Q4_0, XBits: 16},
		QGeGLU{R: 1, K: 64, F: 4, WType: gir.Q4_0, XBits: 8},
		QuantizeRows{R: 4, K: 64, Bits: 4},
		Embed{R: 1, H: 48, V: 4, TType: gir.Q8_0, Scale: 1},
	}
	for _, s := range bad {
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", s.Name())
		}
	}
}

// ---- benchmarks: the 2B decode shape (K=2304, N=9216), weight GB/s via
// b.SetBytes, comparable with BenchmarkProbeRead ----

var (
	qbenchOnce sync.Once
	qbenchLib  *lib
	qbenchSpec = map[string]Spec{
		"q8_0":       QMatmul{R: 1, K: 2304, N: 9216, WType: gir.Q8_0},
		"q4_0":       QMatmul{R: 1, K: 2304, N: 9216, WType: gir.Q4_0},
		"geglu_q8_0": QGeGLU{R: 1, K: 2304, F: 9216, WType: gir.Q8_0},
		"geglu_q4_0": QGeGLU{R: 1, K: 2304, F: 9216, WType: gir.Q4_0},
		"down_q8_0":  QMatmul{R: 1, K: 9216, N: 2304, WType: gir.Q8_0},
		"down_q4_0":  QMatmul{R: 1, K: 9216, N: 2304, WType: gir.Q4_0},
		"l2_q8_0":    QMatmul{R: 1, K: 2304, N: 256, WType: gir.Q8_0},
		"l2_q4_0":    QMatmul{R: 1, K: 2304, N: 256, WType: gir.Q4_0},
		"prefill_q8": QMatmul{R: 128, K: 2304, N: 2304, WType: gir.Q8_0},
		"prefill_q4": QMatmul{R: 128, K: 2304, N: 2304, WType: gir.Q4_0},
		"geglu_p_q8": QGeGLU{R: 128, K: 2304, F: 2304, WType: gir.Q8_0},
		"geglu_p_q4": QGeGLU{R: 128, K: 2304, F: 2304, WType: gir.Q4_0},
		"down_p_q4":  QMatmul{R: 128, K: 9216, N: 2304, WType: gir.Q4_0},
		"down_p_q8":  QMatmul{R: 128, K: 9216, N: 2304, WType: gir.Q8_0},
		// The integer panels (VNNI targets), with QuantizeRows of their x.
		"prefill_q4x":  QMatmul{R: 128, K: 2304, N: 2304, WType: gir.Q4_0, XBits: 8},
		"geglu_p_q4x":  QGeGLU{R: 128, K: 2304, F: 2304, WType: gir.Q4_0, XBits: 8},
		"down_p_q4x":   QMatmul{R: 128, K: 9216, N: 2304, WType: gir.Q4_0, XBits: 8},
		"prefill_q8x":  QMatmul{R: 128, K: 2304, N: 2304, WType: gir.Q8_0, XBits: 16},
		"geglu_p_q8x":  QGeGLU{R: 128, K: 2304, F: 2304, WType: gir.Q8_0, XBits: 16},
		"down_p_q8x":   QMatmul{R: 128, K: 9216, N: 2304, WType: gir.Q8_0, XBits: 16},
		"quantize_x":   QuantizeRows{R: 128, K: 2304, Bits: 8},
		"quantize_xd":  QuantizeRows{R: 128, K: 9216, Bits: 8},
		"quantize_xw":  QuantizeRows{R: 128, K: 2304, Bits: 16},
		"quantize_xdw": QuantizeRows{R: 128, K: 9216, Bits: 16},
	}
)

func getQBenchLib(b *testing.B) *lib {
	qbenchOnce.Do(func() {
		for i, e := range []string{"GEMMAC_QNC1", "GEMMAC_QNC2"} {
			if v := os.Getenv(e); v != "" {
				qDecodeNC[i], _ = strconv.Atoi(v)
			}
		}
		for i, e := range []string{"GEMMAC_QTILE1", "GEMMAC_QTILE2"} {
			if v := os.Getenv(e); v != "" {
				fmt.Sscanf(v, "%dx%d", &qBatchTile[i][0], &qBatchTile[i][1])
			}
		}
		panelKnobs()
		if v := os.Getenv("GEMMAC_I8R"); v != "" {
			intPanelRows, _ = strconv.Atoi(v)
		}
		if v := os.Getenv("GEMMAC_I8K"); v != "" {
			intPanelK, _ = strconv.Atoi(v)
		}
		if v := os.Getenv("GEMMAC_I8NC"); v != "" {
			fmt.Sscanf(v, "%d,%d", &int8DecodeNC[0], &int8DecodeNC[1])
		}
		if os.Getenv("GEMMAC_INT8") == "0" {
			int8Decode = false
		}
		m := NewModule(HostTarget())
		for _, s := range qbenchSpec {
			if xbits(s) != 0 && !m.Target.hasVNNI() {
				continue
			}
			m.MustAdd(s)
		}
		qbenchLib = buildLib(b, m)
		qbenchLib.lanes = m.Target.Lanes
		qbenchLib.target = m.Target
	})
	if qbenchLib == nil {
		b.Fatal("benchmark library failed to build")
	}
	return qbenchLib
}

// benchQ runs a quantised kernel on weights from the benchmark arena (its
// u16 read as f16 scales are normal numbers, so every block is valid),
// rotating through distinct copies for decode (and, with GEMMAC_COLD=1, for
// prefill) as benchGemm does.
func benchQ(b *testing.B, key string, threads int) {
	l := getQBenchLib(b)
	s := qbenchSpec[key]
	R, K, N, nw, wb := gemmDims(s)
	flops := s.(interface{ FLOPs() int64 }).FLOPs()
	bits := xbits(s)
	if bits != 0 && !l.target.hasVNNI() {
		b.Skip("integer panels need VNNI")
	}
	argv, keep := arenaArgs(R, K, N, nw, wb, R == 1 && !strings.HasPrefix(key, "l2_") || R > 1 && os.Getenv("GEMMAC_COLD") != "")
	if bits != 0 {
		x := keep[0].([]float32) // arenaArgs' x
		xq := alignedBytes(int(QuantizedRowsBytes(R, K, bits)))
		l.call(b, QuantizeRows{R: R, K: K, Bits: bits}.Name(), []uintptr{addr(xq), addr(x)}, 0, int64(R))
		for _, a := range argv {
			a[1] = addr(xq)
		}
		keep = append(keep, xq)
	}
	runKernelBench(b, l, s, argv, threads, wb*int64(nw), flops)
	runtime.KeepAlive(keep)
}

// xbits is the width of the integers s takes x as (0: f32).
func xbits(s Spec) int {
	switch s := s.(type) {
	case QMatmul:
		return s.XBits
	case QGeGLU:
		return s.XBits
	}
	return 0
}

func BenchmarkQGEMVDecodeQ8_0(b *testing.B) { benchQ(b, "q8_0", 1) }

// The decode GEMV on weights that stay in L2: the kernel's compute bound.
func BenchmarkQGEMVInL2Q8_0(b *testing.B)       { benchQ(b, "l2_q8_0", 1) }
func BenchmarkQGEMVInL2Q4_0(b *testing.B)       { benchQ(b, "l2_q4_0", 1) }
func BenchmarkQGEMVDecodeQ8_0_2T(b *testing.B)  { benchQ(b, "q8_0", 2) }
func BenchmarkQGEMVDecodeQ4_0(b *testing.B)     { benchQ(b, "q4_0", 1) }
func BenchmarkQGEMVDecodeQ4_0_2T(b *testing.B)  { benchQ(b, "q4_0", 2) }
func BenchmarkQGeGLUDecodeQ8_0(b *testing.B)    { benchQ(b, "geglu_q8_0", 1) }
func BenchmarkQGeGLUDecodeQ4_0(b *testing.B)    { benchQ(b, "geglu_q4_0", 1) }
func BenchmarkQGeGLUDecodeQ8_0_2T(b *testing.B) { benchQ(b, "geglu_q8_0", 2) }
func BenchmarkQGeGLUDecodeQ4_0_2T(b *testing.B) { benchQ(b, "geglu_q4_0", 2) }
func BenchmarkQDownDecodeQ8_0_2T(b *testing.B)  { benchQ(b, "down_q8_0", 2) }
func BenchmarkQDownDecodeQ4_0_2T(b *testing.B)  { benchQ(b, "down_q4_0", 2) }
func BenchmarkQGEMMPrefillQ8_0(b *testing.B)    { benchQ(b, "prefill_q8", 1) }
func BenchmarkQGeGLUPrefillQ8_0(b *testing.B)   { benchQ(b, "geglu_p_q8", 1) }
func BenchmarkQGeGLUPrefillQ4_0(b *testing.B)   { benchQ(b, "geglu_p_q4", 1) }
func BenchmarkQGEMMPrefillQ4_0(b *testing.B)    { benchQ(b, "prefill_q4", 1) }
func BenchmarkQDownPrefillQ4_0(b *testing.B)    { benchQ(b, "down_p_q4", 1) }
func BenchmarkQDownPrefillQ8_0(b *testing.B)    { benchQ(b, "down_p_q8", 1) }

// The byte panels, and QuantizeRows of the q/k/v/o/GeGLU and the down
// projections' x (128 rows).
func BenchmarkQGEMMPrefillQ4_0Bytes(b *testing.B)  { benchQ(b, "prefill_q4x", 1) }
func BenchmarkQGeGLUPrefillQ4_0Bytes(b *testing.B) { benchQ(b, "geglu_p_q4x", 1) }
func BenchmarkQDownPrefillQ4_0Bytes(b *testing.B)  { benchQ(b, "down_p_q4x", 1) }
func BenchmarkQGEMMPrefillQ8_0Words(b *testing.B)  { benchQ(b, "prefill_q8x", 1) }
func BenchmarkQGeGLUPrefillQ8_0Words(b *testing.B) { benchQ(b, "geglu_p_q8x", 1) }
func BenchmarkQDownPrefillQ8_0Words(b *testing.B)  { benchQ(b, "down_p_q8x", 1) }
func BenchmarkQuantizeRows(b *testing.B)           { benchQuantizeRows(b, "quantize_x") }
func BenchmarkQuantizeRowsWords(b *testing.B)      { benchQuantizeRows(b, "quantize_xw") }
func BenchmarkQuantizeRowsDown(b *testing.B)       { benchQuantizeRows(b, "quantize_xd") }

func benchQuantizeRows(b *testing.B, key string) {
	l := getQBenchLib(b)
	s := qbenchSpec[key].(QuantizeRows)
	x := randF32(s.R*s.K, 1, 1)
	xq := alignedBytes(int(QuantizedRowsBytes(s.R, s.K, s.Bits)))
	b.SetBytes(int64(s.R*s.K) * 4)
	for i := 0; i < b.N; i++ {
		l.call(b, s.Name(), []uintptr{addr(xq), addr(x)}, 0, int64(s.R))
	}
	runtime.KeepAlive(x)
	runtime.KeepAlive(xq)
}
func BenchmarkQGEMMPrefillQ8_0_2T(b *testing.B) { benchQ(b, "prefill_q8", 2) }
