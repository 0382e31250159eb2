package cpu

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/frontend/mmap"
	"github.com/gemmac/gemmac/frontend/packed"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/plan"
)

// Engine runs a compiled artifact's programs. It implements model.Engine.
type Engine struct {
	// mu serialises calls: the thread pool runs one kernel at a time.
	mu      sync.Mutex
	art     *plan.Artifact
	kernels *Kernels
	pool    *pool
	// weights are the addresses of the artifact's weights, by index.
	weights []unsafe.Pointer
	// owned holds the derived weights and the RoPE table.
	owned []*region
	rope  unsafe.Pointer
	// packed is the build's packed weights file, when it has one.
	packed *packed.File
	// profile, when not nil, accumulates time per kernel.
	profile map[string]*KernelTime
	// batchRun is the batched decode step's memory (batch.go), made on
	// first use.
	batchRun *batchRun
}

// KernelTime is where a profiled engine spent its time.
type KernelTime struct {
	Kernel string
	Calls  int
	Time   time.Duration
}

// EnableProfile makes the engine time every kernel call (a little slower).
func (e *Engine) EnableProfile() { e.profile = map[string]*KernelTime{} }

// Profile returns the time per kernel, most expensive first.
func (e *Engine) Profile() []KernelTime {
	var out []KernelTime
	for _, k := range e.profile {
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time > out[j].Time })
	return out
}

// Options tune an engine.
type Options struct {
	// Threads is the size of the thread pool; 0 means one per CPU.
	Threads int
	// MapWeights reads the weights straight from the checkpoint's memory
	// map instead of staging them in huge pages (less memory, slower: with
	// 4 KiB pages of the page cache, decode is TLB-bound at a third of the
	// memory bandwidth). Matrices the plan reads laid out in panels
	// (plan.Weight.Panel) are laid out in huge pages all the same.
	MapWeights bool
	// GoWorkers makes the pool threads wait for work in Go instead of in
	// the native worker kernel (for comparison; slower).
	GoWorkers bool
	// PerCall makes every kernel call from Go instead of a program's calls
	// in one native call (for comparison; slower).
	PerCall bool
	// WeightsFile is the packed weights file of a build that converted its
	// weights; "" looks beside the executable.
	WeightsFile string
}

// New binds a checkpoint to a compiled artifact. The checkpoint must have the
// configuration the artifact was compiled for, field by field, and the
// weight dtypes its kernels read.
func New(art *plan.Artifact, kernels *Kernels, ckpt *frontend.Checkpoint, opts Options) (*Engine, error) {
	threads := opts.Threads
	if len(kernels.fns) != len(art.Kernels) {
		return nil, fmt.Errorf("the binary links %d kernels, its plan names %d", len(kernels.fns), len(art.Kernels))
	}
	if err := checkFeatures(art.Target, art.Features); err != nil {
		return nil, err
	}
	if err := art.Config.SameShape(ckpt.Config); err != nil {
		return nil, fmt.Errorf("checkpoint %s does not match the compiled model: %w", ckpt.Dir, err)
	}
	if threads <= 0 {
		// One worker per CPU the process may run on, at most: the workers
		// wait for work spinning, so one more than there are CPUs takes
		// the time of one that has work (GOMAXPROCS=8 on 2 CPUs halved
		// prefill). A lower GOMAXPROCS (a container's CPU quota) wins.
		threads = min(runtime.GOMAXPROCS(0), runtime.NumCPU())
	}
	maxCalls := 0
	for _, p := range art.Programs {
		maxCalls = max(maxCalls, len(p.Steps))
	}
	e := &Engine{art: art, kernels: kernels, pool: newPool(threads, kernels, !opts.GoWorkers, opts.PerCall, maxCalls)}
	if art.Packed != nil {
		var err error
		if e.packed, ckpt, err = openPacked(art, ckpt, opts.WeightsFile); err != nil {
			e.Close()
			return nil, err
		}
	}
	if err := e.bindWeights(ckpt, !opts.MapWeights); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.fillRoPE(); err != nil {
		e.Close()
		return nil, err
	}
	if opts.MapWeights {
		e.warmWeights()
	}
	return e, nil
}

