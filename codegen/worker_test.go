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
// Done is published; then that it returns when idle (not while held) and
// when told to quit.
func TestWorker(t *testing.T) {
	for _, tg := range testTargets() {
		t.Run(tg.Name, func(t *testing.T) {
			l, add := poolLib(t, tg)
			mb := mailboxes(1)
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

			// Held: it spins on past them until the hold is released.
			atomic.StoreInt64(&mb[MailHold], 1)
			released := make(chan struct{})
			go func() {
				runtime.LockOSThread()
				l.call(t, WorkerName, argv, 1000, 0)
				close(released)
			}()
			select {
			case <-released:
				t.Fatal("a held worker returned after its idle spins")
			case <-time.After(50 * time.Millisecond):
			}
			atomic.StoreInt64(&mb[MailHold], 0)
			select {
			case <-released:
			case <-time.After(10 * time.Second):
				t.Fatal("worker did not return once the hold was released")
			}

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

// TestRunner runs a three-call program through the runner, each call
// reading the previous one's output, with no workers, with a worker thread,
// and with a mailbox whose worker never runs (every split call must then be
// withdrawn and done by the runner alone). Single calls run at once; split
// calls post to every mailbox.
func TestRunner(t *testing.T) {
	for _, tg := range testTargets() {
		t.Run(tg.Name, func(t *testing.T) {
			l, add := poolLib(t, tg)
			n := add.N
			a, b := randF32(n, 1, 1), randF32(n, 2, 1)
			out1, out2, out3 := f32buf(n), f32buf(n), f32buf(n)
			// out1 = a + b (at once), out2 = out1 + b (chunks of 7),
			// out3 = out2 + a (chunks of 64): out3 = 2a + 2b.
			calls := [][]uintptr{{addr(out1), addr(a), addr(b)}, {addr(out2), addr(out1), addr(b)}, {addr(out3), addr(out2), addr(a)}}
			chunks := []int64{0, 7, 64}
			want := make([]float64, n)
			for i := range want {
				want[i] = float64((a[i] + b[i] + b[i]) + a[i])
			}

			mail := mailboxes(2)
			ctr := make([]int64, 8)
			table := make([]int64, RunHeader+RunStepWords*len(calls))
			table[RunCounter], table[RunMail], table[RunStride] = int64(addr(ctr)), int64(addr(mail)), 8*MailWords
			for i, c := range calls {
				s := table[RunHeader+RunStepWords*i:]
				s[RunStepFn], s[RunStepArgs], s[RunStepItems], s[RunStepChunk] = int64(l.syms[add.Name()]), int64(addr(c)), int64(n), chunks[i]
			}
			argv := []uintptr{addr(table)}
			run := func(what string, workers int64) {
				t.Helper()
				table[RunWorkers] = workers
				for _, o := range [][]float32{out1, out2, out3} {
					clear32(o)
				}
				l.call(t, RunnerName, argv, int64(len(calls)), 0)
				checkElem(t, what, out3, want, 0, 0)
			}

			run("no workers", 0)
			if mail[MailPosted] != 0 {
				t.Fatalf("posted %d with no workers", mail[MailPosted])
			}

			// The first mailbox's worker runs; the second's never does.
			ret := make(chan struct{})
			go func() {
				runtime.LockOSThread()
				l.call(t, WorkerName, []uintptr{addr(mail)}, 1<<62, 0)
				close(ret)
			}()
			for round := 1; round <= 50; round++ {
				run(fmt.Sprintf("round %d with a worker and an absent one", round), 2)
				idle := mail[MailWords:]
				if want := int64(8 * round); mail[MailPosted] != want || idle[MailPosted] != want {
					t.Fatalf("round %d: posted %d and %d, want %d (two split calls a round)", round, mail[MailPosted], idle[MailPosted], want)
				}
				if idle[MailSeq] != idle[MailPosted]+2 {
					t.Fatalf("round %d: the absent worker's call was not withdrawn: seq %d, posted %d", round, idle[MailSeq], idle[MailPosted])
				}
				if s := atomic.LoadInt64(&mail[MailSeq]); s != mail[MailPosted]+1 && s != mail[MailPosted]+2 {
					t.Fatalf("round %d: worker's seq %d, posted %d: neither taken nor withdrawn", round, s, mail[MailPosted])
				}
			}
			mail[MailFn] = 0
			atomic.StoreInt64(&mail[MailSeq], mail[MailPosted]+4)
			select {
			case <-ret:
			case <-time.After(10 * time.Second):
				t.Fatal("worker did not return when posted fn = 0")
			}
			runtime.KeepAlive(calls)
			runtime.KeepAlive(argv)
		})
	}
}

// poolLib builds the pool kernels (Worker, Runner) and an add kernel of
// 1000 elements for tg.
func poolLib(t *testing.T, tg Target) (*lib, Elementwise) {
	add := Elementwise{N: 1000, Op: OpAdd}
	m := NewModule(tg)
	m.MustAdd(Worker{})
	m.MustAdd(Runner{})
	m.MustAdd(add)
	return buildLib(t, m), add
}

// mailboxes returns n consecutive mailboxes, the first on a cache line of
// its own.
func mailboxes(n int) []int64 {
	mb := make([]int64, n*MailWords+8)
	off := (64 - int(uintptr(unsafe.Pointer(&mb[0]))%64)) % 64 / 8
	return mb[off : off+n*MailWords]
}
