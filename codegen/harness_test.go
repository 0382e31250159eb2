package codegen

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
	gir "github.com/gemmac/gemmac/ir"
	"github.com/x448/float16"
)

// ---- building and loading a module ----

type lib struct {
	path  string
	h     uintptr
	syms  map[string]uintptr
	lanes int
	// target is what the library was compiled for: its decode GEMVs may
	// quantise x to bytes (QuantizesActivations).
	target Target
}

// xbits is the width x is quantised to in a kernel of R rows over weights
// of dt that takes x as spec's integers (0: f32): bytes where the library's
// decode GEMVs quantise x themselves.
func (l *lib) xbits(R int, dt gir.DType, spec int) int {
	if R == 1 && l.target.QuantizesActivations(dt) {
		return 8
	}
	return spec
}

// buildLib compiles m, links it with gcc into a shared object (as the runtime
// links the .o files through cgo) and dlopens it. It fails (never skips)
// when LLVM 14 is missing.
func buildLib(tb testing.TB, m *Module) *lib {
	tb.Helper()
	tc, err := FindToolchain()
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "gemmac-codegen-test-")
	if err != nil {
		tb.Fatal(err)
	}
	obj := filepath.Join(dir, "k.o")
	if err := tc.Compile(m, obj, EmitOptions{KeepDir: dir}); err != nil {
		tb.Fatal(err)
	}
	so := filepath.Join(dir, "k.so")
	if out, err := exec.Command("gcc", "-shared", "-o", so, obj, "-lm").CombinedOutput(); err != nil {
		tb.Fatalf("gcc -shared: %v\n%s", err, out)
	}
	h, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		tb.Fatal(err)
	}
	l := &lib{path: so, h: h, syms: map[string]uintptr{}}
	// Resolve every kernel through the table and check it against dlsym.
	tbl, err := purego.Dlsym(h, "gemmac_kernels")
	if err != nil {
		tb.Fatal(err)
	}
	cnt, err := purego.Dlsym(h, "gemmac_kernel_count")
	if err != nil {
		tb.Fatal(err)
	}
	n := **(**int64)(unsafe.Pointer(&cnt)) // cnt is a C address
	if int(n) != m.Len() {
		tb.Fatalf("gemmac_kernel_count = %d, module has %d kernels", n, m.Len())
	}
	fns := unsafe.Slice(*(**uintptr)(unsafe.Pointer(&tbl)), n)
	for i, s := range m.Specs() {
		p, err := purego.Dlsym(h, s.Name())
		if err != nil {
			tb.Fatal(err)
		}
		if fns[i] != p {
			tb.Fatalf("gemmac_kernels[%d] = %#x, dlsym(%s) = %#x", i, fns[i], s.Name(), p)
		}
		l.syms[s.Name()] = p
	}
	return l
}

func (l *lib) call(tb testing.TB, name string, args []uintptr, lo, hi int64) {
	fn, ok := l.syms[name]
	if !ok {
		tb.Fatalf("kernel %s not in the module", name)
	}
	purego.SyscallN(fn, uintptr(unsafe.Pointer(&args[0])), uintptr(lo), uintptr(hi))
	runtime.KeepAlive(args)
}

// splits returns the ways a test runs [0, n): one call; an empty call then
// uneven granule-aligned pieces; arbitrary (unaligned) uneven pieces.
func splits(n, gran int64) [][][2]int64 {
	up := func(x int64) int64 { return min(n, (x+gran-1)/gran*gran) }
	a, b := up(n/5), up(n*3/4)
	s := [][][2]int64{
		{{0, n}},
		{{0, 0}, {0, a}, {a, b}, {b, n}, {n, n}},
	}
	if n >= 3 {
		s = append(s, [][2]int64{{0, 1}, {1, n - 1}, {n - 1, n}})
	}
	return s
}

// ---- aligned buffers ----

func alignedBytes(n int) []byte {
	b := make([]byte, n+64)
	off := (64 - int(uintptr(unsafe.Pointer(&b[0]))%64)) % 64
	return b[off : off+n : off+n]
}

