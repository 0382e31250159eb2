package cpu

import (
	"runtime"
	"sync"
	"unsafe"
)

// pool runs one kernel call at a time, split over its threads. Each worker
// is locked to an OS thread so a kernel keeps its core's caches.
type pool struct {
	threads int
	work    []chan task
	wg      sync.WaitGroup
}

type task struct {
	k      *Kernels
	kernel int
	args   unsafe.Pointer
	lo, hi int64
}

func newPool(threads int) *pool {
	p := &pool{threads: threads}
	for i := 1; i < threads; i++ {
		ch := make(chan task)
		p.work = append(p.work, ch)
		go func() {
			runtime.LockOSThread()
			for t := range ch {
				t.k.call(t.kernel, t.args, t.lo, t.hi)
				p.wg.Done()
			}
		}()
	}
	return p
}

// run calls the kernel over [0, items), in ranges that are multiples of
// granule, one per thread; the calling goroutine takes the first range.
func (p *pool) run(k *Kernels, kernel int, args unsafe.Pointer, items, granule int64) {
	chunks := (items + granule - 1) / granule
	perPart := (chunks + int64(p.threads) - 1) / int64(p.threads)
	parts := (chunks + perPart - 1) / max(perPart, 1)
	if parts <= 1 {
		k.call(kernel, args, 0, items)
		return
	}
	per := perPart * granule
	p.wg.Add(int(parts - 1))
	for i := int64(1); i < parts; i++ {
		p.work[i-1] <- task{k, kernel, args, i * per, min(items, (i+1)*per)}
	}
	k.call(kernel, args, 0, min(items, per))
	p.wg.Wait()
}

func (p *pool) close() {
	for _, ch := range p.work {
		close(ch)
	}
}