func (e *Engine) bindWeights(ckpt *frontend.Checkpoint, stage bool) error {
	for _, w := range e.art.Weights {
		t, ok := ckpt.Weights[w.Name]
		if !ok {
			return fmt.Errorf("checkpoint %s has no tensor %s", ckpt.Dir, w.Name)
		}
		if !t.Shape.Equal(w.Shape) {
			return fmt.Errorf("tensor %s is %v, compiled for %v", w.Name, t.Shape, w.Shape)
		}
		if w.Derived != nil {
			data, err := w.Derived.Apply(t)
			if err != nil {
				return fmt.Errorf("tensor %s: %w", w.Name, err)
			}
			r, err := allocRegion(int64(len(data) * 4))
			if err != nil {
				return err
			}
			copy(r.f32s(0, len(data)), data)
			e.owned = append(e.owned, r)
			e.weights = append(e.weights, r.ptr(0))
			continue
		}
		if t.DType.String() != w.DType {
			return fmt.Errorf("tensor %s is %v; this binary was compiled for %s weights (rebuild with --dtype %v)", w.Name, t.DType, w.DType, t.DType)
		}
		if len(t.Data) == 0 {
			return fmt.Errorf("tensor %s is empty", w.Name)
		}
		if w.Panel > 0 {
			// Laid out whatever stage says: the kernels cannot read the
			// checkpoint's rows.
			r, err := e.layPanels(t, w.Panel)
			if err != nil {
				return fmt.Errorf("tensor %s: %w", w.Name, err)
			}
			if !ckpt.InMemory {
				mmap.Release(t.Data)
			}
			e.owned = append(e.owned, r)
			e.weights = append(e.weights, r.ptr(0))
			continue
		}
		// A converted checkpoint's tensors are in huge pages already
		// (frontend.Convert): read them where they are.
		if !stage || ckpt.InMemory {
			e.weights = append(e.weights, unsafe.Pointer(&t.Data[0]))
			continue
		}
		r, err := allocHuge(int64(len(t.Data)))
		if err != nil {
			return err
		}
		e.copyParallel(r.mem, t.Data)
		mmap.Release(t.Data)
		e.owned = append(e.owned, r)
		e.weights = append(e.weights, r.ptr(0))
	}
	return nil
}

// copyParallel copies with every thread: staging a model's weights is
// bounded by memory bandwidth, which one core does not reach.
func (e *Engine) copyParallel(dst, src []byte) {
	const chunk = 8 << 20
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < e.pool.threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range next {
				copy(dst[off:min(off+chunk, len(src))], src[off:min(off+chunk, len(src))])
			}
		}()
	}
	for off := 0; off < len(src); off += chunk {
		next <- off
	}
	close(next)
	wg.Wait()
}

// layPanels lays the f32 matrix t out in panels of p columns
// (ir.LayPanels) in huge pages, the panels split over every thread.
func (e *Engine) layPanels(t ir.Tensor, p int) (*region, error) {
	if len(t.Shape) != 2 || t.DType != ir.F32 {
		return nil, fmt.Errorf("%v %v is not an f32 matrix to lay out in panels", t.DType, t.Shape)
	}
	N, K := t.Shape[0], t.Shape[1]
	src, err := float32View(t)
	if err != nil {
		return nil, err
	}
	if len(src) != N*K {
		return nil, fmt.Errorf("%d values for %v", len(src), t.Shape)
	}
	n := ir.PanelFloats(N, K, p)
	r, err := allocHuge(int64(n) * 4)
	if err != nil {
		return nil, err
	}
	dst := r.f32s(0, n)
	panels := ir.PanelCount(N, p)
	var wg sync.WaitGroup
	for w := 0; w < e.pool.threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ir.LayPanels(dst, src, N, K, p, panels*w/e.pool.threads, panels*(w+1)/e.pool.threads)
		}()
	}
	wg.Wait()
	return r, nil
}

// float32View reads the f32 tensor t where it is when its data is 4-byte
// aligned (a checkpoint's tensors are), else from a copy.
func float32View(t ir.Tensor) ([]float32, error) {
	if p := unsafe.SliceData(t.Data); uintptr(unsafe.Pointer(p))%4 == 0 && len(t.Data)%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(p)), len(t.Data)/4), nil
	}
	return t.Float32s()
}

