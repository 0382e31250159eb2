package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gemmac/gemmac/runtime/plan"
)

// IdleSpin is how long an idle worker polls for work before it sleeps. A
// decode step is hundreds of kernel calls microseconds apart, and the next
// token's starts a millisecond after the last (sampling); waking a sleeping
// thread costs about half a millisecond here, more than most kernels. A
// benchmark that measures the machine between steps waits this long first,
// or the pool would share the cores with its probe.
const IdleSpin = 5 * time.Millisecond

// nativeIdleSpins is IdleSpin in spins of the native worker (one pause
// instruction each, about 20 ns on current x86).
const nativeIdleSpins = 250_000

// pool runs one kernel call at a time, split over its threads; the calling
// goroutine takes the first part. Each worker is locked to an OS thread so a
// kernel keeps its core's caches.
//
// When the kernels include the native worker (plan.WorkerKernel), a worker
// thread stays inside it between calls, spinning on a mailbox: it never
// returns to Go, so the Go scheduler never sees it leave and re-enter a
// "syscall" per kernel. (With Go-side workers, every kernel call is a cgo
// call; while both threads are in one, sysmon finds no idle P, takes the Ps
// away and starts threads to run them, and the return from each call then
// waits for a P — on a 2-vCPU VM that made decode 2–4× slower and erratic.)
//
// The calling thread had the same problem with one cgo call per kernel, so
// where the kernels include the runner (plan.RunnerKernel) it makes a whole
// program's calls in one (runAll), posting to the workers' mailboxes from
// native code. Traced on the 2B, sysmon then wakes about 60 times per decode
// step instead of up to 250, and no other thread of the process runs; the
// built 2B q4_0 binary's median decode step ran 1.13–1.16× faster and its
// prefill 1.08–1.19× (three runs alternating with the per-call binary).
type pool struct {
	threads int
	workers []*worker
	pending atomic.Int64
	mu      sync.Mutex
	wake    *sync.Cond
	// native mode
	k      *Kernels
	native int // index of the worker kernel, -1: Go-side workers
	mail   *region
	next   *int64 // the shared chunk counter of a dynamic split
	exited sync.WaitGroup
	// runner mode: one native call makes a whole program's calls
	runner   int     // index of the runner kernel, -1: calls are made from Go
	table    *region // argv, then the run table (codegen.Run* layout)
	maxCalls int
}

type worker struct {
	sleeping atomic.Bool
	// Go-side mode
	gen  atomic.Uint64 // bumped for every task handed over
	task task
	// native mode: the mailbox (codegen.Mail* layout) and the one-pointer
	// args array the worker kernel receives.
	mb   []int64
	argv unsafe.Pointer
	quit atomic.Bool
}

type task struct {
	k      *Kernels
	kernel int
	args   unsafe.Pointer
	lo, hi int64
	chunk  int64 // > 0: split [lo, hi) dynamically (native workers)
	quit   bool
}

// Mailbox layout (codegen.Mail*).
const (
	mailSeq    = 0
	mailFn     = 1
	mailArgs   = 2
	mailLo     = 3
	mailHi     = 4
	mailNext   = 5
	mailChunk  = 6
	mailPosted = 7 // the last seq posted; only posters touch it
	mailDone   = 8
	mailHold   = 9
	mailWords  = 16
)

// Run table layout (codegen.Run*).
const (
	runWorkers   = 0
	runCounter   = 1
	runMail      = 2
	runStride    = 3
	runHeader    = 4
	runStepFn    = 0
	runStepArgs  = 1
	runStepItems = 2
	runStepChunk = 3
	runStepWords = 4
)

