package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/gemmac/gemmac/codegen/ptx"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/plan"
)

// Options tune a CUDA engine.
type Options struct {
	// Device is the GPU ordinal.
	Device int
	// NoGraphs launches every kernel of a decode step from the host instead
	// of replaying the step captured once as a CUDA graph.
	NoGraphs bool
	// NoPDL launches every decode kernel only after the one before it has
	// finished, instead of letting it start early (programmatic dependent
	// launch, for sm_90 builds: the kernels wait with griddepcontrol.wait).
	NoPDL bool
	// PDLPrefill lets prefill kernels start early too. It is off: on an
	// H200 it made the 2B's 512-token prefill slower (bench/gpu).
	PDLPrefill bool
	// Chunk is the prefill chunk when the engine compiles the model itself
	// (NewEngineFunc); 0 means 256.
	Chunk int
	// PTXCache is a directory of PTX compiled earlier (codegen/ptx's cache),
	// for machines without LLVM.
	PTXCache string
	// Target is the GPU the engine compiles for (Compile, NewEngineFunc);
	// the zero value means ptx.DefaultTarget.
	Target ptx.Target
}

// Engine runs a compiled model on one GPU. It implements model.Engine.
type Engine struct {
	mu      sync.Mutex
	dev     *Device
	c       *ptx.Compiled
	opts    Options
	mod     uintptr
	funcs   []uintptr
	weights []devptr
	rope    devptr
	stream  uintptr
	states  []*State
	// JITLog is the driver's JIT info log for the module.
	JITLog string
	// GraphErr says why CUDA graphs are off when they were asked for.
	GraphErr error
	// canPDL: the model was compiled for PDL and the driver can launch so.
	canPDL bool
}

// NewEngineFunc compiles the checkpoint's model for the GPU (PTX from llc
// or the cache) and returns an engine for it: the hook model.Options.Engine
// takes.
func NewEngineFunc(opts Options) func(*frontend.Checkpoint, model.Options) (model.Engine, error) {
	return func(ckpt *frontend.Checkpoint, mo model.Options) (model.Engine, error) {
		c, err := Compile(ckpt, mo.Context, opts)
		if err != nil {
			return nil, err
		}
		return New(c, ckpt, opts)
	}
}

// Compile lowers a checkpoint's model for the GPU and gets its PTX.
func Compile(ckpt *frontend.Checkpoint, context int, opts Options) (*ptx.Compiled, error) {
	c, err := ptx.Build(ckpt.Config, ckpt.WeightDTypes(), ptx.Options{Target: opts.Target, Context: context, Chunk: opts.Chunk})
	if err != nil {
		return nil, err
	}
	if err := c.EmitPTX(opts.PTXCache, ""); err != nil {
		return nil, err
	}
	return c, nil
}

// New loads the PTX, uploads the weights (as stored; derived norm weights
// as f32) and the RoPE table.
func New(c *ptx.Compiled, ckpt *frontend.Checkpoint, opts Options) (*Engine, error) {
	if c.PTX == "" {
		return nil, fmt.Errorf("cuda: the compiled model has no PTX (run EmitPTX)")
	}
	if err := c.Artifact.Config.SameShape(ckpt.Config); err != nil {
		return nil, fmt.Errorf("checkpoint %s does not match the compiled model: %w", ckpt.Dir, err)
	}
	dev, err := Open(opts.Device)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	e := &Engine{dev: dev, c: c, opts: opts, canPDL: c.Module.Target.PDL() && dev.d.has("cuLaunchKernelEx")}
	if err := e.init(ckpt); err != nil {
		e.closeLocked()
		return nil, err
	}
	return e, nil
}

