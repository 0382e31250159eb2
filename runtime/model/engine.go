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
