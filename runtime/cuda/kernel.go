package cuda

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Kernels is a PTX module loaded for launching its kernels one by one, on
// buffers the caller fills: the GPU checks of single kernels against a
// host reference (bench/gpu) use it. The engine does not.
type Kernels struct {
	dv     *Device
	mod    uintptr
	stream uintptr
	funcs  map[string]uintptr
	// JITLog is the driver's JIT info log (registers, spills).
	JITLog string
}

// Buffer is device memory of a known size.
type Buffer struct {
	dv    *Device
	ptr   devptr
	Bytes int64
}

// LoadKernels JIT-compiles PTX for this device.
func (dv *Device) LoadKernels(ptx string) (*Kernels, error) {
	k := &Kernels{dv: dv, funcs: map[string]uintptr{}}
	err := dv.with(func() error {
		var err error
		if k.mod, k.JITLog, err = dv.module(ptx); err != nil {
			return err
		}
		k.stream, err = dv.newStream()
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Close unloads the module.
func (k *Kernels) Close() error {
	return k.dv.with(func() error {
		k.dv.d.call("cuStreamDestroy_v2", k.stream)
		return k.dv.d.check("cuModuleUnload", k.dv.d.call("cuModuleUnload", k.mod))
	})
}

// NewBuffer allocates n bytes on the device.
func (dv *Device) NewBuffer(n int64) (*Buffer, error) {
	b := &Buffer{dv: dv, Bytes: n}
	err := dv.with(func() error {
		var err error
		b.ptr, err = dv.alloc(n)
		return err
	})
	return b, err
}

// Write copies src to the start of the buffer.
func (b *Buffer) Write(src []byte) error {
	if int64(len(src)) > b.Bytes {
		return fmt.Errorf("cuda: writing %d bytes to a buffer of %d", len(src), b.Bytes)
	}
	if len(src) == 0 {
		return nil
	}
	return b.dv.with(func() error { return b.dv.htod(b.ptr, unsafe.Pointer(&src[0]), int64(len(src))) })
}

// Read copies the start of the buffer to dst.
func (b *Buffer) Read(dst []byte) error {
	if int64(len(dst)) > b.Bytes {
		return fmt.Errorf("cuda: reading %d bytes from a buffer of %d", len(dst), b.Bytes)
	}
	if len(dst) == 0 {
		return nil
	}
	return b.dv.with(func() error { return b.dv.dtoh(unsafe.Pointer(&dst[0]), b.ptr, int64(len(dst))) })
}

// Free releases the buffer.
func (b *Buffer) Free() error { return b.dv.with(func() error { return b.dv.free(b.ptr) }) }

// Launch runs kernel name once with one buffer per parameter and waits
// for it. Launch times the same launch reps times (after one untimed run)
// when reps > 0 and returns the mean seconds per launch.
func (k *Kernels) Launch(name string, grid, block [3]uint32, shared uint32, reps int, bufs ...*Buffer) (float64, error) {
	return k.LaunchSets(name, grid, block, shared, reps, [][]*Buffer{bufs})
}

// LaunchSets is Launch over several argument sets: the untimed run uses
// the first, timed run i the set i mod len(sets), so that inputs larger
// than the GPU's L2 in all are read from memory, as in a model.
func (k *Kernels) LaunchSets(name string, grid, block [3]uint32, shared uint32, reps int, sets [][]*Buffer) (float64, error) {
	var secs float64
	err := k.dv.with(func() error {
		f, ok := k.funcs[name]
		if !ok {
			var err error
			if f, err = k.dv.function(k.mod, name); err != nil {
				return err
			}
			k.funcs[name] = f
		}
		ptrs := make([][]devptr, len(sets))
		params := make([][]unsafe.Pointer, len(sets))
		for s, bufs := range sets {
			ptrs[s] = make([]devptr, len(bufs))
			params[s] = make([]unsafe.Pointer, len(bufs))
			for i, b := range bufs {
				ptrs[s][i] = b.ptr
				params[s][i] = unsafe.Pointer(&ptrs[s][i])
			}
		}
		defer runtime.KeepAlive(ptrs)
		next := 0
		run := func() error {
			p := params[next%len(params)]
			next++
			if len(p) == 0 {
				return k.dv.launch(f, grid, block, shared, k.stream, nil)
			}
			return k.dv.launch(f, grid, block, shared, k.stream, unsafe.Pointer(&p[0]))
		}
		if err := run(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := k.dv.sync(k.stream); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if reps <= 0 {
			return nil
		}
		var err error
		secs, err = k.dv.timeReps(k.stream, reps, run)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	return secs, err
}
