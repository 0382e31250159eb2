// Package ir is gemmac's graph representation: values with static shapes and
// dtypes, each produced by one op from earlier values. One Graph is carried
// from the frontend through the passes to the interpreter and the code
// generators. The package knows nothing about Gemma.
package ir

import "fmt"

// Value is one tensor in a graph, and the op that computes it.
type Value struct {
	ID    int
	Op    Op
	Args  []*Value
	Shape Shape
	DType DType
	// Aux holds the op's parameters (see the Aux types in aux.go).
	Aux Aux
	// Name is the input or weight name for OpInput and OpWeight, and an
	// optional label elsewhere ("blk.3.attn_q") that the printer shows.
	Name string
}

func (v *Value) String() string { return fmt.Sprintf("v%d", v.ID) }

// Graph is a static computation: Values in topological order, Outputs among
// them. Every shape is fixed when the graph is built.
type Graph struct {
	Name    string
	Values  []*Value
	Outputs []*Value
	// Meta records how the graph was built (tokens per call, context...),
	// for printing and for the engines that must match it.
	Meta map[string]int
	// KV and Mem are set by the kvcache and memplan passes.
	KV  *KVLayout
	Mem *MemPlan
}

// Inputs are the OpInput values, in order.
func (g *Graph) Inputs() []*Value { return g.filter(OpInput) }

// Weights are the OpWeight values, in order.
func (g *Graph) Weights() []*Value { return g.filter(OpWeight) }

// Input returns the input with the given name, or nil.
func (g *Graph) Input(name string) *Value {
	for _, v := range g.Inputs() {
		if v.Name == name {
			return v
		}
	}
	return nil
}

func (g *Graph) filter(op Op) []*Value {
	var out []*Value
	for _, v := range g.Values {
		if v.Op == op {
			out = append(out, v)
		}
	}
	return out
}

// Uses counts, for every value ID, how many args and outputs refer to it.
func (g *Graph) Uses() map[int]int {
	uses := make(map[int]int, len(g.Values))
	for _, v := range g.Values {
		for _, a := range v.Args {
			uses[a.ID]++
		}
	}
	for _, o := range g.Outputs {
		uses[o.ID]++
	}
	return uses
}

// Renumber gives the values consecutive IDs in their current order; passes
// call it after inserting or removing values.
func (g *Graph) Renumber() {
	for i, v := range g.Values {
		v.ID = i
	}
}

// KVLayout places every attention layer's keys and values in one buffer of
// f32. The kvcache pass sets it; engines allocate Bytes per sequence.
type KVLayout struct {
	Layers []KVLayer
	Bytes  int64
}

// KVLayer is one layer's cache: Slots rows of [Heads, Dim] keys at KOffset
// and values at VOffset (bytes). Sliding layers are rings of min(W, S) slots.
type KVLayer struct {
	Layer, Slots, Heads, Dim int
	KOffset, VOffset         int64
}

// Layer returns the layout of a layer's cache, or nil.
func (l *KVLayout) Layer(layer int) *KVLayer {
	for i := range l.Layers {
		if l.Layers[i].Layer == layer {
			return &l.Layers[i]
		}
	}
	return nil
}

// MemPlan gives every value that needs storage a byte offset in one arena.
// The memplan pass sets it; views share their source's storage.
type MemPlan struct {
	Offsets map[int]int64 // by value ID
	Bytes   int64         // the arena's size: the peak of live buffers
	// Naive is what the arena would take without reuse, for comparison.
	Naive int64
}

// offset is v's place in the arena, if the plan has one.
func (p *MemPlan) offset(v *Value) (int64, bool) {
	if p == nil {
		return 0, false
	}
	off, ok := p.Offsets[v.ID]
	return off, ok
}
