package codegen

import (
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/value"
)

// RunnerName is the symbol of the program runner kernel (runtime/plan names
// it too, as plan.RunnerKernel).
const RunnerName = "pool_run"

// Run table layout of Runner, in i64 words: a header, then RunStepWords
// words per kernel call.
const (
	RunWorkers = 0 // worker mailboxes (Worker's layout)
	RunCounter = 1 // address of the shared chunk counter
	RunMail    = 2 // address of the first worker's mailbox
	RunStride  = 3 // bytes from one mailbox to the next
	RunHeader  = 4

	RunStepFn    = 0 // kernel address
	RunStepArgs  = 1 // its args array
	RunStepItems = 2 // it runs [0, Items)
	RunStepChunk = 3 // 0: on the calling thread at once; else split dynamically in chunks of this many items
	RunStepWords = 4
)

// Runner makes a program's kernel calls in order (args[0] is the run table,
// lo the number of calls; hi is unused), splitting each over the pool's
// Workers as the Go pool does: it posts the call to every mailbox, takes
// chunks from the shared counter itself, then withdraws the call from the
// workers that have not taken it and waits for those that have.
//
// It exists so that a whole forward pass is one call from Go rather than
// hundreds. Every call from Go is a cgo call; while one is in progress the
// Go scheduler may take the calling thread's P, wake another thread to hold
// it, and make the return wait for a P. Traced with sched_switch events on
// a 2-vCPU VM, sysmon woke every 100–120 µs through whole decode steps,
// preempting a kernel thread each time, and further threads of the process
// competed for the two vCPUs; with the runner the built 2B q4_0's median
// decode step ran 1.13–1.16× faster.
type Runner struct{ poolKernel }

func (Runner) Name() string   { return RunnerName }
func (Runner) Args() []string { return []string{"table"} }

func (Runner) emit(g *gen) {
	tab := g.argPtr(0, tI64)
	workers := g.load(tI64, tab, ci64(RunWorkers))
	ctrAddr := g.load(tI64, tab, ci64(RunCounter))
	ctr := g.b.NewIntToPtr(ctrAddr, ptrT(tI64))
	mail0, stride := g.load(tI64, tab, ci64(RunMail)), g.load(tI64, tab, ci64(RunStride))
	mailbox := func(w value.Value) value.Value {
		return g.b.NewIntToPtr(g.add(mail0, g.mul(w, stride)), ptrT(tI64))
	}
	g.forRange(ci64(0), g.lo, 1, func(i value.Value) {
		step := g.gep(tI64, tab, g.addc(g.mulc(i, RunStepWords), RunHeader))
		fn := g.load(tI64, step, ci64(RunStepFn))
		argsAddr := g.load(tI64, step, ci64(RunStepArgs))
		items, chunk := g.load(tI64, step, ci64(RunStepItems)), g.load(tI64, step, ci64(RunStepChunk))
		f, args := g.kernelPtr(fn), g.b.NewIntToPtr(argsAddr, tI8PP)
		once, split, next := g.block("once"), g.block("split"), g.block("next")
		g.b.NewCondBr(g.b.NewICmp(enum.IPredEQ, chunk, ci64(0)), once, split)

		g.b = once
		once.NewCall(f, args, ci64(0), items)
		once.NewBr(next)

		g.b = split
		reset := g.b.NewStore(ci64(0), ctr)
		reset.Atomic, reset.Ordering, reset.Align = true, enum.AtomicOrderingMonotonic, 8
		g.forRange(ci64(0), workers, 1, func(w value.Value) {
			mb := mailbox(w)
			posted := g.addc(g.load(tI64, mb, ci64(MailPosted)), 4)
			g.store(fn, mb, ci64(MailFn))
			g.store(argsAddr, mb, ci64(MailArgs))
			g.store(ci64(0), mb, ci64(MailLo))
			g.store(items, mb, ci64(MailHi))
			g.store(ctrAddr, mb, ci64(MailNext))
			g.store(chunk, mb, ci64(MailChunk))
			g.store(posted, mb, ci64(MailPosted))
			g.storeRelease(posted, mb, MailSeq)
		})
		g.runChunks(f, args, ci64(0), items, chunk, ctr)
		g.forRange(ci64(0), workers, 1, func(w value.Value) {
			mb := mailbox(w)
			posted := g.load(tI64, mb, ci64(MailPosted))
			cx := g.b.NewCmpXchg(g.gep(tI64, mb, ci64(MailSeq)), posted, g.addc(posted, 2), enum.AtomicOrderingAcquireRelease, enum.AtomicOrderingAcquire)
			wait, done := g.block("wait"), g.block("joined")
			g.b.NewCondBr(g.b.NewExtractValue(cx, 1), done, wait)
			// Taken: wait until the worker has run its chunks.
			g.b = wait
			g.pause()
			wait.NewCondBr(wait.NewICmp(enum.IPredEQ, g.loadAcquire(mb, MailDone), posted), done, wait)
			g.b = done
		})
		g.b.NewBr(next)
		g.b = next
	})
}
