// Package roofline measures the two ceilings a model's speed is judged
// against on this machine: how fast memory can be read, and how fast the
// FMA units can compute. It runs codegen's probe kernels, compiled for this
// CPU and read the way the model's kernels read, on as many threads as the
// model uses.
package roofline

import (
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/unix"

	"github.com/gemmac/gemmac/codegen"
	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
)

// Machine is what one measurement found.
type Machine struct {
	Threads  int     `json:"threads"`
	ReadGBs  float64 `json:"read_gb_s"`   // best of several passes over ReadBytes
	FMAGFLOP float64 `json:"fma_gflop_s"` // best of several runs
	Target   string  `json:"target"`
}

// ReadBytes is the buffer the bandwidth probe streams: far larger than any
// cache.
const ReadBytes = 1 << 30

const fmaIters = 50000

// Measure compiles the probes (cached in cacheDir) and runs them on threads.
func Measure(threads int, cacheDir string) (*Machine, error) {
	t := codegen.HostTarget()
	mod := codegen.NewModule(t)
	read := codegen.ProbeRead{Bytes: ReadBytes}
	fma := codegen.ProbeFMA{Iters: fmaIters}
	readIdx, err := mod.Add(read)
	if err != nil {
		return nil, err
	}
	fmaIdx, err := mod.Add(fma)
	if err != nil {
		return nil, err
	}
	so, err := (&cpucodegen.Compiled{Module: mod}).SharedObject(cacheDir)
	if err != nil {
		return nil, err
	}
	lib, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, err
	}
	fns := make([]uintptr, 2)
	for i, s := range mod.Specs() {
		if fns[i], err = purego.Dlsym(lib, s.Name()); err != nil {
			return nil, err
		}
	}

	buf, err := unix.Mmap(-1, 0, ReadBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("allocating the %d MiB bandwidth buffer: %w", ReadBytes>>20, err)
	}
	defer unix.Munmap(buf)
	unix.Madvise(buf, unix.MADV_HUGEPAGE)
	for i := range buf {
		if i%4096 == 0 {
			buf[i] = 1 // fault every page in before timing
		}
	}
	pages := read.Items()
	out, err := unix.Mmap(-1, 0, int(max(pages, fma.Items()*int64(threads))*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(out)

	readArgs := []unsafe.Pointer{unsafe.Pointer(&buf[0]), unsafe.Pointer(&out[0])}
	fmaArgs := []unsafe.Pointer{unsafe.Pointer(&out[0])}
	m := &Machine{Threads: threads, Target: t.Name}
	for pass := 0; pass < 5; pass++ {
		d := parallel(threads, func(th int) {
			lo, hi := pages*int64(th)/int64(threads), pages*int64(th+1)/int64(threads)
			purego.SyscallN(fns[readIdx], uintptr(unsafe.Pointer(&readArgs[0])), uintptr(lo), uintptr(hi))
		})
		m.ReadGBs = max(m.ReadGBs, float64(ReadBytes)/d.Seconds()/1e9)
		items := fma.Items()
		d = parallel(threads, func(th int) {
			lo := items * int64(th)
			purego.SyscallN(fns[fmaIdx], uintptr(unsafe.Pointer(&fmaArgs[0])), uintptr(lo), uintptr(lo+items))
		})
		flops := float64(fma.FlopsPerItem(t.Lanes) * items * int64(threads))
		m.FMAGFLOP = max(m.FMAGFLOP, flops/d.Seconds()/1e9)
	}
	runtime.KeepAlive(readArgs)
	runtime.KeepAlive(fmaArgs)
	return m, nil
}

// parallel runs body on threads locked OS threads at once and returns the
// wall time of the slowest.
func parallel(threads int, body func(thread int)) time.Duration {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(threads)
	done.Add(threads)
	for th := 0; th < threads; th++ {
		go func(th int) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ready.Done()
			<-start
			body(th)
			done.Done()
		}(th)
	}
	ready.Wait()
	t := time.Now()
	close(start)
	done.Wait()
	return time.Since(t)
}
