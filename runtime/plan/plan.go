// Package plan is what `gemmac build` hands to a compiled engine: for each
// entry point, the ordered kernel calls with their buffers resolved to
// offsets, and the weights, cache and arena they use. It is plain data,
// serialised into the built binary as JSON, and shared by the CPU and GPU
// runtimes.
package plan

import (
	"encoding/json"
	"fmt"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
)

// Version changes whenever the format does; a binary refuses other versions.
const Version = 1

// WorkerKernel names the native thread-pool worker (codegen.Worker) that
// every CPU kernel table includes; the engine finds it by this name and never
// calls it as a step.
const WorkerKernel = "pool_worker"

// RunnerKernel names the program runner (codegen.Runner) that makes a
// program's kernel calls in one native call; like the worker, it is in
// every CPU kernel table and never a step.
const RunnerKernel = "pool_run"

// Artifact is a compiled model.
type Artifact struct {
	Version int    `json:"version"`
	Target  string `json:"target"` // e.g. "cpu x86-64-v4"
	// Features are the CPU features the kernels were compiled with (llc's
	// -mattr, e.g. "+avx512f,+avx512vnni"); a CPU lacking one is refused.
	Features string           `json:"features,omitempty"`
	Config   *frontend.Config `json:"config"`
	// Context is the number of positions the KV cache holds.
	Context int `json:"context"`
	// Kernels are the native kernels' names, in table order.
	Kernels []string `json:"kernels"`
	// Weights are the tensors the programs read, by index.
	Weights []Weight `json:"weights"`
	// KVBytes is the size of one sequence's KV cache.
	KVBytes int64 `json:"kv_bytes"`
	// KVDType is the cache's element type, "bf16" or "" for f32.
	KVDType string `json:"kv_dtype,omitempty"`
	// RoPE describes the cos/sin table the engine fills at start.
	RoPE RoPETable `json:"rope"`
	// Packed, when set, says the weights come from a packed weights file
	// written by the build (converted to the kernels' dtypes), not from the
	// checkpoint.
	Packed *PackedWeights `json:"packed,omitempty"`
	// Programs are the entry points: "prefill", "prefill_all", "decode",
	// and, in a build for batched decoding, BatchProgram.
	Programs map[string]*Program `json:"programs"`
}

// BatchProgram names the batched decode step of a build with --batch: one
// token of each of up to Program.Batch sequences.
const BatchProgram = "decode_batch"

// Weight is a checkpoint tensor a program reads: as stored, or derived
// (materialised as f32 at load).
type Weight struct {
	Name    string      `json:"name"`
	DType   string      `json:"dtype"` // what the kernels read
	Shape   []int       `json:"shape"`
	Derived *ir.Derived `json:"derived,omitempty"`
	// Panel > 0: the kernels read this f32 matrix laid out in panels of
	// Panel columns (ir.LayPanels), which the engine lays at load.
	Panel int `json:"panel,omitempty"`
}

// PackedWeights names a build's packed weights file (frontend/packed).
type PackedWeights struct {
	// File is the file's name, looked for beside the binary.
	File string `json:"file"`
	// Fingerprint is frontend.Fingerprint of the build: the file must
	// carry the same.
	Fingerprint string `json:"fingerprint"`
	// Conversion is how the weights were converted, for messages.
	Conversion string `json:"conversion"`
	// Layers and Embed are the conversion's dtypes ("" keeps as stored,
	// an empty Embed takes the default for Layers) and LlamaRounding its
	// q4_0 rounding: with them the interpreter converts the checkpoint
	// into the same weights (frontend.Conversion).
	Layers        string `json:"layers,omitempty"`
	Embed         string `json:"embed,omitempty"`
	LlamaRounding bool   `json:"llama_rounding,omitempty"`
}

// Convert is the conversion the packed weights went through.
func (p *PackedWeights) Convert() (frontend.Conversion, error) {
	return frontend.ParseConversion(p.Layers, p.Embed, p.LlamaRounding)
}

// RoPETable is cs[p·Dim + i] = cos(p·θ^(-2i/Dim)), cs[p·Dim + Dim/2 + i] =
// sin(...), for p < Context and i < Dim/2.
type RoPETable struct {
	Dim   int     `json:"dim"`
	Theta float64 `json:"theta"`
}

// Program is one entry point: Tokens token slots per call.
type Program struct {
	Name   string `json:"name"`
	Tokens int    `json:"tokens"`
	// Batch, when not 0, makes each of the Tokens rows a sequence of its
	// own (Batch = Tokens): its scalars block is i64 {unused, n_valid,
	// pos[0..Batch)}, and its cache arguments are ArgKVRows.
	Batch      int    `json:"batch,omitempty"`
	ArenaBytes int64  `json:"arena_bytes"`
	Steps      []Step `json:"steps"`
	// Output is where the logits are: Rows rows of Cols floats.
	Output Buffer `json:"output"`
}

// Buffer is a region of the arena.
type Buffer struct {
	Offset int64 `json:"offset"`
	Rows   int   `json:"rows"`
	Cols   int   `json:"cols"`
}

