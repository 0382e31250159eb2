package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"unsafe"

	"github.com/gemmac/gemmac/codegen/ptx"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/cuda"
)

// KernelCheck is one kernel run alone on random inputs against a float64
// host reference, and timed.
type KernelCheck struct {
	Kernel string  `json:"kernel"`
	RelErr float64 `json:"rel_err"`
	Tol    float64 `json:"tolerance"`
	Pass   bool    `json:"pass"`
	Ms     float64 `json:"ms,omitempty"`
	TFLOPs float64 `json:"tflop_s,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// mmaCase is a tensor-core matmul with the rows it is told are valid.
type mmaCase struct {
	spec   ptx.MMA
	nvalid int
	timed  bool
}

// mmaCases cover the 2B prefill shapes (timed, both rounding modes) and
// ragged edges: rows past n_valid, a last row block and column block that
// are partly outside R and N, both block heights.
func mmaCases() []mmaCase {
	var cs []mmaCase
	for _, exact := range []bool{true, false} {
		cs = append(cs,
			mmaCase{ptx.MMA{R: 512, K: 2304, N: 2048, Exact: exact}, 512, true},
			mmaCase{ptx.MMA{R: 512, K: 2304, N: 4096, Split: []int{2048, 1024, 1024}, Exact: exact}, 512, true},
			mmaCase{ptx.MMA{R: 40, K: 64, N: 192, Split: []int{64, 128}, Exact: exact}, 37, false},
			mmaCase{ptx.MMA{R: 512, K: 2304, N: 9216, GeGLU: true, Exact: exact}, 512, true},
			mmaCase{ptx.MMA{R: 512, K: 9216, N: 2304, Exact: exact}, 512, true},
			mmaCase{ptx.MMA{R: 512, K: 2304, N: 32768, Softcap: 30, Exact: exact}, 512, true},
			mmaCase{ptx.MMA{R: 40, K: 64, N: 72, Exact: exact}, 37, false},
			mmaCase{ptx.MMA{R: 200, K: 128, N: 8192, Exact: exact}, 190, false},
			mmaCase{ptx.MMA{R: 50, K: 48, N: 24, GeGLU: true, Exact: exact}, 45, false},
		)
	}
	return cs
}

func mmaModule() (*ptx.Module, error) {
	m := ptx.NewModule(ptx.DefaultTarget)
	for _, c := range mmaCases() {
		if _, err := m.Add(c.spec); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// deviceBufs are the device buffers of one check, freed together.
type deviceBufs struct {
	dv   *cuda.Device
	list []*cuda.Buffer
}

func (d *deviceBufs) alloc(n int64) (*cuda.Buffer, error) {
	b, err := d.dv.NewBuffer(n)
	if err == nil {
		d.list = append(d.list, b)
	}
	return b, err
}

// upload allocates a buffer holding data.
func (d *deviceBufs) upload(data []byte) (*cuda.Buffer, error) {
	b, err := d.alloc(int64(len(data)))
	if err != nil {
		return nil, err
	}
	return b, b.Write(data)
}

func (d *deviceBufs) free() {
	for _, b := range d.list {
		b.Free()
	}
}

// loadModule builds a module of single kernels, takes its PTX from the
// cache (or llc) and loads it.
func loadModule(dv *cuda.Device, build func() (*ptx.Module, error)) (*cuda.Kernels, error) {
	m, err := build()
	if err != nil {
		return nil, err
	}
	src, err := m.PTX(*ptxCache)
	if err != nil {
		return nil, err
	}
	return dv.LoadKernels(src)
}

// checkKernels runs every mmaCase on the device.
func checkKernels(dv *cuda.Device) ([]KernelCheck, error) {
	ks, err := loadModule(dv, mmaModule)
	if err != nil {
		return nil, err
	}
	defer ks.Close()
	var out []KernelCheck
	for _, c := range mmaCases() {
		r := runMMA(ks, dv, c)
		fmt.Printf("| %s | %.2g | %.0e | %.3f | %.1f | %v %s |\n", r.Kernel, r.RelErr, r.Tol, r.Ms, r.TFLOPs, r.Pass, r.Error)
		out = append(out, r)
	}
	return out, nil
}

func runMMA(ks *cuda.Kernels, dv *cuda.Device, c mmaCase) (res KernelCheck) {
	s := c.spec
	res.Kernel, res.Tol = s.Name(), 1e-4
	fail := func(err error) KernelCheck {
		res.Error = err.Error()
		return res
	}
	rng := rand.New(rand.NewPCG(uint64(s.R*7+s.N), uint64(s.K)))
	nw := 1
	if s.GeGLU {
		nw = 2
	}
	// parts are the outputs: one of N columns, or one per Split part, each
	// with its own weight matrix.
	parts := []int{s.N}
	if len(s.Split) > 0 {
		parts, nw = s.Split, len(s.Split)
	}
	x := make([]float32, s.R*s.K)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ws := make([][]uint16, nw)
	for i := range ws {
		n := s.N
		if len(s.Split) > 0 {
			n = s.Split[i]
		}
		ws[i] = make([]uint16, n*s.K)
		for j := range ws[i] {
			ws[i][j] = uint16(math.Float32bits(float32(rng.NormFloat64()*0.05)) >> 16)
		}
	}
	bufs := &deviceBufs{dv: dv}
	defer bufs.free()
	upload := bufs.upload
	var args, outs []*cuda.Buffer
	for _, n := range parts {
		poison := make([]byte, s.R*n*4)
		for i := range poison {
			poison[i] = 0xff // NaN: rows the kernel must not write stay so
		}
		b, err := upload(poison)
		if err != nil {
			return fail(err)
		}
		outs = append(outs, b)
	}
	args = append(args, outs...)
	xB, err := upload(bytesOf(x))
	if err != nil {
		return fail(err)
	}
	args = append(args, xB)
	for _, w := range ws {
		b, err := upload(bytesOf(w))
		if err != nil {
			return fail(err)
		}
		args = append(args, b)
	}
	sc, err := upload(bytesOf([]int64{0, int64(c.nvalid)}))
	if err != nil {
		return fail(err)
	}
	args = append(args, sc)
	l := s.Launch()
	reps := 0
	if c.timed {
		reps = 20
	}
	secs, err := ks.Launch(s.Name(), l.Grid, l.Block, l.Shared, reps, args...)
	if err != nil {
		return fail(err)
	}
	if c.timed {
		res.Ms = secs * 1e3
		flops := 2 * float64(s.R) * float64(s.K) * float64(s.N)
		if s.GeGLU {
			flops *= 2
		}
		res.TFLOPs = flops / secs / 1e12
	}
	gots := make([][]float32, len(parts))
	for i, n := range parts {
		gots[i] = make([]float32, s.R*n)
		if err := outs[i].Read(bytesOf(gots[i])); err != nil {
			return fail(err)
		}
	}
	// The reference sees x as the kernel multiplies it: rounded to bf16
	// unless Exact (then the hi+lo split keeps ~16 bits, inside tolerance).
	xr := x
	if !s.Exact {
		xr = make([]float32, len(x))
		for i, v := range x {
			xr[i] = roundBF16(v)
		}
	}
	rows := []int{0, c.nvalid - 1, rng.IntN(c.nvalid), rng.IntN(c.nvalid)}
	colStep := 1
	if s.N > 10000 {
		colStep = 13
	}
	var maxErr, maxRef float64
	for pi, N := range parts {
		got := gots[pi]
		for _, r := range rows {
			for n := 0; n < N; n += colStep {
				y := refOutput(xr[r*s.K:(r+1)*s.K], ws, pi, n, s.GeGLU, s.Softcap)
				d := math.Abs(float64(got[r*N+n]) - y)
				if d > maxErr || d != d {
					maxErr = d
				}
				maxRef = max(maxRef, math.Abs(y))
			}
		}
		for r := c.nvalid; r < s.R && res.Error == ""; r++ {
			for n := 0; n < N; n += 97 {
				if v := got[r*N+n]; v == v {
					res.Error = fmt.Sprintf("row %d ≥ n_valid %d was written", r, c.nvalid)
					break
				}
			}
		}
	}
	res.RelErr = maxErr / max(maxRef, 1e-30)
	res.Pass = res.RelErr < res.Tol && res.Error == ""
	return res
}

// refOutput is the float64 reference of output n of weight matrix m for
// the input row x: x·w_m[n] (gelu(x·gate)·(x·up) with GeGLU, ws holding
// gate and up), soft-capped when softcap is not 0.
func refOutput(x []float32, ws [][]uint16, m, n int, geglu bool, softcap float64) float64 {
	K := len(x)
	dot := func(w []uint16) float64 {
		var acc float64
		for k, xk := range x {
			acc += float64(xk) * float64(math.Float32frombits(uint32(w[n*K+k])<<16))
		}
		return acc
	}
	y := dot(ws[m])
	if geglu {
		y = geluTanh(y) * dot(ws[1])
	}
	if softcap != 0 {
		y = softcap * math.Tanh(y/softcap)
	}
	return y
}

func roundBF16(v float32) float32 {
	b := math.Float32bits(v)
	b += 0x7fff + (b>>16)&1
	return math.Float32frombits(b &^ 0xffff)
}

func geluTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// gemvShapes are the 2B's decode matvecs; gemvVariants the launch shapes
// the sweep tries on each (the first is the default).
var (
	gemvShapes = []ptx.Matvec{
		{R: 1, K: 2304, N: 9216, WType: ir.BF16, GeGLU: true},
		{R: 1, K: 9216, N: 2304, WType: ir.BF16},
		{R: 1, K: 2304, N: 4096, WType: ir.BF16, Split: []int{2048, 1024, 1024}},
		{R: 1, K: 2048, N: 2304, WType: ir.BF16},
		{R: 1, K: 2304, N: 256000, WType: ir.BF16, Softcap: 30},
	}
	gemvVariants = []ptx.MatvecShape{
		{},
		{Warps: 8},
		{Unroll: 16},
		{Warps: 4, Unroll: 16, MinWarps: 16384},
	}
)

func gemvModule() (*ptx.Module, error) {
	m := ptx.NewModule(target())
	for _, s := range gemvShapes {
		for _, v := range gemvVariants {
			s.MatvecShape = v
			if _, err := m.Add(s); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// GEMVTime is one decode matvec shape's time in isolation.
type GEMVTime struct {
	Kernel string  `json:"kernel"`
	Us     float64 `json:"us"`
	GBs    float64 `json:"gb_s"`
	RelErr float64 `json:"rel_err"`
	Error  string  `json:"error,omitempty"`
}

// sweepGEMV times every shape × variant alone, its weights rotated over
// enough copies that they stream from HBM, and checks its outputs against
// float64.
func sweepGEMV(dv *cuda.Device) ([]GEMVTime, error) {
	ks, err := loadModule(dv, gemvModule)
	if err != nil {
		return nil, err
	}
	defer ks.Close()
	fmt.Println("\n| decode matvec (alone, weights from HBM) | µs | GB/s | rel err |\n| --- | --- | --- | --- |")
	var out []GEMVTime
	for _, shape := range gemvShapes {
		ts, err := sweepShape(ks, dv, shape)
		if err != nil {
			return out, err
		}
		out = append(out, ts...)
	}
	return out, nil
}

func sweepShape(ks *cuda.Kernels, dv *cuda.Device, s ptx.Matvec) ([]GEMVTime, error) {
	rng := rand.New(rand.NewPCG(uint64(s.N), uint64(s.K)))
	mats := []int{s.N}
	if len(s.Split) > 0 {
		mats = s.Split
	}
	if s.GeGLU {
		mats = []int{s.N, s.N}
	}
	x := make([]float32, s.K)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	// Small integers over 1024 are exact in bf16: cheap to draw.
	ws := make([][]uint16, len(mats))
	var wbytes int64
	for i, n := range mats {
		ws[i] = make([]uint16, n*s.K)
		for j := range ws[i] {
			ws[i][j] = uint16(math.Float32bits(float32(int8(rng.Uint32()))/1024) >> 16)
		}
		wbytes += int64(2 * n * s.K)
	}
	bufs := &deviceBufs{dv: dv}
	defer bufs.free()
	upload := bufs.upload
	outB, err := bufs.alloc(int64(4 * s.N))
	if err != nil {
		return nil, err
	}
	xB, err := upload(bytesOf(x))
	if err != nil {
		return nil, err
	}
	sc, err := upload(bytesOf([]int64{0, 1}))
	if err != nil {
		return nil, err
	}
	copies := int(max(1, (256<<20)/wbytes))
	var sets [][]*cuda.Buffer
	for c := 0; c < copies; c++ {
		set := []*cuda.Buffer{outB, xB}
		for _, w := range ws {
			b, err := upload(bytesOf(w))
			if err != nil {
				return nil, err
			}
			set = append(set, b)
		}
		sets = append(sets, append(set, sc))
	}
	// The float64 reference of every output.
	ref := make([]float64, s.N)
	for n := range ref {
		m, row := 0, n
		for len(s.Split) > 0 && row >= s.Split[m] {
			row -= s.Split[m]
			m++
		}
		ref[n] = refOutput(x, ws, m, row, s.GeGLU, s.Softcap)
	}
	var out []GEMVTime
	for _, v := range gemvVariants {
		s.MatvecShape = v
		r := GEMVTime{Kernel: s.Name()}
		l := s.Launch()
		secs, err := ks.LaunchSets(s.Name(), l.Grid, l.Block, l.Shared, 60, sets)
		if err != nil {
			r.Error = err.Error()
		} else {
			got := make([]float32, s.N)
			if err := outB.Read(bytesOf(got)); err != nil {
				return out, err
			}
			var d, m float64
			for n, y := range ref {
				e := math.Abs(float64(got[n]) - y)
				if e > d || e != e {
					d = e
				}
				m = max(m, math.Abs(y))
			}
			r.RelErr = d / max(m, 1e-30)
			r.Us = secs * 1e6
			r.GBs = float64(wbytes) / secs / 1e9
			if r.RelErr > 1e-4 {
				r.Error = "wrong result"
			}
		}
		fmt.Printf("| %s | %.1f | %.0f | %.2g %s |\n", r.Kernel, r.Us, r.GBs, r.RelErr, r.Error)
		out = append(out, r)
	}
	return out, nil
}
