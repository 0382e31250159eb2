package codegen

import (
	"github.com/llir/llvm/ir"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// WorkerName is the symbol of the pool worker kernel (runtime/plan names it
// too, as plan.WorkerKernel).
const WorkerName = "pool_worker"

// Mailbox layout of Worker, in i64 words. The poster writes Fn, Args, Lo, Hi,
// Next and Chunk, then Seq = 4n (call n is open; atomically, after them).
// The worker takes an open call by changing Seq to 4n+1 (compare-and-swap),
// runs it and then stores 4n into Done (release). A poster that finished a
// dynamic split itself may withdraw a call nobody has taken yet by changing
// Seq to 4n+2, and then need not wait for Done. Done sits on its own cache
// line.
const (
	MailSeq   = 0
	MailFn    = 1 // kernel address; 0 makes the worker return
	MailArgs  = 2
	MailLo    = 3
	MailHi    = 4
	MailNext  = 5 // 0: call [Lo, Hi) once; else the address of a shared chunk counter
	MailChunk = 6 // items per chunk when MailNext is set
	// MailPosted is the last Seq posted; only posters read and write it
	// (the Go pool and Runner take turns, never at once).
	MailPosted = 7
	MailDone   = 8
	// MailHold, while not 0, keeps an idle worker spinning rather than
	// returning: a Runner is making a program's calls, and a worker asleep
	// in Go would miss the rest of them.
	MailHold  = 9
	MailWords = 16
)

// Worker is a thread-pool worker that never leaves native code between
// calls: it spins on a mailbox (args[0], i64[MailWords]) and calls each
// kernel posted there, so a pool thread does not go through the Go scheduler
// for every kernel call. With MailNext set, the call is split dynamically:
// the worker takes chunk numbers c from the shared counter (atomic add; the
// poster's thread takes them from the same counter) and runs
// [Lo + c·Chunk, min(Lo + (c+1)·Chunk, Hi)) until the range is used up, so a
// slow or descheduled thread does less of the work. It returns when posted
// a call with Fn = 0 (after setting Done), or after `lo` spins with nothing
// posted (lo ≤ 0: one look) and MailHold clear; the caller then decides
// whether to sleep. hi is unused.
type Worker struct{ poolKernel }

func (Worker) Name() string   { return WorkerName }
func (Worker) Args() []string { return []string{"mailbox"} }

// poolKernel is what the thread pool's own kernels (Worker, Runner) share:
// they are not work-item kernels, so Items and Granule are nominal, and
// they have no shape to validate.
type poolKernel struct{}

func (poolKernel) Items() int64    { return 1 }
func (poolKernel) Granule() int64  { return 1 }
func (poolKernel) Validate() error { return nil }

func (Worker) emit(g *gen) {
	mb := g.argPtr(0, tI64)
	entry := g.b
	seen0 := g.loadAcquire(mb, MailDone)
	spin, wait, work, call, quit, exit := g.block("spin"), g.block("wait"), g.block("work"), g.block("call"), g.block("quit"), g.block("exit")
	entry.NewBr(spin)

	g.b = spin
	seen := spin.NewPhi(ir.NewIncoming(seen0, entry))
	idle := spin.NewPhi(ir.NewIncoming(ci64(0), entry))
	s := g.loadAcquire(mb, MailSeq)
	open := spin.NewAnd(spin.NewICmp(enum.IPredEQ, spin.NewAnd(s, ci64(3)), ci64(0)), spin.NewICmp(enum.IPredNE, s, seen))
	claim := g.block("claim")
	spin.NewCondBr(open, claim, wait)

	// Take the call (open → open+1) unless the poster has withdrawn it.
	g.b = claim
	cx := claim.NewCmpXchg(g.gep(tI64, mb, ci64(MailSeq)), s, g.addc(s, 1), enum.AtomicOrderingAcquireRelease, enum.AtomicOrderingAcquire)
	claim.NewCondBr(claim.NewExtractValue(cx, 1), work, wait)

	g.b = wait
	g.pause()
	idle1 := g.addc(idle, 1)
	expired := g.block("expired")
	wait.NewCondBr(wait.NewICmp(enum.IPredSGE, idle1, g.lo), expired, spin)

	g.b = expired
	expired.NewCondBr(expired.NewICmp(enum.IPredEQ, g.loadAcquire(mb, MailHold), ci64(0)), exit, spin)

	g.b = work
	fn := g.load(tI64, mb, ci64(MailFn))
	work.NewCondBr(work.NewICmp(enum.IPredEQ, fn, ci64(0)), quit, call)

	g.b = call
	f := g.kernelPtr(fn)
	args := call.NewIntToPtr(g.load(tI64, mb, ci64(MailArgs)), tI8PP)
	lo, hi := g.load(tI64, mb, ci64(MailLo)), g.load(tI64, mb, ci64(MailHi))
	next := g.load(tI64, mb, ci64(MailNext))
	once, grab, fin := g.block("once"), g.block("grab"), g.block("fin")
	call.NewCondBr(call.NewICmp(enum.IPredEQ, next, ci64(0)), once, grab)

	g.b = once
	once.NewCall(f, args, lo, hi)
	once.NewBr(fin)

	g.b = grab
	g.runChunks(f, args, lo, hi, g.load(tI64, mb, ci64(MailChunk)), g.b.NewIntToPtr(next, ptrT(tI64)))
	g.b.NewBr(fin)

	g.b = fin
	g.storeRelease(s, mb, MailDone)
	fin.NewBr(spin)
	seen.Incs = append(seen.Incs, ir.NewIncoming(seen, wait), ir.NewIncoming(seen, expired), ir.NewIncoming(s, fin))
	idle.Incs = append(idle.Incs, ir.NewIncoming(idle1, wait), ir.NewIncoming(ci64(0), expired), ir.NewIncoming(ci64(0), fin))

	g.b = quit
	g.storeRelease(s, mb, MailDone)
	quit.NewBr(exit)

	g.b = exit
}

// kernelPtr casts a kernel's address to a callable kernel pointer.
func (g *gen) kernelPtr(addr value.Value) value.Value {
	return g.b.NewIntToPtr(addr, types.NewPointer(types.NewFunc(tVoid, tI8PP, tI64, tI64)))
}

// runChunks calls kernel f on [lo + c·chunk, min(lo + (c+1)·chunk, hi)) for
// each chunk number c it takes from the shared counter ctr (atomic add),
// until the range is used up: the dynamic split of a pool call, run the same
// way by the worker and by the thread that posted it.
func (g *gen) runChunks(f, args, lo, hi, chunk, ctr value.Value) {
	take, run, done := g.block("take"), g.block("run"), g.block("done")
	g.b.NewBr(take)
	g.b = take
	c := take.NewAtomicRMW(enum.AtomicOpAdd, ctr, ci64(1), enum.AtomicOrderingMonotonic)
	clo := g.add(lo, g.mul(c, chunk))
	take.NewCondBr(g.slt(clo, hi), run, done)
	g.b = run
	run.NewCall(f, args, clo, g.smin(g.add(clo, chunk), hi))
	run.NewBr(take)
	g.b = done
}

// loadAcquire atomically loads p[i] (i64) with acquire ordering.
func (g *gen) loadAcquire(p value.Value, i int64) value.Value {
	l := g.b.NewLoad(tI64, g.gep(tI64, p, ci64(i)))
	l.Atomic, l.Ordering, l.Align = true, enum.AtomicOrderingAcquire, 8
	return l
}

// storeRelease atomically stores v into p[i] (i64) with release ordering.
func (g *gen) storeRelease(v, p value.Value, i int64) {
	s := g.b.NewStore(v, g.gep(tI64, p, ci64(i)))
	s.Atomic, s.Ordering, s.Align = true, enum.AtomicOrderingRelease, 8
}

// pause is a spin-wait hint (x86's pause; nothing elsewhere).
func (g *gen) pause() {
	if g.t.isX86() {
		g.b.NewCall(g.m.intrinsic("llvm.x86.sse2.pause", tVoid))
	}
}