// Step is one kernel call, split over threads by work item.
type Step struct {
	Kernel int   `json:"kernel"` // index into Artifact.Kernels
	Items  int64 `json:"items"`
	// Granule is the split unit: thread ranges are multiples of it.
	Granule int64 `json:"granule"`
	// ItemsPerRow marks steps whose items scale with the valid tokens: the
	// engine runs only ItemsPerRow × n_valid of them.
	ItemsPerRow int64  `json:"items_per_row,omitempty"`
	Args        []Arg  `json:"args"`
	Label       string `json:"label,omitempty"`
}

// ItemsFor is the items the step runs for n valid tokens.
func (s *Step) ItemsFor(n int) int64 {
	if s.ItemsPerRow > 0 {
		return min(s.Items, s.ItemsPerRow*int64(n))
	}
	return s.Items
}

// ArgKind says which buffer an argument points into.
type ArgKind string

const (
	ArgArena   ArgKind = "arena"   // Offset into the arena
	ArgWeight  ArgKind = "weight"  // Index into Artifact.Weights
	ArgKV      ArgKind = "kv"      // Offset into the sequence's KV cache
	ArgKVRows  ArgKind = "kv_rows" // a table of Batch pointers: Offset into each row's KV cache
	ArgTokens  ArgKind = "tokens"  // the i32 token ids of the call
	ArgScalars ArgKind = "scalars" // the i64 {pos, n_valid} of the call
	ArgRoPE    ArgKind = "rope"    // the cos/sin table
)

// Arg is one kernel argument.
type Arg struct {
	Kind   ArgKind `json:"kind"`
	Offset int64   `json:"offset,omitempty"`
	Index  int     `json:"index,omitempty"`
}

// Marshal encodes the artifact for embedding in a binary.
func (a *Artifact) Marshal() ([]byte, error) { return json.Marshal(a) }

// Unmarshal decodes and checks an artifact.
func Unmarshal(data []byte) (*Artifact, error) {
	var a Artifact
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("compiled plan: %w", err)
	}
	if a.Version != Version {
		return nil, fmt.Errorf("compiled plan has format version %d, this runtime reads %d: rebuild with this gemmac", a.Version, Version)
	}
	return &a, a.Check()
}

// Check validates every index and offset, so a damaged plan is an error
// here and never a wild pointer in a kernel.
func (a *Artifact) Check() error {
	if a.Config == nil {
		return fmt.Errorf("compiled plan has no config")
	}
	for _, w := range a.Weights {
		if w.Panel < 0 || w.Panel > 0 && (w.DType != "f32" || w.Derived != nil || len(w.Shape) != 2) {
			return fmt.Errorf("weight %s (%s %v) cannot be laid out in panels of %d columns", w.Name, w.DType, w.Shape, w.Panel)
		}
	}
	for name, p := range a.Programs {
		if p.Batch < 0 || p.Batch > 0 && p.Batch != p.Tokens {
			return fmt.Errorf("program %s: a batch of %d rows with %d tokens", name, p.Batch, p.Tokens)
		}
		for i, s := range p.Steps {
			if s.Kernel < 0 || s.Kernel >= len(a.Kernels) {
				return fmt.Errorf("program %s step %d: kernel %d of %d", name, i, s.Kernel, len(a.Kernels))
			}
			if s.Items < 0 || s.Granule <= 0 {
				return fmt.Errorf("program %s step %d: %d items in granules of %d", name, i, s.Items, s.Granule)
			}
			for _, arg := range s.Args {
				if err := a.checkArg(p, arg); err != nil {
					return fmt.Errorf("program %s step %d (%s): %w", name, i, a.Kernels[s.Kernel], err)
				}
			}
		}
		if end := p.Output.Offset + int64(p.Output.Rows*p.Output.Cols)*4; p.Output.Offset < 0 || end > p.ArenaBytes {
			return fmt.Errorf("program %s: output [%d,%d) outside the arena of %d bytes", name, p.Output.Offset, end, p.ArenaBytes)
		}
	}
	return nil
}

func (a *Artifact) checkArg(p *Program, arg Arg) error {
	switch arg.Kind {
	case ArgArena:
		if arg.Offset < 0 || arg.Offset >= max(p.ArenaBytes, 1) {
			return fmt.Errorf("arena offset %d outside %d bytes", arg.Offset, p.ArenaBytes)
		}
	case ArgKV, ArgKVRows:
		if (arg.Kind == ArgKVRows) != (p.Batch > 0) {
			return fmt.Errorf("%s argument in a program with a batch of %d", arg.Kind, p.Batch)
		}
		if arg.Offset < 0 || arg.Offset >= max(a.KVBytes, 1) {
			return fmt.Errorf("kv offset %d outside %d bytes", arg.Offset, a.KVBytes)
		}
	case ArgWeight:
		if arg.Index < 0 || arg.Index >= len(a.Weights) {
			return fmt.Errorf("weight %d of %d", arg.Index, len(a.Weights))
		}
	case ArgTokens, ArgScalars, ArgRoPE:
	default:
		return fmt.Errorf("unknown argument kind %q", arg.Kind)
	}
	return nil
}

// KVType is the KV cache's element type: "f32" or "bf16".
func (a *Artifact) KVType() string {
	if a.KVDType == "" {
		return "f32"
	}
	return a.KVDType
}