func f32buf(n int) []float32 {
	b := alignedBytes(4 * max(n, 1))
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), max(n, 1))[:n]
}
func u16buf(n int) []uint16 {
	b := alignedBytes(2 * max(n, 1))
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), max(n, 1))[:n]
}
func i32buf(n int) []int32 {
	b := alignedBytes(4 * max(n, 1))
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), max(n, 1))[:n]
}
func scalarsBuf(pos, nvalid int64) []int64 {
	b := alignedBytes(16)
	s := unsafe.Slice((*int64)(unsafe.Pointer(&b[0])), 2)
	s[0], s[1] = pos, nvalid
	return s
}

// addr returns the address of the first element of a slice.
func addr[T any](s []T) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(s))) }

// ---- weights in any dtype ----

// wbuf holds a weight matrix in its storage dtype and its exact f32 values.
type wbuf struct {
	dt   gir.DType
	f32  []float32
	u16  []uint16
	vals []float64 // the values the kernel sees after widening
}

func newWeights(dt gir.DType, src []float32) *wbuf {
	w := &wbuf{dt: dt, vals: make([]float64, len(src))}
	switch dt {
	case gir.F32:
		w.f32 = f32buf(len(src))
		copy(w.f32, src)
		for i, v := range src {
			w.vals[i] = float64(v)
		}
	case gir.BF16:
		w.u16 = u16buf(len(src))
		for i, v := range src {
			w.u16[i] = gir.F32ToBF16(v)
			w.vals[i] = float64(gir.BF16ToF32(w.u16[i]))
		}
	case gir.F16:
		w.u16 = u16buf(len(src))
		for i, v := range src {
			h := float16.Fromfloat32(v)
			w.u16[i] = uint16(h)
			w.vals[i] = float64(h.Float32())
		}
	}
	return w
}

// layPanels lays the f32 weights (n rows of k) out in the panels of a
// kernel of nw matrices; vals keep the rows for references.
func (w *wbuf) layPanels(n, k, nw int) {
	P := PanelColumns(nw)
	laid := f32buf(gir.PanelFloats(n, k, P))
	gir.LayPanels(laid, w.f32, n, k, P, 0, gir.PanelCount(n, P))
	w.f32 = laid
}

func (w *wbuf) addr() uintptr {
	if w.dt == gir.F32 {
		return addr(w.f32)
	}
	return addr(w.u16)
}

// ---- comparison ----

// checkRel fails unless max|got−want| ≤ tol·max|want| over the given indices
// (norm-wise relative error: sums that cancel to ~0 are judged against the
// output's scale).
func checkRel(tb testing.TB, what string, got []float32, want []float64, tol float64) {
	tb.Helper()
	var maxErr, scale float64
	at := -1
	for i := range want {
		scale = math.Max(scale, math.Abs(want[i]))
		if e := math.Abs(float64(got[i]) - want[i]); e > maxErr || math.IsNaN(e) {
			maxErr, at = e, i
			if math.IsNaN(e) {
				maxErr = math.Inf(1)
			}
		}
	}
	if maxErr > tol*scale {
		tb.Fatalf("%s: max error %.3g at %d (got %v, want %v), %.3g relative to max|want| %.3g (tol %g)",
			what, maxErr, at, got[at], want[at], maxErr/scale, scale, tol)
	}
}

// checkElem fails unless every |got−want| ≤ tol·|want| + abs.
func checkElem(tb testing.TB, what string, got []float32, want []float64, tol, abs float64) {
	tb.Helper()
	for i := range want {
		e := math.Abs(float64(got[i]) - want[i])
		if !(e <= tol*math.Abs(want[i])+abs) {
			tb.Fatalf("%s[%d]: got %v, want %v (rel error %.3g, tol %g)", what, i, got[i], want[i], e/math.Abs(want[i]), tol)
		}
	}
}

func checkExact(tb testing.TB, what string, got, want []float32) {
	tb.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			tb.Fatalf("%s[%d]: got %v, want %v", what, i, got[i], want[i])
		}
	}
}

func fill(dst []float32, seed uint64, scale float32) {
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range dst {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		dst[i] = (float32(x>>40)/float32(1<<24)*2 - 1) * scale
	}
}

func randF32(n int, seed uint64, scale float32) []float32 {
	b := f32buf(n)
	fill(b, seed, scale)
	return b
}

func f64s(s []float32) []float64 {
	o := make([]float64, len(s))
	for i, v := range s {
		o[i] = float64(v)
	}
	return o
}

func clear32(s []float32) {
	for i := range s {
		s[i] = float32(math.NaN())
	}
}

func name(s Spec, extra string) string { return fmt.Sprintf("%s/%s", s.Name(), extra) }
