// Package model is gemmac's Go API: load a Gemma-2 checkpoint with an engine
// (the interpreter, or a compiled backend), open sessions and generate text.
// A Model is safe for concurrent use; a Session is one conversation with its
// own KV cache and is not.
package model

// Engine runs the forward pass of one model. The interpreter and the
// compiled backends implement it.
type Engine interface {
	// Name says which backend this is, for logs and benchmarks.
	Name() string
	// Context is the number of positions the KV cache holds.
	Context() int
	// Threads is the number of CPU threads the engine computes on.
	Threads() int
	// NewState allocates the KV cache of one sequence.
	NewState() (State, error)
	Close() error
}

// WeightCopier is an Engine that copies the weights into memory of its own
// when it is created (a GPU's), so the checkpoint's tensors need not stay
// in host memory for it: a model converted at load frees its converted
// copy once such an engine exists.
type WeightCopier interface {
	Engine
	CopiesWeights() bool
}

// State is one sequence's KV cache and the scratch space to run it.
type State interface {
	// Forward runs tokens at positions pos, pos+1, ... and writes them into
	// the cache. It returns one row of logits per token when all is true,
	// else only the last token's row. A single token takes the decode path,
	// several the prefill path.
	Forward(tokens []int32, pos int, all bool) ([]float32, error)
	// Bytes is the memory the cache holds.
	Bytes() int64
}

// BatchEngine is an Engine that also runs one decode step of several
// sequences as one call, reading the weights once for all of them.
// Engines compiled with a batched decode entry point implement it.
type BatchEngine interface {
	Engine
	// MaxBatch is the most rows one DecodeBatch takes.
	MaxBatch() int
	// DecodeBatch feeds each row's token to its state at its position and
	// returns one row of logits per row. The states must come from this
	// engine's NewState, all different; each row is validated (token,
	// position) before any is run.
	DecodeBatch(rows []BatchRow) ([][]float32, error)
}

// BatchRow is one sequence's token in a batched decode step.
type BatchRow struct {
	State State
	Token int32
	// Pos is the token's position: the number of tokens the state's cache
	// holds before it.
	Pos int
	// Out, when it holds a row of logits (vocab_size floats), receives
	// them, and DecodeBatch returns it instead of a new slice.
	Out []float32
}
