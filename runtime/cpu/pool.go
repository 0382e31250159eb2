package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// idleSpin is how long an idle worker polls for work before it sleeps. A
// decode step is hundreds of kernel calls microseconds apart, and the next
// token's starts a millisecond after the last (sampling); waking a sleeping
// thread costs about half a millisecond here, more than most kernels.
const idleSpin = 5 * time.Millisecond

// pool runs one kernel call at a time, split over its threads. Each worker
// is locked to an OS thread so a kernel keeps its core's caches.
type pool struct {
	threads int
	workers []*worker
	pending atomic.Int64
	mu      sync.Mutex
	wake    *sync.Cond
}

type worker struct {
	gen      atomic.Uint64 // bumped for every task handed over
	sleeping atomic.Bool
	task     task
}

type task struct {
	k      *Kernels
	kernel int
	args   unsafe.Pointer
	lo, hi int64
	quit   bool
}

func newPool(threads int) *pool {
	p := &pool{threads: threads}
	p.wake = sync.NewCond(&p.mu)
	for i := 1; i < threads; i++ {
		w := &worker{}
		p.workers = append(p.workers, w)
		go p.serve(w)
	}
	return p
}

func (p *pool) serve(w *worker) {
	runtime.LockOSThread()
	var seen uint64
	for {
		g := w.gen.Load()
		idleSince := time.Now()
		for spins := 0; g == seen; spins++ {
			if spins%1024 != 0 || time.Since(idleSince) < idleSpin {
				g = w.gen.Load()
				continue
			}
			// Publish sleeping before the last look at gen: a handover
			// either sees the flag and broadcasts under the lock, or this
			// look sees its generation.
			p.mu.Lock()
			w.sleeping.Store(true)
			for g = w.gen.Load(); g == seen; g = w.gen.Load() {
				p.wake.Wait()
			}
			w.sleeping.Store(false)
			p.mu.Unlock()
		}
		seen = g
		t := w.task
		if t.quit {
			return
		}
		t.k.call(t.kernel, t.args, t.lo, t.hi)
		p.pending.Add(-1)
	}
}

// hand gives w its next task.
func (p *pool) hand(w *worker, t task) {
	w.task = t
	w.gen.Add(1)
	if w.sleeping.Load() {
		p.mu.Lock()
		p.wake.Broadcast()
		p.mu.Unlock()
	}
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
	p.pending.Store(parts - 1)
	for i := int64(1); i < parts; i++ {
		p.hand(p.workers[i-1], task{k: k, kernel: kernel, args: args, lo: i * per, hi: min(items, (i+1)*per)})
	}
	k.call(kernel, args, 0, min(items, per))
	for p.pending.Load() != 0 {
	}
}

func (p *pool) close() {
	for _, w := range p.workers {
		p.hand(w, task{quit: true})
	}
}
