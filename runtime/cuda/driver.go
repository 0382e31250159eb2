// Package cuda runs a model compiled by codegen/ptx on an NVIDIA GPU
// through the CUDA driver API. libcuda.so.1 is loaded at run time with
// purego (no cgo, no CUDA headers), so a binary built with CGO_ENABLED=0
// starts on a machine without a GPU and says so in an error.
package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// LibraryName is the driver library Open loads; tests point it elsewhere
// to exercise the no-driver path.
var LibraryName = "libcuda.so.1"

// ErrNoDriver is wrapped by every error that comes from a missing driver.
var ErrNoDriver = errors.New("no CUDA driver found")

// driver is the loaded libcuda and its entry points.
type driver struct {
	lib  uintptr
	syms map[string]uintptr
}

var (
	drvOnce sync.Once
	drv     *driver
	drvErr  error
)

// the entry points gemmac calls; a missing optional one is reported when used.
var required = []string{
	"cuInit", "cuDriverGetVersion", "cuDeviceGet", "cuDeviceGetCount", "cuDeviceGetName", "cuDeviceGetAttribute",
	"cuDeviceTotalMem_v2", "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease_v2", "cuCtxSetCurrent",
	"cuCtxSynchronize", "cuModuleLoadDataEx", "cuModuleUnload", "cuModuleGetFunction",
	"cuMemAlloc_v2", "cuMemFree_v2", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuMemcpyDtoD_v2",
	"cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2", "cuMemcpyDtoDAsync_v2", "cuMemsetD8_v2", "cuMemGetInfo_v2",
	"cuLaunchKernel", "cuStreamCreate", "cuStreamDestroy_v2", "cuStreamSynchronize",
	"cuEventCreate", "cuEventRecord", "cuEventSynchronize", "cuEventElapsedTime", "cuEventDestroy_v2",
	"cuGetErrorName", "cuGetErrorString",
}

var optional = []string{
	"cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphInstantiateWithFlags",
	"cuGraphLaunch", "cuGraphExecDestroy", "cuGraphDestroy", "cuLaunchKernelEx",
}

// load opens the driver library once.
func load() (*driver, error) {
	drvOnce.Do(func() { drv, drvErr = loadLibrary(LibraryName) })
	return drv, drvErr
}

func loadLibrary(name string) (*driver, error) {
	lib, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("%w (%s): %v", ErrNoDriver, name, err)
	}
	d := &driver{lib: lib, syms: map[string]uintptr{}}
	for _, s := range required {
		p, err := purego.Dlsym(lib, s)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%w (%s): the library lacks %s: the driver is too old", ErrNoDriver, name, s)
		}
		d.syms[s] = p
	}
	for _, s := range optional {
		if p, err := purego.Dlsym(lib, s); err == nil && p != 0 {
			d.syms[s] = p
		}
	}
	if err := d.check("cuInit", d.call("cuInit", 0)); err != nil {
		return nil, err
	}
	return d, nil
}

// call invokes a driver function with integer/pointer arguments and
// returns its CUresult.
func (d *driver) call(name string, args ...uintptr) uintptr {
	p := d.syms[name]
	if p == 0 {
		return math.MaxUint32 // reported by check as unknown
	}
	r, _, _ := purego.SyscallN(p, args...)
	return r & 0xffffffff
}

func (d *driver) has(name string) bool { return d.syms[name] != 0 }

// Error is a failed driver call.
type Error struct {
	Call   string
	Code   int
	Name   string
	String string
	Log    string // the JIT error log, for module loads
}

func (e *Error) Error() string {
	s := fmt.Sprintf("cuda: %s: %s (%d): %s", e.Call, e.Name, e.Code, e.String)
	if e.Log != "" {
		s += "\n" + e.Log
	}
	return s
}

