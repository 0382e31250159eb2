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

// ReadBytes is the buffer the bandwidth probe streams: eight times the
// largest last-level cache of a CPU chiplet (32 MiB), so no pass is served
// from cache, and small enough that keeping it beside a model does not
// crowd the model out of memory.
const ReadBytes = 256 << 20

const fmaIters = 50000

// Probe runs single passes of the probes, so a benchmark can take
// bandwidth samples between its own timed steps: on a shared machine the
// bandwidth moves from second to second, and a fraction of it means most
// when both sides are sampled over the same seconds.
type Probe struct {
	threads         int
	target          string
	lanes           int
	read            codegen.ProbeRead
	fma             codegen.ProbeFMA
	readFn, fmaFn   uintptr
	buf, out        []byte
	readArgs, fmaAr []unsafe.Pointer
}

// Open compiles the probes (cached in cacheDir) for threads threads. The
// read buffer is allocated at the first Read.
func Open(threads int, cacheDir string) (*Probe, error) {
	t := codegen.HostTarget()
	mod := codegen.NewModule(t)
	p := &Probe{threads: threads, target: t.Name, lanes: t.Lanes, read: codegen.ProbeRead{Bytes: ReadBytes}, fma: codegen.ProbeFMA{Iters: fmaIters}}
	if _, err := mod.Add(p.read); err != nil {
		return nil, err
	}
	if _, err := mod.Add(p.fma); err != nil {
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
	if p.readFn, err = purego.Dlsym(lib, p.read.Name()); err != nil {
		return nil, err
	}
	if p.fmaFn, err = purego.Dlsym(lib, p.fma.Name()); err != nil {
		return nil, err
	}
	n := max(p.read.Items(), p.fma.Items()*int64(threads)) * 64
	if p.out, err = unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE); err != nil {
		return nil, err
	}
	p.fmaAr = []unsafe.Pointer{unsafe.Pointer(&p.out[0])}
	return p, nil
}

// Read streams the buffer once on every thread and returns GB/s.
func (p *Probe) Read() (float64, error) {
	if p.buf == nil {
		buf, err := unix.Mmap(-1, 0, ReadBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			return 0, fmt.Errorf("allocating the %d MiB bandwidth buffer: %w", ReadBytes>>20, err)
		}
		unix.Madvise(buf, unix.MADV_HUGEPAGE)
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = 1 // fault every page in before timing
		}
		p.buf = buf
		p.readArgs = []unsafe.Pointer{unsafe.Pointer(&buf[0]), unsafe.Pointer(&p.out[0])}
	}
	pages := p.read.Items()
	d := parallel(p.threads, func(th int) {
		lo, hi := pages*int64(th)/int64(p.threads), pages*int64(th+1)/int64(p.threads)
		purego.SyscallN(p.readFn, uintptr(unsafe.Pointer(&p.readArgs[0])), uintptr(lo), uintptr(hi))
	})
	return float64(ReadBytes) / d.Seconds() / 1e9, nil
}

// ReadSample is one bandwidth sample: the best of three back-to-back
// passes. The first pass after the threads were idle often runs slow while
// the (virtual) CPUs wake, which a single pass of a quarter GiB would
// report as the machine's bandwidth.
func (p *Probe) ReadSample() (float64, error) {
	var best float64
	for i := 0; i < 3; i++ {
		r, err := p.Read()
		if err != nil {
			return 0, err
		}
		best = max(best, r)
	}
	return best, nil
}

// FMA runs the FMA probe once on every thread and returns GFLOP/s.
func (p *Probe) FMA() float64 {
	items := p.fma.Items()
	d := parallel(p.threads, func(th int) {
		lo := items * int64(th)
		purego.SyscallN(p.fmaFn, uintptr(unsafe.Pointer(&p.fmaAr[0])), uintptr(lo), uintptr(lo+items))
	})
	flops := float64(p.fma.FlopsPerItem(p.lanes) * items * int64(p.threads))
	return flops / d.Seconds() / 1e9
}

// Threads is the number of threads the probes run on.
func (p *Probe) Threads() int { return p.threads }

// Target names the CPU target the probes were compiled for.
func (p *Probe) Target() string { return p.target }

// Close frees the buffers.
func (p *Probe) Close() {
	if p.buf != nil {
		unix.Munmap(p.buf)
		p.buf = nil
	}
	if p.out != nil {
		unix.Munmap(p.out)
		p.out = nil
	}
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