func (e *Engine) init(ckpt *frontend.Checkpoint) error {
	dv := e.dev
	if err := dv.bind(); err != nil {
		return err
	}
	mod, info, err := dv.module(e.c.PTX)
	e.JITLog = info
	if err != nil {
		return err
	}
	e.mod = mod
	for _, name := range e.c.Artifact.Kernels {
		f, err := dv.function(mod, name)
		if err != nil {
			return err
		}
		e.funcs = append(e.funcs, f)
	}
	if e.stream, err = dv.newStream(); err != nil {
		return err
	}
	for _, w := range e.c.Artifact.Weights {
		t, ok := ckpt.Weights[w.Name]
		if !ok {
			return fmt.Errorf("checkpoint %s has no tensor %s", ckpt.Dir, w.Name)
		}
		if !t.Shape.Equal(w.Shape) {
			return fmt.Errorf("tensor %s is %v, compiled for %v", w.Name, t.Shape, w.Shape)
		}
		if w.Panel > 0 {
			return fmt.Errorf("tensor %s: the plan lays it out in panels, which only the CPU kernels read", w.Name)
		}
		var src unsafe.Pointer
		var n int64
		if w.Derived != nil {
			data, err := w.Derived.Apply(t)
			if err != nil {
				return fmt.Errorf("tensor %s: %w", w.Name, err)
			}
			src, n = unsafe.Pointer(&data[0]), int64(len(data)*4)
			defer runtime.KeepAlive(data)
		} else {
			if t.DType.String() != w.DType {
				return fmt.Errorf("tensor %s is %v; the model was compiled for %s weights", w.Name, t.DType, w.DType)
			}
			if len(t.Data) == 0 {
				return fmt.Errorf("tensor %s is empty", w.Name)
			}
			src, n = unsafe.Pointer(&t.Data[0]), int64(len(t.Data))
		}
		p, err := dv.alloc(n)
		if err != nil {
			return fmt.Errorf("weight %s: %w", w.Name, err)
		}
		e.weights = append(e.weights, p)
		if err := dv.htod(p, src, n); err != nil {
			return fmt.Errorf("weight %s: %w", w.Name, err)
		}
	}
	return e.fillRoPE()
}

// CopiesWeights: the weights live in device memory once New returns
// (model.WeightCopier).
func (e *Engine) CopiesWeights() bool { return true }

// fillRoPE computes the cos/sin table in float64, as the CPU engine does.
func (e *Engine) fillRoPE() error {
	art := e.c.Artifact
	d, theta := art.RoPE.Dim, art.RoPE.Theta
	if d <= 0 || d%2 != 0 {
		return fmt.Errorf("compiled plan has a RoPE dimension of %d", d)
	}
	table := make([]float32, art.Context*d)
	half := d / 2
	for p := 0; p < art.Context; p++ {
		for i := 0; i < half; i++ {
			freq := math.Pow(theta, -float64(2*i)/float64(d))
			sin, cos := math.Sincos(float64(p) * freq)
			table[p*d+i], table[p*d+half+i] = float32(cos), float32(sin)
		}
	}
	var err error
	if e.rope, err = e.dev.alloc(int64(len(table) * 4)); err != nil {
		return err
	}
	return e.dev.htod(e.rope, unsafe.Pointer(&table[0]), int64(len(table)*4))
}

// Name says which GPU runs the model.
func (e *Engine) Name() string { return "cuda " + e.dev.Name }

// Device is the GPU.
func (e *Engine) Device() *Device { return e.dev }

// Context is the compiled number of positions.
func (e *Engine) Context() int { return e.c.Artifact.Context }

// Threads is 1: the host thread that drives the GPU.
func (e *Engine) Threads() int { return 1 }

// acquire takes the engine for one call: its lock, this OS thread, and the
// device's context bound to the thread; release gives them back.
func (e *Engine) acquire() (release func(), err error) {
	e.mu.Lock()
	runtime.LockOSThread()
	release = func() {
		runtime.UnlockOSThread()
		e.mu.Unlock()
	}
	if err := e.dev.bind(); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// SetGraphs turns the replay of captured decode steps on or off.
func (e *Engine) SetGraphs(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.NoGraphs = !on
}

// SetPDL turns programmatic dependent launch on or off (sm_90 builds),
// for decode and, with prefill, for prefill too.
func (e *Engine) SetPDL(on, prefill bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.NoPDL = !on
	e.opts.PDLPrefill = on && prefill
}

// PDL reports whether decode kernels may start before the one before them
// ends: the model was compiled for sm_90 or newer, the driver has
// cuLaunchKernelEx, and it was not turned off.
func (e *Engine) PDL() bool { return e.canPDL && !e.opts.NoPDL }

// launch launches one kernel of program name on the engine's stream.
func (e *Engine) launch(name string, f uintptr, l ptx.Launch, params unsafe.Pointer) error {
	if e.PDL() && (name == "decode" || e.opts.PDLPrefill) {
		return e.dev.launchPDL(f, l.Grid, l.Block, l.Shared, e.stream, params)
	}
	return e.dev.launch(f, l.Grid, l.Block, l.Shared, e.stream, params)
}

// Graphs reports whether decode steps replay CUDA graphs.
func (e *Engine) Graphs() bool { return !e.opts.NoGraphs && e.GraphErr == nil }

// Close frees the device memory of the engine and its states.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return e.closeLocked()
}