// newPool starts threads−1 workers, native ones when native is set and k
// has the worker kernel. With perCall unset and the runner kernel in k,
// programs of up to maxCalls calls run in one native call (runAll).
func newPool(threads int, k *Kernels, native, perCall bool, maxCalls int) *pool {
	p := &pool{threads: threads, k: k, native: -1, runner: -1}
	p.wake = sync.NewCond(&p.mu)
	if native && threads > 1 {
		p.native = k.index(plan.WorkerKernel)
	}
	if p.native >= 0 {
		// One 128-byte mailbox per worker, then its args pointer.
		r, err := allocRegion(int64(threads) * 256)
		if err != nil {
			p.native = -1
		} else {
			p.mail = r
			p.next = (*int64)(r.ptr(0))
		}
	}
	for i := 1; i < threads; i++ {
		w := &worker{}
		p.workers = append(p.workers, w)
		if p.native >= 0 {
			w.mb = unsafe.Slice((*int64)(p.mail.ptr(int64(i)*256)), mailWords)
			w.argv = p.mail.ptr(int64(i)*256 + 8*mailWords)
			*(*unsafe.Pointer)(w.argv) = unsafe.Pointer(&w.mb[0])
			p.exited.Add(1)
			go p.serveNative(w)
			continue
		}
		go p.serve(w)
	}
	if r := k.index(plan.RunnerKernel); r >= 0 && !perCall && (p.native >= 0 || threads == 1) {
		// argv, the header, the calls, and a chunk counter of its own
		// when there are no mailboxes.
		words := int64(1 + runHeader + runStepWords*maxCalls + 1)
		if t, err := allocRegion(8 * words); err == nil {
			p.runner, p.table, p.maxCalls = r, t, maxCalls
			tab := p.runTable()
			*(*unsafe.Pointer)(t.ptr(0)) = unsafe.Pointer(&tab[0])
			tab[runWorkers] = int64(len(p.workers))
			tab[runCounter] = int64(uintptr(t.ptr(8 * (words - 1))))
			if p.mail != nil {
				tab[runCounter] = int64(uintptr(unsafe.Pointer(p.next)))
				tab[runMail], tab[runStride] = int64(uintptr(p.mail.ptr(256))), 256
			}
		}
	}
	return p
}

// runTable is the runner's table, after its argv word.
func (p *pool) runTable() []int64 {
	return unsafe.Slice((*int64)(p.table.ptr(8)), runHeader+runStepWords*p.maxCalls)
}

