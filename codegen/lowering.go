package codegen

import (
	"fmt"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/passes"
	"github.com/gemmac/gemmac/runtime/plan"
)

// What every target's lowering shares: the entry points a compiled model
// has, their optimised graphs, the plan they fill and its weight table.

// Entry is one entry point of a compiled model.
type Entry struct {
	Name string
	// Decode entries take one token per call; the others a prefill chunk.
	Decode bool
	// AllLogits entries return every token's logits (the logits command).
	AllLogits bool
	// Batch, when not 0, is the rows of a batched decode step: one token
	// of each of Batch sequences (frontend.GraphShape.Batch).
	Batch int
}

// Entries are the programs every compiled model has.
var Entries = []Entry{
	{Name: "prefill"},
	{Name: "prefill_all", AllLogits: true},
	{Name: "decode", Decode: true, AllLogits: true},
}

// EntriesFor are Entries, and with batch > 1 the batched decode step of
// batch sequences (plan.BatchProgram).
func EntriesFor(batch int) []Entry {
	es := append([]Entry(nil), Entries...)
	if batch > 1 {
		es = append(es, Entry{Name: plan.BatchProgram, Decode: true, AllLogits: true, Batch: batch})
	}
	return es
}

// EntryGraph builds e's graph for cfg, with a KV cache of kv, and runs the
// pass pipeline over it.
func EntryGraph(e Entry, cfg *frontend.Config, dtypes map[string]ir.DType, context, chunk int, kv ir.DType) (*ir.Graph, error) {
	tokens := min(chunk, context)
	switch {
	case e.Batch > 0:
		tokens = e.Batch
	case e.Decode:
		tokens = 1
	}
	g, err := frontend.Build(e.Name, cfg, frontend.GraphShape{Tokens: tokens, Context: context, AllLogits: e.AllLogits, Batch: e.Batch > 0, KVDType: kv}, dtypes)
	if err != nil {
		return nil, err
	}
	if err := passes.Run(g, passes.Options{}); err != nil {
		return nil, err
	}
	return g, nil
}

// NewArtifact starts the plan of a model compiled for target, checking the
// context against the config.
func NewArtifact(cfg *frontend.Config, target string, context int) (*plan.Artifact, error) {
	if context < 1 || context > cfg.MaxPositionEmbeddings {
		return nil, fmt.Errorf("context %d is outside 1..%d (max_position_embeddings)", context, cfg.MaxPositionEmbeddings)
	}
	return &plan.Artifact{
		Version:  plan.Version,
		Target:   target,
		Config:   cfg,
		Context:  context,
		RoPE:     plan.RoPETable{Dim: cfg.HeadDim, Theta: cfg.RopeTheta},
		Programs: map[string]*plan.Program{},
	}, nil
}

// WeightTable lists each weight a plan reads once, by name and derivation.
type WeightTable struct {
	art   *plan.Artifact
	index map[string]int
}

// NewWeightTable fills art.Weights.
func NewWeightTable(art *plan.Artifact) *WeightTable {
	return &WeightTable{art: art, index: map[string]int{}}
}

// Index is the position of weight value v in the plan's weights.
func (w *WeightTable) Index(v *ir.Value) int { return w.IndexLaid(v, 0) }

// IndexLaid is Index for weight value v read laid out in panels of panel
// columns (0: by rows).
func (w *WeightTable) IndexLaid(v *ir.Value, panel int) int {
	d, derived := v.Aux.(ir.Derived)
	key := fmt.Sprintf("%s %v %d", v.Name, d, panel)
	if i, ok := w.index[key]; ok {
		return i
	}
	pw := plan.Weight{Name: v.Name, DType: v.DType.String(), Shape: v.Shape, Panel: panel}
	if derived {
		pw.Derived = &d
	}
	w.art.Weights = append(w.art.Weights, pw)
	w.index[key] = len(w.art.Weights) - 1
	return w.index[key]
}

// LeafArg is where a kernel finds an input or a weight; ok is false for the
// values that live in the arena, which each target places itself.
func (w *WeightTable) LeafArg(v *ir.Value) (arg plan.Arg, ok bool) {
	switch v.Op {
	case ir.OpWeight:
		return plan.Arg{Kind: plan.ArgWeight, Index: w.Index(v)}, true
	case ir.OpInput:
		if v.Name == frontend.InputTokens {
			return plan.Arg{Kind: plan.ArgTokens}, true
		}
		return plan.Arg{Kind: plan.ArgScalars}, true
	}
	return plan.Arg{}, false
}