func (e *Engine) closeLocked() error {
	var errs []error
	if e.dev.bind() != nil {
		return e.dev.Close()
	}
	for _, s := range e.states {
		errs = append(errs, s.free())
	}
	e.states = nil
	for _, p := range e.weights {
		errs = append(errs, e.dev.free(p))
	}
	e.weights = nil
	errs = append(errs, e.dev.free(e.rope))
	e.rope = 0
	if e.stream != 0 {
		e.dev.d.call("cuStreamDestroy_v2", e.stream)
		e.stream = 0
	}
	if e.mod != 0 {
		errs = append(errs, e.dev.d.check("cuModuleUnload", e.dev.d.call("cuModuleUnload", e.mod)))
		e.mod = 0
	}
	errs = append(errs, e.dev.Close())
	return errors.Join(errs...)
}

// State is one sequence on the GPU: its KV cache, arena, and the call
// buffer (scalars {pos, n_valid} as i64, then the token ids as i32).
type State struct {
	e         *Engine
	kv, arena devptr
	io        devptr
	maxTokens int
	params    map[string][][]unsafe.Pointer
	vals      [][]uint64
	graphs    map[graphKey]uintptr
	// samplerArgs are the launch arguments of the argmax and sample
	// kernels (indexed by sampler).
	samplerArgs [numSamplers][]unsafe.Pointer
}

// NewState allocates one sequence on the device.
func (e *Engine) NewState() (model.State, error) { return e.NewGPUState() }

// NewGPUState is NewState with the concrete type (for Greedy).
func (e *Engine) NewGPUState() (*State, error) {
	release, err := e.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	s := &State{e: e, params: map[string][][]unsafe.Pointer{}, graphs: map[graphKey]uintptr{}}
	var arena int64
	for _, p := range e.c.Artifact.Programs {
		arena = max(arena, p.ArenaBytes)
		s.maxTokens = max(s.maxTokens, p.Tokens)
	}
	fail := func(err error) (*State, error) { s.free(); return nil, err }
	if s.kv, err = e.dev.alloc(e.c.Artifact.KVBytes); err != nil {
		return fail(err)
	}
	if s.arena, err = e.dev.alloc(arena); err != nil {
		return fail(err)
	}
	if s.io, err = e.dev.alloc(int64(16 + 4*s.maxTokens)); err != nil {
		return fail(err)
	}
	for _, p := range []devptr{s.kv, s.arena, s.io} {
		if err := e.dev.memset(p, 1); err != nil { // touch; the KV cache is zeroed below
			return fail(err)
		}
	}
	if err := e.dev.memset(s.kv, max(e.c.Artifact.KVBytes, 1)); err != nil {
		return fail(err)
	}
	for name, p := range e.c.Artifact.Programs {
		steps := make([][]unsafe.Pointer, len(p.Steps))
		for i, st := range p.Steps {
			steps[i] = s.resolve(st.Args)
		}
		s.params[name] = steps
	}
	s.samplerArgs[argmaxSampler] = s.resolve(e.c.Argmax.Args)
	s.samplerArgs[drawSampler] = s.resolve(e.c.Sample.Args)
	e.states = append(e.states, s)
	return s, nil
}

// resolve turns plan arguments into a cuLaunchKernel parameter array: one
// pointer per parameter, to a u64 holding the device address.
func (s *State) resolve(args []plan.Arg) []unsafe.Pointer {
	vals := make([]uint64, len(args))
	ptrs := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		var p devptr
		switch a.Kind {
		case plan.ArgArena:
			p = s.arena + uintptr(a.Offset)
		case plan.ArgKV:
			p = s.kv + uintptr(a.Offset)
		case plan.ArgWeight:
			p = s.e.weights[a.Index]
		case plan.ArgTokens:
			p = s.io + 16
		case plan.ArgScalars:
			p = s.io
		case plan.ArgRoPE:
			p = s.e.rope
		}
		vals[i] = uint64(p)
		ptrs[i] = unsafe.Pointer(&vals[i])
	}
	s.vals = append(s.vals, vals)
	return ptrs
}