// fillRoPE computes the cos/sin table in float64, as the interpreter does.
func (e *Engine) fillRoPE() error {
	d, theta := e.art.RoPE.Dim, e.art.RoPE.Theta
	if d <= 0 || d%2 != 0 {
		return fmt.Errorf("compiled plan has a RoPE dimension of %d", d)
	}
	r, err := allocRegion(int64(e.art.Context * d * 4))
	if err != nil {
		return err
	}
	e.owned = append(e.owned, r)
	table := r.f32s(0, e.art.Context*d)
	half := d / 2
	for p := 0; p < e.art.Context; p++ {
		for i := 0; i < half; i++ {
			freq := math.Pow(theta, -float64(2*i)/float64(d))
			sin, cos := math.Sincos(float64(p) * freq)
			table[p*d+i], table[p*d+half+i] = float32(cos), float32(sin)
		}
	}
	e.rope = r.ptr(0)
	return nil
}

// warmWeights reads one byte of every page of the weights, in parallel, so
// the first token does not wait on page-ins of the memory map.
func (e *Engine) warmWeights() {
	var sink byte
	for i, w := range e.art.Weights {
		b := unsafe.Slice((*byte)(e.weights[i]), weightBytes(w))
		for off := 0; off < len(b); off += 4096 {
			sink ^= b[off]
		}
	}
	_ = sink
}

// weightBytes is the size of w as the kernels read it: derived weights are
// materialised as f32.
func weightBytes(w plan.Weight) int {
	if w.Derived != nil {
		return ir.Shape(w.Shape).Elems() * 4
	}
	if w.Panel > 0 && len(w.Shape) == 2 {
		return ir.PanelFloats(w.Shape[0], w.Shape[1], w.Panel) * 4
	}
	dt, err := ir.ParseDType(w.DType)
	if err != nil {
		return 0 // plan.Check rejected unknown dtypes
	}
	n, err := dt.TensorBytes(w.Shape)
	if err != nil {
		return 0
	}
	return n
}

// WeightBytesPerToken is the bytes of weights a decode step reads, as the
// kernels store them (norm scales as the f32 they are folded into); an
// untied embedding contributes one row.
func (e *Engine) WeightBytesPerToken() int64 {
	var n int64
	for _, w := range e.art.Weights {
		bytes := int64(weightBytes(w))
		if w.Name == frontend.EmbedName && !e.art.Config.TieWordEmbeddings {
			bytes /= int64(e.art.Config.VocabSize)
		}
		n += bytes
	}
	return n
}

// KVDType is the KV cache's element type.
func (e *Engine) KVDType() ir.DType {
	if e.art.KVType() == "bf16" {
		return ir.BF16
	}
	return ir.F32
}

// Name is "cpu".
func (e *Engine) Name() string { return "compiled " + e.art.Target }

// Context is the compiled number of positions.
func (e *Engine) Context() int { return e.art.Context }

// Threads is the size of the thread pool.
func (e *Engine) Threads() int { return e.pool.threads }

// Close stops the threads and frees the engine's memory.
func (e *Engine) Close() error {
	e.pool.close()
	var errs []error
	for _, r := range e.owned {
		errs = append(errs, r.free())
	}
	if e.packed != nil {
		errs = append(errs, e.packed.Close())
	}
	return errors.Join(errs...)
}

