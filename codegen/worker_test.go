package codegen

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// TestWorker runs the pool worker on its own thread, posts kernel calls to
// its mailbox and checks that each runs once, over the posted range, before
// Done is published; then that it returns when idle and when told to quit.
func TestWorker(t *testing.T) {
	for _, tg := range testTargets() {
		t.Run(tg.Name, func(t *testing.T) {
			add := Elementwise{N: 1000, Op: OpAdd}
			m := NewModule(tg)
			m.MustAdd(Worker{})
			m.MustAdd(add)
			l := buildLib(t, m)
			mb := make([]int64, MailWords+8)
			off := (64 - int(uintptr(unsafe.Pointer(&mb[0]))%64)) % 64 / 8
			mb = mb[off : off+MailWords]
			argv := []uintptr{addr(mb)}
			a, b, out := randF32(add.N, 1, 1), randF32(add.N, 2, 1), f32buf(add.N)
			kargs := []uintptr{addr(out), addr(a), addr(b)}

			// Idle: it returns after its spins, with nothing run.
			start := time.Now()
			l.call(t, WorkerName, argv, 1000, 0)
			if mb[MailDone] != 0 {
				t.Fatalf("idle worker set done = %d", mb[MailDone])
			}
			t.Logf("1000 idle spins: %v", time.Since(start))

			ret := make(chan struct{})
			go func() {
				runtime.LockOSThread()
				l.call(t, WorkerName, argv, 1<<62, 0)
				close(ret)
			}()
			ctr := make([]int64, 16)
			seq := int64(0)
			// post runs [lo, hi) through the worker: at once (chunk 0), or in
			// chunks from a shared counter, which this thread also takes
			// from when help is set.
			post := func(fn uintptr, lo, hi, chunk int64, help bool) {
				seq += 4
				next := uintptr(0)
				if chunk > 0 {
					ctr[0] = 0
					next = addr(ctr)
				}
				mb[MailFn], mb[MailArgs], mb[MailLo], mb[MailHi] = int64(fn), int64(addr(kargs)), lo, hi
				mb[MailNext], mb[MailChunk] = int64(next), chunk
				atomic.StoreInt64(&mb[MailSeq], seq)
				for help {
					c := atomic.AddInt64(&ctr[0], 1) - 1
					if lo+c*chunk >= hi {
						break
					}
					l.call(t, add.Name(), kargs, lo+c*chunk, min(lo+(c+1)*chunk, hi))
				}
				if help && atomic.CompareAndSwapInt64(&mb[MailSeq], seq, seq+2) {
					return // withdrawn: the worker never took it
				}
				for atomic.LoadInt64(&mb[MailDone]) != seq {
				}
			}
			want := make([]float64, add.N)
			for i := range want {
				want[i] = float64(a[i] + b[i])
			}
			fn := l.syms[add.Name()]
			for _, r := range [][2]int64{{0, 0}, {0, 300}, {300, 301}, {301, 1000}} {
				post(fn, r[0], r[1], 0, false)
			}
			checkElem(t, "add through the worker", out, want, 0, 0)
			for _, c := range []struct {
				lo, hi, chunk int64
				help          bool
			}{{0, 1000, 7, false}, {0, 1000, 1, true}, {3, 1000, 64, true}, {0, 1000, 2000, true}} {
				clear32(out)
				if c.lo > 0 {
					post(fn, 0, c.lo, 0, false)
				}
				post(fn, c.lo, c.hi, c.chunk, c.help)
				checkElem(t, fmt.Sprintf("add in chunks of %d from %d, help %v", c.chunk, c.lo, c.help), out, want, 0, 0)
				if got := ctr[0]; got < (c.hi-c.lo+c.chunk-1)/c.chunk+1 {
					t.Errorf("chunk counter at %d after %d..%d in chunks of %d", got, c.lo, c.hi, c.chunk)
				}
			}
			post(0, 0, 0, 0, false)
			select {
			case <-ret:
			case <-time.After(10 * time.Second):
				t.Fatal("worker did not return when posted fn = 0")
			}
			runtime.KeepAlive(kargs)
			runtime.KeepAlive(argv)
			runtime.KeepAlive(mb)
		})
	}
}