func (s *State) free() error {
	var errs []error
	for _, g := range s.graphs {
		s.e.dev.d.call("cuGraphExecDestroy", g)
	}
	s.graphs = map[graphKey]uintptr{}
	for _, p := range []*devptr{&s.kv, &s.arena, &s.io} {
		errs = append(errs, s.e.dev.free(*p))
		*p = 0
	}
	return errors.Join(errs...)
}

// Bytes is the memory the KV cache holds.
func (s *State) Bytes() int64 { return s.e.c.Artifact.KVBytes }

// Forward runs tokens through the decode program (one token) or prefill
// chunks and returns logits on the host, as the CPU engine does.
func (s *State) Forward(tokens []int32, pos int, all bool) ([]float32, error) {
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
	p := s.e.c.Artifact.Programs[name]
	if p == nil {
		return nil, fmt.Errorf("the model has no %s program", name)
	}
	release, err := s.e.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	var out []float32
	for start := 0; start < len(tokens); start += p.Tokens {
		end := min(start+p.Tokens, len(tokens))
		if err := s.setInput(p, tokens[start:end], pos+start); err != nil {
			return nil, err
		}
		if err := s.runProgram(name, noSampler); err != nil {
			return nil, err
		}
		rows := p.Output.Rows
		if rows > 1 {
			rows = end - start
		}
		logits := make([]float32, rows*p.Output.Cols)
		if err := s.e.dev.d.check("cuMemcpyDtoHAsync_v2", s.e.dev.d.call("cuMemcpyDtoHAsync_v2",
			uintptr(unsafe.Pointer(&logits[0])), s.arena+uintptr(p.Output.Offset), uintptr(len(logits)*4), s.e.stream)); err != nil {
			return nil, err
		}
		if err := s.e.dev.sync(s.e.stream); err != nil {
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

// setInput checks a call in Go and copies its scalars and token ids to the
// device: the kernels trust them.
func (s *State) setInput(p *plan.Program, tokens []int32, pos int) error {
	n := len(tokens)
	vocab := s.e.c.Artifact.Config.VocabSize
	if n > p.Tokens {
		return fmt.Errorf("program %s takes %d tokens, got %d", p.Name, p.Tokens, n)
	}
	if pos < 0 || pos+n > s.e.c.Artifact.Context {
		return &model.ContextError{Tokens: pos + n, Context: s.e.c.Artifact.Context}
	}
	buf := make([]byte, 16+4*p.Tokens)
	*(*int64)(unsafe.Pointer(&buf[0])) = int64(pos)
	*(*int64)(unsafe.Pointer(&buf[8])) = int64(n)
	ids := unsafe.Slice((*int32)(unsafe.Pointer(&buf[16])), p.Tokens)
	for i, t := range tokens {
		if t < 0 || int(t) >= vocab {
			return fmt.Errorf("token %d at index %d is outside the vocabulary of %d", t, i, vocab)
		}
		ids[i] = t
	}
	return s.e.copyIn(s.io, buf)
}

// copyIn copies src to dst on the engine's stream, after the work queued
// there, and waits: src is pageable memory, which must outlive the copy.
func (e *Engine) copyIn(dst devptr, src []byte) error {
	d := e.dev.d
	err := d.check("cuMemcpyHtoDAsync_v2", d.call("cuMemcpyHtoDAsync_v2", dst, uintptr(unsafe.Pointer(&src[0])), uintptr(len(src)), e.stream))
	if err == nil {
		err = e.dev.sync(e.stream)
	}
	runtime.KeepAlive(src)
	return err
}

// sampler is the kernel that may follow a decode step on the GPU.
type sampler int

const (
	noSampler     sampler = iota
	argmaxSampler         // greedy: ptx.Argmax
	drawSampler           // temperature, top-k, top-p, min-p: ptx.Sample
	numSamplers
)

func (e *Engine) samplerKernel(smp sampler) ptx.Sampler {
	if smp == argmaxSampler {
		return e.c.Argmax
	}
	return e.c.Sample
}

// graphKey names a captured decode step: the sampler after it, and
// whether its kernels were launched for programmatic dependent launch.
type graphKey struct {
	smp sampler
	pdl bool
}

// runProgram launches a program's steps (and a sampler after them) on the
// engine's stream; decode steps replay a CUDA graph captured on first use
// unless graphs are off.
func (s *State) runProgram(name string, smp sampler) error {
	if name == "decode" && !s.e.opts.NoGraphs && s.e.GraphErr == nil {
		key := graphKey{smp, s.e.PDL()}
		g, ok := s.graphs[key]
		if !ok {
			var err error
			if g, err = s.capture(func() error { return s.launchAll(name, smp) }); err != nil {
				s.e.GraphErr = err // fall back to plain launches from now on
				return s.launchAll(name, smp)
			}
			s.graphs[key] = g
		}
		return s.e.dev.d.check("cuGraphLaunch", s.e.dev.d.call("cuGraphLaunch", g, s.e.stream))
	}
	return s.launchAll(name, smp)
}

func (s *State) launchAll(name string, smp sampler) error {
	c := s.e.c
	p := c.Artifact.Programs[name]
	for i, st := range p.Steps {
		l := c.Launches[name][i]
		prm := s.params[name][i]
		if err := s.e.launch(name, s.e.funcs[st.Kernel], l, unsafe.Pointer(&prm[0])); err != nil {
			return fmt.Errorf("%s step %d (%s): %w", name, i, c.Artifact.Kernels[st.Kernel], err)
		}
	}
	if smp != noSampler {
		return s.launchSampler(smp)
	}
	return nil
}

func (s *State) launchSampler(smp sampler) error {
	k := s.e.samplerKernel(smp)
	if err := s.e.launch("decode", s.e.funcs[k.Kernel], k.Launch, unsafe.Pointer(&s.samplerArgs[smp][0])); err != nil {
		return fmt.Errorf("%s: %w", s.e.c.Artifact.Kernels[k.Kernel], err)
	}
	return nil
}

// capture records launch's work on the engine's stream as a CUDA graph and
// instantiates it.
func (s *State) capture(launch func() error) (uintptr, error) {
	d := s.e.dev.d
	if err := d.check("cuStreamBeginCapture_v2", d.call("cuStreamBeginCapture_v2", s.e.stream, 1)); err != nil { // THREAD_LOCAL
		return 0, err
	}
	lerr := launch()
	var graph uintptr
	if err := d.check("cuStreamEndCapture", d.call("cuStreamEndCapture", s.e.stream, uintptr(unsafe.Pointer(&graph)))); err != nil {
		return 0, errors.Join(lerr, err)
	}
	defer d.call("cuGraphDestroy", graph)
	if lerr != nil {
		return 0, lerr
	}
	var exec uintptr
	if err := d.check("cuGraphInstantiateWithFlags", d.call("cuGraphInstantiateWithFlags", uintptr(unsafe.Pointer(&exec)), graph, 0)); err != nil {
		return 0, err
	}
	return exec, nil
}

// Greedy generates n tokens after token at position pos, entirely on the
// GPU: each step runs the decode program and the argmax kernel, which
// writes the next input token and advances the position on the device, so
// only the token ids cross to the host (4 bytes per step).
func (s *State) Greedy(token int32, pos, n int) ([]int32, error) {
	return s.generate(token, pos, n, argmaxSampler, nil)
}

// generate runs n decode steps, each followed by smp; settings, when not
// nil, are the sample kernel's, written first.
func (s *State) generate(token int32, pos, n int, smp sampler, settings *ptx.SampleSettings) ([]int32, error) {
	if n <= 0 {
		return nil, nil
	}
	p := s.e.c.Artifact.Programs["decode"]
	if pos+n > s.e.c.Artifact.Context {
		return nil, &model.ContextError{Tokens: pos + n, Context: s.e.c.Artifact.Context}
	}
	release, err := s.e.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	if settings != nil {
		if err := s.writeSettings(*settings); err != nil {
			return nil, err
		}
	}
	if err := s.setInput(p, []int32{token}, pos); err != nil {
		return nil, err
	}
	out := make([]int32, n)
	for i := range out {
		var err error
		if out[i], err = s.nextToken(func() error { return s.runProgram("decode", smp) }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// nextToken runs a step that ends in a sampler and returns the token id it
// wrote for the next step.
func (s *State) nextToken(run func() error) (int32, error) {
	if err := run(); err != nil {
		return 0, err
	}
	var tok int32
	d := s.e.dev.d
	if err := d.check("cuMemcpyDtoHAsync_v2", d.call("cuMemcpyDtoHAsync_v2", uintptr(unsafe.Pointer(&tok)), s.io+16, 4, s.e.stream)); err != nil {
		return 0, err
	}
	return tok, s.e.dev.sync(s.e.stream)
}

// DecodeArgmax runs one decode step and returns the greedy next token.
func (s *State) DecodeArgmax(token int32, pos int) (int32, error) {
	ids, err := s.Greedy(token, pos, 1)
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}
