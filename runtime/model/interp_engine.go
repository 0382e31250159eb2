package model

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/interp"
)

// DefaultChunk is the number of prompt tokens one prefill call processes.
const DefaultChunk = 64

// InterpEngine runs the model's graphs on the pure-Go interpreter.
type InterpEngine struct {
	cfg     *frontend.Config
	weights map[string]ir.Tensor
	dtypes  map[string]ir.DType
	context int
	chunk   int
	threads int

	prefill, decode *interp.Program
	// prefillAll (every row's logits) is built on first use: only the
	// logits command and evaluation need it.
	prefillAllOnce sync.Once
	prefillAll     *interp.Program
	prefillAllErr  error
}

// NewInterpEngine builds the prefill and decode graphs for a context of
// context tokens and binds them to the checkpoint's weights.
func NewInterpEngine(ckpt *frontend.Checkpoint, context, threads int) (*InterpEngine, error) {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	e := &InterpEngine{cfg: ckpt.Config, weights: ckpt.Weights, dtypes: ckpt.WeightDTypes(),
		context: context, chunk: min(DefaultChunk, context), threads: threads}
	var err error
	if e.prefill, err = e.program("prefill", e.chunk, false); err != nil {
		return nil, err
	}
	if e.decode, err = e.program("decode", 1, false); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *InterpEngine) program(name string, tokens int, all bool) (*interp.Program, error) {
	g, err := frontend.Build(name, e.cfg, frontend.GraphShape{Tokens: tokens, Context: e.context, AllLogits: all}, e.dtypes)
	if err != nil {
		return nil, err
	}
	return interp.New(g, e.weights, e.threads)
}

func (e *InterpEngine) Name() string { return "interp" }
func (e *InterpEngine) Context() int { return e.context }
func (e *InterpEngine) Threads() int { return e.threads }
func (e *InterpEngine) Close() error { return nil }

// Graphs are the prefill and decode graphs, for inspection.
func (e *InterpEngine) Graphs() []*ir.Graph {
	return []*ir.Graph{e.prefill.Graph(), e.decode.Graph()}
}

func (e *InterpEngine) NewState() (State, error) {
	cache, err := interp.NewCache(e.context, e.prefill.Graph(), e.decode.Graph())
	if err != nil {
		return nil, err
	}
	return &interpState{e: e, cache: cache}, nil
}

type interpState struct {
	e     *InterpEngine
	cache *interp.Cache
}

func (s *interpState) Bytes() int64 { return s.cache.Bytes() }

func (s *interpState) Forward(tokens []int32, pos int, all bool) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("no tokens to run")
	}
	if len(tokens) == 1 {
		return s.e.decode.Run(s.cache, tokens, pos)
	}
	prog := s.e.prefill
	if all {
		s.e.prefillAllOnce.Do(func() {
			s.e.prefillAll, s.e.prefillAllErr = s.e.program("prefill_all", s.e.chunk, true)
		})
		if s.e.prefillAllErr != nil {
			return nil, s.e.prefillAllErr
		}
		prog = s.e.prefillAll
	}
	var out []float32
	for start := 0; start < len(tokens); start += prog.Tokens() {
		end := min(start+prog.Tokens(), len(tokens))
		logits, err := prog.Run(s.cache, tokens[start:end], pos+start)
		if err != nil {
			return nil, err
		}
		if all {
			out = append(out, logits[:(end-start)*s.e.cfg.VocabSize]...)
		} else {
			out = logits
		}
	}
	return out, nil
}