// check turns a CUresult into an error naming the call.
func (d *driver) check(call string, r uintptr) error {
	if r == 0 {
		return nil
	}
	if r == math.MaxUint32 && !d.has(call) {
		return &Error{Call: call, Code: -1, Name: "CUDA_ERROR_NOT_FOUND", String: "the driver does not export " + call}
	}
	e := &Error{Call: call, Code: int(r), Name: "CUDA_ERROR_UNKNOWN", String: "unknown error"}
	var p uintptr
	if d.call("cuGetErrorName", r, uintptr(unsafe.Pointer(&p))) == 0 && p != 0 {
		e.Name = cString(p)
	}
	if d.call("cuGetErrorString", r, uintptr(unsafe.Pointer(&p))) == 0 && p != 0 {
		e.String = cString(p)
	}
	return e
}

// cString copies a NUL-terminated C string.
func cString(p uintptr) string {
	if p == 0 {
		return ""
	}
	base := *(**byte)(unsafe.Pointer(&p)) // C memory, not Go's
	var b strings.Builder
	for i := 0; i < 1<<16; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(base), i))
		if c == 0 {
			break
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Device is a GPU with its primary context.
type Device struct {
	d       *driver
	dev     int32
	ctx     uintptr
	Name    string
	Major   int
	Minor   int
	SMs     int
	Memory  int64
	Version int // driver API version, e.g. 12040
}

// Open loads the driver and retains device ordinal's primary context.
func Open(ordinal int) (*Device, error) {
	d, err := load()
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var n int32
	if err := d.check("cuDeviceGetCount", d.call("cuDeviceGetCount", uintptr(unsafe.Pointer(&n)))); err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= int(n) {
		return nil, fmt.Errorf("cuda: device %d of %d", ordinal, n)
	}
	dv := &Device{d: d}
	if err := d.check("cuDeviceGet", d.call("cuDeviceGet", uintptr(unsafe.Pointer(&dv.dev)), uintptr(ordinal))); err != nil {
		return nil, err
	}
	var ver int32
	d.call("cuDriverGetVersion", uintptr(unsafe.Pointer(&ver)))
	dv.Version = int(ver)
	name := make([]byte, 256)
	if err := d.check("cuDeviceGetName", d.call("cuDeviceGetName", uintptr(unsafe.Pointer(&name[0])), 256, uintptr(dv.dev))); err != nil {
		return nil, err
	}
	dv.Name = cString(uintptr(unsafe.Pointer(&name[0])))
	attr := func(a int) int {
		var v int32
		d.call("cuDeviceGetAttribute", uintptr(unsafe.Pointer(&v)), uintptr(a), uintptr(dv.dev))
		return int(v)
	}
	dv.Major, dv.Minor, dv.SMs = attr(75), attr(76), attr(16)
	var mem uint64
	d.call("cuDeviceTotalMem_v2", uintptr(unsafe.Pointer(&mem)), uintptr(dv.dev))
	dv.Memory = int64(mem)
	if err := d.check("cuDevicePrimaryCtxRetain", d.call("cuDevicePrimaryCtxRetain", uintptr(unsafe.Pointer(&dv.ctx)), uintptr(dv.dev))); err != nil {
		return nil, err
	}
	return dv, nil
}

// bind makes the device's context current on this OS thread; callers hold
// the thread locked (runtime.LockOSThread) while they use the driver.
func (dv *Device) bind() error {
	return dv.d.check("cuCtxSetCurrent", dv.d.call("cuCtxSetCurrent", dv.ctx))
}

// with runs f on a locked OS thread with the device's context bound.
func (dv *Device) with(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := dv.bind(); err != nil {
		return err
	}
	return f()
}

// Close releases the primary context.
func (dv *Device) Close() error {
	return dv.d.check("cuDevicePrimaryCtxRelease_v2", dv.d.call("cuDevicePrimaryCtxRelease_v2", uintptr(dv.dev)))
}

func (dv *Device) String() string {
	return fmt.Sprintf("%s (sm_%d%d, %d SMs, %.1f GiB, driver %d.%d)", dv.Name, dv.Major, dv.Minor, dv.SMs,
		float64(dv.Memory)/(1<<30), dv.Version/1000, dv.Version%1000/10)
}

// ---- thin wrappers (the caller has bound the context) ----

type devptr = uintptr

func (dv *Device) alloc(n int64) (devptr, error) {
	var p devptr
	if n <= 0 {
		n = 1
	}
	if err := dv.d.check("cuMemAlloc_v2", dv.d.call("cuMemAlloc_v2", uintptr(unsafe.Pointer(&p)), uintptr(n))); err != nil {
		return 0, fmt.Errorf("%w (allocating %d bytes)", err, n)
	}
	return p, nil
}

func (dv *Device) free(p devptr) error {
	if p == 0 {
		return nil
	}
	return dv.d.check("cuMemFree_v2", dv.d.call("cuMemFree_v2", p))
}

func (dv *Device) htod(dst devptr, src unsafe.Pointer, n int64) error {
	if n == 0 {
		return nil
	}
	return dv.d.check("cuMemcpyHtoD_v2", dv.d.call("cuMemcpyHtoD_v2", dst, uintptr(src), uintptr(n)))
}

func (dv *Device) dtoh(dst unsafe.Pointer, src devptr, n int64) error {
	if n == 0 {
		return nil
	}
	return dv.d.check("cuMemcpyDtoH_v2", dv.d.call("cuMemcpyDtoH_v2", uintptr(dst), src, uintptr(n)))
}

func (dv *Device) memset(p devptr, n int64) error {
	return dv.d.check("cuMemsetD8_v2", dv.d.call("cuMemsetD8_v2", p, 0, uintptr(n)))
}

// module loads PTX, surfacing the JIT logs in errors.
func (dv *Device) module(ptx string) (uintptr, string, error) {
	const logSize = 1 << 16
	infoLog := make([]byte, logSize)
	errLog := make([]byte, logSize)
	src := append([]byte(ptx), 0)
	opts := []int32{3, 4, 5, 6, 12} // INFO_LOG_BUFFER, ..._SIZE, ERROR_LOG_BUFFER, ..._SIZE, LOG_VERBOSE
	vals := []uintptr{uintptr(unsafe.Pointer(&infoLog[0])), logSize, uintptr(unsafe.Pointer(&errLog[0])), logSize, 1}
	var mod uintptr
	r := dv.d.call("cuModuleLoadDataEx", uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&src[0])),
		uintptr(len(opts)), uintptr(unsafe.Pointer(&opts[0])), uintptr(unsafe.Pointer(&vals[0])))
	runtime.KeepAlive(src)
	runtime.KeepAlive(infoLog)
	runtime.KeepAlive(errLog)
	info := cString(uintptr(unsafe.Pointer(&infoLog[0])))
	if err := dv.d.check("cuModuleLoadDataEx", r); err != nil {
		e := err.(*Error)
		e.Log = strings.TrimSpace("JIT error log:\n" + cString(uintptr(unsafe.Pointer(&errLog[0]))) + "\nJIT info log:\n" + info)
		return 0, info, e
	}
	return mod, info, nil
}