// NewState allocates one sequence's KV cache, arena and call buffers.
func (e *Engine) NewState() (model.State, error) {
	s := &state{e: e}
	var arena int64
	for _, p := range e.art.Programs {
		if p.Batch > 0 {
			continue // the engine's own (batch.go)
		}
		arena = max(arena, p.ArenaBytes)
		s.maxTokens = max(s.maxTokens, p.Tokens)
	}
	var err error
	if s.kv, err = allocRegion(e.art.KVBytes); err != nil {
		return nil, err
	}
	if s.arena, err = allocRegion(arena); err != nil {
		return nil, err
	}
	if s.io, err = allocRegion(int64(16 + 4*s.maxTokens)); err != nil {
		return nil, err
	}
	s.kv.touch()
	s.arena.touch()
	s.args = map[*plan.Program]*region{}
	for _, p := range e.art.Programs {
		if p.Batch > 0 {
			continue
		}
		if s.args[p], err = e.argBlock(p, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// argBlock resolves every step's arguments once, into the pointer arrays
// the kernels receive.
func (e *Engine) argBlock(p *plan.Program, s *state) (*region, error) {
	r, err := allocRegion(int64(argCount(p) * 8))
	if err != nil {
		return nil, err
	}
	return r, e.bindArgs(p, r, func(a plan.Arg) unsafe.Pointer {
		switch a.Kind {
		case plan.ArgArena:
			return s.arena.ptr(a.Offset)
		case plan.ArgKV:
			return s.kv.ptr(a.Offset)
		case plan.ArgTokens:
			return s.io.ptr(16)
		case plan.ArgScalars:
			return s.io.ptr(0)
		}
		return nil
	})
}

// argCount is the number of pointers p's steps take (at least one, so an
// argument block is never empty).
func argCount(p *plan.Program) int {
	n := 0
	for _, st := range p.Steps {
		n += len(st.Args)
	}
	return max(n, 1)
}

// bindArgs writes the pointer of every step's arguments, in order, into r
// (argCount(p) pointers): the weights and the RoPE table are the engine's,
// the rest where place puts them. An argument neither places is an error.
func (e *Engine) bindArgs(p *plan.Program, r *region, place func(plan.Arg) unsafe.Pointer) error {
	ptrs := unsafe.Slice((*unsafe.Pointer)(r.ptr(0)), argCount(p))
	i := 0
	for _, st := range p.Steps {
		for _, a := range st.Args {
			switch a.Kind {
			case plan.ArgWeight:
				ptrs[i] = e.weights[a.Index]
			case plan.ArgRoPE:
				ptrs[i] = e.rope
			default:
				if ptrs[i] = place(a); ptrs[i] == nil {
					return fmt.Errorf("program %s: a %s argument has no place in it", p.Name, a.Kind)
				}
			}
			i++
		}
	}
	return nil
}

type state struct {
	e         *Engine
	kv, arena *region
	// io holds the call's scalars {pos, n_valid} (i64) and token ids (i32).
	io        *region
	args      map[*plan.Program]*region
	maxTokens int
}

func (s *state) Bytes() int64 { return int64(len(s.kv.mem)) }

// Forward runs tokens through the decode program (one token) or prefill
// chunks, as the interpreter engine does.
func (s *state) Forward(tokens []int32, pos int, all bool) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("no tokens to run")
	}
	name := "prefill"
	switch {
	case len(tokens) == 1:
		name = "decode"
	case all:
		name = "prefill_all"
	}
	p := s.e.art.Programs[name]
	if p == nil {
		return nil, fmt.Errorf("the binary has no %s program", name)
	}
	var out []float32
	for start := 0; start < len(tokens); start += p.Tokens {
		end := min(start+p.Tokens, len(tokens))
		logits, err := s.run(p, tokens[start:end], pos+start)
		if err != nil {
			return nil, err
		}
		if all {
			out = append(out, logits...)
		} else {
			out = logits
		}
	}
	return out, nil
}

// run checks the call in Go, then executes the program's steps. The kernels
// trust every id, position and length; this is where they are checked.
func (s *state) run(p *plan.Program, tokens []int32, pos int) ([]float32, error) {
	n := len(tokens)
	vocab := s.e.art.Config.VocabSize
	if n > p.Tokens {
		return nil, fmt.Errorf("program %s takes %d tokens, got %d", p.Name, p.Tokens, n)
	}
	if pos < 0 || pos+n > s.e.art.Context {
		return nil, &model.ContextError{Tokens: pos + n, Context: s.e.art.Context}
	}
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	ids := unsafe.Slice((*int32)(s.io.ptr(16)), s.maxTokens)
	for i, t := range tokens {
		if t < 0 || int(t) >= vocab {
			return nil, fmt.Errorf("token %d at index %d is outside the vocabulary of %d", t, i, vocab)
		}
		ids[i] = t
	}
	for i := n; i < p.Tokens; i++ {
		ids[i] = 0
	}
	scalars := unsafe.Slice((*int64)(s.io.ptr(0)), 2)
	scalars[0], scalars[1] = int64(pos), int64(n)

	s.e.steps(p, s.args[p], n)
	rows := p.Output.Rows
	if rows > 1 {
		rows = n
	}
	out := make([]float32, rows*p.Output.Cols)
	copy(out, s.arena.f32s(p.Output.Offset, len(out)))
	return out, nil
}