func (p *pool) serve(w *worker) {
	runtime.LockOSThread()
	var seen uint64
	for {
		g := w.gen.Load()
		idleSince := time.Now()
		for spins := 0; g == seen; spins++ {
			if spins%1024 != 0 || time.Since(idleSince) < IdleSpin {
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

// serveNative runs the native worker until it has been idle for
// nativeIdleSpins, then sleeps until something is posted.
func (p *pool) serveNative(w *worker) {
	defer p.exited.Done()
	runtime.LockOSThread()
	for {
		p.k.call(p.native, w.argv, nativeIdleSpins, 0)
		if w.quit.Load() {
			return
		}
		// Publish sleeping before the last look at the mailbox (as serve).
		p.mu.Lock()
		w.sleeping.Store(true)
		for !w.pending() && !w.quit.Load() && !w.held() {
			p.wake.Wait()
		}
		w.sleeping.Store(false)
		p.mu.Unlock()
	}
}

// hand gives w its next task.
func (p *pool) hand(w *worker, t task) {
	if p.native >= 0 {
		fn := uintptr(0)
		if !t.quit {
			fn = t.k.fns[t.kernel]
		} else {
			w.quit.Store(true)
		}
		w.mb[mailFn], w.mb[mailArgs], w.mb[mailLo], w.mb[mailHi] = int64(fn), int64(uintptr(t.args)), t.lo, t.hi
		w.mb[mailNext], w.mb[mailChunk] = 0, t.chunk
		if t.chunk > 0 {
			w.mb[mailNext] = int64(uintptr(unsafe.Pointer(p.next)))
		}
		w.mb[mailPosted] += 4 // open; the worker takes it as +1, run may withdraw it as +2
		atomic.StoreInt64(&w.mb[mailSeq], w.mb[mailPosted])
	} else {
		w.task = t
		w.gen.Add(1)
	}
	if w.sleeping.Load() {
		p.mu.Lock()
		p.wake.Broadcast()
		p.mu.Unlock()
	}
}

// run calls the kernel over [0, items), in ranges that are multiples of
// granule, one per thread; the calling goroutine takes the first range.
func (p *pool) run(k *Kernels, kernel int, args unsafe.Pointer, items, granule int64) {
	_, parts, perPart := p.split(items, granule)
	if parts <= 1 {
		k.call(kernel, args, 0, items)
		return
	}
	if p.native >= 0 {
		p.runDynamic(k, kernel, args, items, p.chunk(items, granule))
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

// chunksPerThread is how many pieces a dynamic split makes per thread: enough
// that a thread slowed down by another process hands most of its share to
// the others, few enough that the calls' fixed costs stay small.
const chunksPerThread = 4

// split divides [0, items) into chunks of granule, perPart of them per
// thread, in parts parts.
func (p *pool) split(items, granule int64) (chunks, parts, perPart int64) {
	chunks = (items + granule - 1) / granule
	perPart = (chunks + int64(p.threads) - 1) / int64(p.threads)
	parts = (chunks + perPart - 1) / max(perPart, 1)
	return chunks, parts, perPart
}

// chunk is the dynamic split's chunk (a multiple of granule) for a call
// over items, or 0 when the call runs on one thread.
func (p *pool) chunk(items, granule int64) int64 {
	chunks, parts, _ := p.split(items, granule)
	if parts <= 1 {
		return 0
	}
	return granule * max(1, chunks/(int64(p.threads)*chunksPerThread))
}

// runDynamic splits [0, items) into chunks that all threads (this one
// included) take from a shared counter until none are left.
func (p *pool) runDynamic(k *Kernels, kernel int, args unsafe.Pointer, items, chunk int64) {
	atomic.StoreInt64(p.next, 0)
	for _, w := range p.workers {
		p.hand(w, task{k: k, kernel: kernel, args: args, lo: 0, hi: items, chunk: chunk})
	}
	for {
		c := atomic.AddInt64(p.next, 1) - 1
		lo := c * chunk
		if lo >= items {
			break
		}
		k.call(kernel, args, lo, min(lo+chunk, items))
	}
	// Withdraw the call from workers that have not taken it (descheduled,
	// or asleep): only those that did must be waited for.
	for _, w := range p.workers {
		seq := w.mb[mailPosted]
		if atomic.CompareAndSwapInt64(&w.mb[mailSeq], seq, seq+2) {
			continue
		}
		for atomic.LoadInt64(&w.mb[mailDone]) != seq {
		}
	}
}

// setCall makes call i of the next runAll: kernel over [0, items), split
// in multiples of granule as run splits it. (The runner serves native
// workers or a pool of one thread, which chunk never splits for.)
func (p *pool) setCall(i int, k *Kernels, kernel int, args unsafe.Pointer, items, granule int64) {
	c := p.runTable()[runHeader+runStepWords*i:]
	c[runStepFn], c[runStepArgs], c[runStepItems] = int64(k.fns[kernel]), int64(uintptr(args)), items
	c[runStepChunk] = p.chunk(items, granule)
}

// runAll makes calls 0..n-1 set by setCall, in order, in one native call
// (the runner kernel). The runner posts from native code and cannot wake a
// worker asleep in Go, which would leave its share to the others for the
// whole program; so the workers are held in their native loop (MailHold)
// until it returns, and woken first if asleep. A worker publishes sleeping
// before its last look at the hold, as this sets the hold before looking at
// sleeping: one of the two sees the other.
func (p *pool) runAll(k *Kernels, n int) {
	for _, w := range p.workers {
		atomic.StoreInt64(&w.mb[mailHold], 1)
		if w.sleeping.Load() {
			p.mu.Lock()
			p.wake.Broadcast()
			p.mu.Unlock()
		}
	}
	k.call(p.runner, p.table.ptr(0), int64(n), 0)
	for _, w := range p.workers {
		atomic.StoreInt64(&w.mb[mailHold], 0)
	}
}

// held: a runner holds w in its native loop.
func (w *worker) held() bool { return atomic.LoadInt64(&w.mb[mailHold]) != 0 }

// pending: a call is posted that w has not taken.
func (w *worker) pending() bool {
	s := atomic.LoadInt64(&w.mb[mailSeq])
	return s&3 == 0 && s != atomic.LoadInt64(&w.mb[mailDone])
}

func (p *pool) close() {
	for _, w := range p.workers {
		p.hand(w, task{quit: true})
	}
	if p.native >= 0 {
		p.exited.Wait()
		p.mail.free()
	}
	if p.table != nil {
		p.table.free()
	}
}