func (dv *Device) function(mod uintptr, name string) (uintptr, error) {
	var f uintptr
	cname := append([]byte(name), 0)
	err := dv.d.check("cuModuleGetFunction", dv.d.call("cuModuleGetFunction", uintptr(unsafe.Pointer(&f)), mod, uintptr(unsafe.Pointer(&cname[0]))))
	if err != nil {
		return 0, fmt.Errorf("%w (kernel %s)", err, name)
	}
	return f, nil
}

func (dv *Device) launch(f uintptr, grid, block [3]uint32, shared uint32, stream uintptr, params unsafe.Pointer) error {
	return dv.d.check("cuLaunchKernel", dv.d.call("cuLaunchKernel", f,
		uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]),
		uintptr(shared), stream, uintptr(params), 0))
}

// launchConfig is CUlaunchConfig; launchAttribute is CUlaunchAttribute (an
// id, padding, and a 64-byte value union).
type launchConfig struct {
	grid, block [3]uint32
	shared      uint32
	_           uint32
	stream      uintptr
	attrs       uintptr
	numAttrs    uint32
	_           uint32
}

type launchAttribute struct {
	id    uint32
	_     uint32
	value [64]byte
}

// cuLaunchAttributeProgrammaticStreamSerialization lets a launch start
// before the previous kernel in the stream has finished; the kernel waits
// for it with griddepcontrol.wait.
const cuLaunchAttributeProgrammaticStreamSerialization = 6

