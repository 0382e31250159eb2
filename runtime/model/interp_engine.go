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
	kv      ir.DType // the KV cache's element type

	prefill, decode *interp.Program
	// prefillAll (every row's logits) is built on first use: only the
	// logits command and evaluation need it.
	prefillAllOnce sync.Once
	prefillAll     *interp.Program
	prefillAllErr  error
	// batch is the batched decode step (EnableBatch), or nil.
	batch *interp.Program
}

// NewInterpEngine builds the prefill and decode graphs for a context of
// context tokens and binds them to the checkpoint's weights.
func NewInterpEngine(ckpt *frontend.Checkpoint, context, threads int) (*InterpEngine, error) {
	return newInterpEngine(ckpt, context, threads, ir.F32)
}

// newInterpEngine is NewInterpEngine with a KV cache of kv (f32 or bf16).
func newInterpEngine(ckpt *frontend.Checkpoint, context, threads int, kv ir.DType) (*InterpEngine, error) {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	e := &InterpEngine{cfg: ckpt.Config, weights: ckpt.Weights, dtypes: ckpt.WeightDTypes(),
		context: context, chunk: min(DefaultChunk, context), threads: threads, kv: kv}
	var err error
	if e.prefill, err = e.program("prefill", e.chunk, false); err != nil {
		return nil, err
	}
	if e.decode, err = e.program("decode", 1, false); err != nil {
		return nil, err
	}
	return e, nil
}

// EnableBatch builds the batched decode step for up to rows sequences, which
// makes the engine a BatchEngine with MaxBatch rows. Call it before the
// engine is shared.
func (e *InterpEngine) EnableBatch(rows int) error {
	if rows < 1 {
		return fmt.Errorf("a batch of %d rows", rows)
	}
	g, err := frontend.Build("decode_batch", e.cfg, frontend.GraphShape{Tokens: rows, Context: e.context, AllLogits: true, Batch: true, KVDType: e.kv}, e.dtypes)
	if err != nil {
		return err
	}
	e.batch, err = interp.New(g, e.weights, e.threads)
	return err
}

// MaxBatch is the rows of the batched decode step; 0 before EnableBatch.
func (e *InterpEngine) MaxBatch() int {
	if e.batch == nil {
		return 0
	}
	return e.batch.Tokens()
}

// DecodeBatch runs one token of each row's sequence through the batched
// decode graph.
func (e *InterpEngine) DecodeBatch(rows []BatchRow) ([][]float32, error) {
	if e.batch == nil {
		return nil, fmt.Errorf("the engine has no batched decode step")
	}
	if len(rows) > e.batch.Tokens() {
		return nil, fmt.Errorf("%d rows exceed the batch of %d", len(rows), e.batch.Tokens())
	}
	caches := make([]*interp.Cache, len(rows))
	tokens := make([]int32, len(rows))
	pos := make([]int, len(rows))
	for i, r := range rows {
		st, ok := r.State.(*interpState)
		if !ok || st.e != e {
			return nil, fmt.Errorf("row %d: the state is not one of this engine's", i)
		}
		caches[i], tokens[i], pos[i] = st.cache, r.Token, r.Pos
	}
	logits, err := e.batch.RunRows(caches, tokens, pos)
	if err != nil {
		return nil, err
	}
	vocab := e.cfg.VocabSize
	out := make([][]float32, len(rows))
	for i, r := range rows {
		out[i] = logits[i*vocab : (i+1)*vocab : (i+1)*vocab]
		if len(r.Out) >= vocab {
			out[i] = r.Out[:vocab:vocab]
			copy(out[i], logits[i*vocab:])
		}
	}
	return out, nil
}

func (e *InterpEngine) program(name string, tokens int, all bool) (*interp.Program, error) {
	g, err := frontend.Build(name, e.cfg, frontend.GraphShape{Tokens: tokens, Context: e.context, AllLogits: all, KVDType: e.kv}, e.dtypes)
	if err != nil {
		return nil, err
	}
	return interp.New(g, e.weights, e.threads)
}

func (e *InterpEngine) Name() string { return "interp" }

// KVDType is the KV cache's element type.
func (e *InterpEngine) KVDType() ir.DType {
	if e.kv == 0 {
		return ir.F32
	}
	return e.kv
}
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