// launchPDL is launch with programmatic dependent launch allowed.
func (dv *Device) launchPDL(f uintptr, grid, block [3]uint32, shared uint32, stream uintptr, params unsafe.Pointer) error {
	attr := launchAttribute{id: cuLaunchAttributeProgrammaticStreamSerialization}
	attr.value[0] = 1
	cfg := launchConfig{grid: grid, block: block, shared: shared, stream: stream, attrs: uintptr(unsafe.Pointer(&attr)), numAttrs: 1}
	r := dv.d.call("cuLaunchKernelEx", uintptr(unsafe.Pointer(&cfg)), f, uintptr(params), 0)
	runtime.KeepAlive(&attr)
	runtime.KeepAlive(&cfg)
	return dv.d.check("cuLaunchKernelEx", r)
}

func (dv *Device) newStream() (uintptr, error) {
	var s uintptr
	return s, dv.d.check("cuStreamCreate", dv.d.call("cuStreamCreate", uintptr(unsafe.Pointer(&s)), 1)) // NON_BLOCKING
}

func (dv *Device) sync(stream uintptr) error {
	return dv.d.check("cuStreamSynchronize", dv.d.call("cuStreamSynchronize", stream))
}

// timeReps runs run reps times on stream between two CUDA events and
// returns the GPU time per run in seconds.
func (dv *Device) timeReps(stream uintptr, reps int, run func() error) (float64, error) {
	d := dv.d
	var ev [2]uintptr
	for i := range ev {
		if err := d.check("cuEventCreate", d.call("cuEventCreate", uintptr(unsafe.Pointer(&ev[i])), 0)); err != nil {
			return 0, err
		}
		defer d.call("cuEventDestroy_v2", ev[i])
	}
	d.call("cuEventRecord", ev[0], stream)
	for i := 0; i < reps; i++ {
		if err := run(); err != nil {
			return 0, err
		}
	}
	d.call("cuEventRecord", ev[1], stream)
	if err := d.check("cuEventSynchronize", d.call("cuEventSynchronize", ev[1])); err != nil {
		return 0, err
	}
	var ms float32
	if err := d.check("cuEventElapsedTime", d.call("cuEventElapsedTime", uintptr(unsafe.Pointer(&ms)), ev[0], ev[1])); err != nil {
		return 0, err
	}
	return float64(ms) / 1e3 / float64(reps), nil
}

// Bandwidth measures device-to-device copy bandwidth in bytes/s: reps
// copies (cuMemcpyDtoDAsync) of a buffer of the given size, timed with CUDA
// events, counting the bytes read and written (2·bytes per copy), as
// bandwidth tests do.
func (dv *Device) Bandwidth(bytes int64, reps int) (float64, error) {
	var bw float64
	err := dv.with(func() error {
		d := dv.d
		half := bytes
		a, err := dv.alloc(half)
		if err != nil {
			return err
		}
		defer dv.free(a)
		b, err := dv.alloc(half)
		if err != nil {
			return err
		}
		defer dv.free(b)
		s, err := dv.newStream()
		if err != nil {
			return err
		}
		defer d.call("cuStreamDestroy_v2", s)
		copyOnce := func() error {
			return d.check("cuMemcpyDtoDAsync_v2", d.call("cuMemcpyDtoDAsync_v2", b, a, uintptr(half), s))
		}
		if err := copyOnce(); err != nil {
			return err
		}
		secs, err := dv.timeReps(s, reps, copyOnce)
		if err != nil {
			return err
		}
		bw = float64(2*half) / secs
		return nil
	})
	return bw, err
}
