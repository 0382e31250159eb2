// Package interp runs any ir.Graph in pure Go. It is gemmac's reference: the
// passes are checked by running it before and after them, and it is checked
// against third-party reference logits. It is also the baseline the compiled
// engines are measured against, so its kernels are plain but not careless:
// weights are read in their stored dtype and matmuls use every core.
package interp

import (
	"fmt"
	"runtime"

	"github.com/gemmac/gemmac/ir"
)

// Program is a verified graph with its weights bound. It holds no per-call
// state, so one Program may run for many caches at once.
type Program struct {
	g       *ir.Graph
	weights map[int]weight
	threads int
	tokens  *ir.Value
	pos     *ir.Value
	nValid  *ir.Value
}

// New binds weights (by name) to g's weight values and checks each one's
// dtype and shape. threads ≤ 0 means one per CPU.
func New(g *ir.Graph, weights map[string]ir.Tensor, threads int) (*Program, error) {
	if err := ir.Verify(g); err != nil {
		return nil, err
	}
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &Program{g: g, weights: map[int]weight{}, threads: threads}
	for _, v := range g.Weights() {
		t, ok := weights[v.Name]
		if !ok {
			return nil, fmt.Errorf("graph %s: no tensor bound to weight %q", g.Name, v.Name)
		}
		if d, ok := v.Aux.(ir.Derived); ok {
			data, err := derive(t, d, v)
			if err != nil {
				return nil, fmt.Errorf("graph %s: %w", g.Name, err)
			}
			p.weights[v.ID] = weight{dtype: ir.F32, f32: data, cols: v.Shape.Last()}
			continue
		}
		if t.DType != v.DType || !t.Shape.Equal(v.Shape) {
			return nil, fmt.Errorf("graph %s: weight %q is %v%v, the graph wants %v%v", g.Name, v.Name, t.DType, t.Shape, v.DType, v.Shape)
		}
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("weight %q: %w", v.Name, err)
		}
		p.weights[v.ID] = newWeight(t)
	}
	for _, v := range g.Inputs() {
		switch {
		case v.DType == ir.I32 && len(v.Shape) == 1 && p.tokens == nil:
			p.tokens = v
		case v.Name == "pos" && v.DType == ir.I32 && len(v.Shape) <= 1:
			p.pos = v
		case v.Name == "n_valid" && len(v.Shape) == 0:
			p.nValid = v
		default:
			return nil, fmt.Errorf("graph %s: input %q %v%v is not one the interpreter can feed", g.Name, v.Name, v.DType, v.Shape)
		}
	}
	if p.tokens == nil {
		return nil, fmt.Errorf("graph %s has no token input", g.Name)
	}
	if p.pos != nil && ir.PerRow(p.pos) && p.pos.Shape[0] != p.tokens.Shape[0] {
		return nil, fmt.Errorf("graph %s has %d positions for %d tokens", g.Name, p.pos.Shape[0], p.tokens.Shape[0])
	}
	return p, nil
}

// Batch reports whether every row of the graph is a sequence of its own
// (per-row positions and caches, frontend.GraphShape.Batch): run it with
// RunRows.
func (p *Program) Batch() bool { return p.pos != nil && ir.PerRow(p.pos) }

// Graph is the program's graph.
func (p *Program) Graph() *ir.Graph { return p.g }

// Tokens is the number of token slots per call.
func (p *Program) Tokens() int { return p.tokens.Shape[0] }

// Run executes the graph for tokens at positions pos, pos+1, ..., reading and
// writing the KV cache. len(tokens) may be less than Tokens(): the rest is
// padding and touches neither the cache nor the valid rows of the result. It
// returns the graph's first output.
func (p *Program) Run(cache *Cache, tokens []int32, pos int) ([]float32, error) {
	n := len(tokens)
	if p.Batch() {
		return nil, fmt.Errorf("graph %s runs one sequence per row: call RunRows", p.g.Name)
	}
	if n == 0 || n > p.Tokens() {
		return nil, fmt.Errorf("graph %s takes 1 to %d tokens, got %d", p.g.Name, p.Tokens(), n)
	}
	if err := cache.fits(p.g, pos, n); err != nil {
		return nil, err
	}
	positions := make([]int, p.Tokens())
	for t := range positions {
		positions[t] = pos + t
	}
	return p.run(&run{p: p, caches: []*Cache{cache}, pos: positions, nValid: n}, tokens)
}

// RunRows executes a Batch graph: row t is token tokens[t] of its own
// sequence, at position pos[t], with the KV cache caches[t]. Fewer rows than
// Tokens() leave the rest as padding, which touches no cache. It returns
// the graph's first output (every row's logits).
func (p *Program) RunRows(caches []*Cache, tokens []int32, pos []int) ([]float32, error) {
	n := len(tokens)
	if !p.Batch() {
		return nil, fmt.Errorf("graph %s runs one sequence: call Run", p.g.Name)
	}
	if n == 0 || n > p.Tokens() {
		return nil, fmt.Errorf("graph %s takes 1 to %d rows, got %d", p.g.Name, p.Tokens(), n)
	}
	if len(caches) != n || len(pos) != n {
		return nil, fmt.Errorf("graph %s: %d tokens, %d caches and %d positions", p.g.Name, n, len(caches), len(pos))
	}
	for t, c := range caches {
		if c == nil {
			return nil, fmt.Errorf("row %d has no cache", t)
		}
		for u := range t {
			if caches[u] == c {
				return nil, fmt.Errorf("rows %d and %d share a cache", u, t)
			}
		}
		if err := c.fits(p.g, pos[t], 1); err != nil {
			return nil, fmt.Errorf("row %d: %w", t, err)
		}
	}
	positions := make([]int, p.Tokens()) // padding rows rotate for position 0
	copy(positions, pos)
	return p.run(&run{p: p, caches: caches, pos: positions, nValid: n}, tokens)
}

func (p *Program) run(r *run, tokens []int32) ([]float32, error) {
	vocab := -1
	for _, v := range p.g.Values {
		if v.Op == ir.OpEmbed {
			vocab = v.Args[0].Shape[0]
		}
	}
	for i, t := range tokens {
		if t < 0 || (vocab > 0 && int(t) >= vocab) {
			return nil, fmt.Errorf("token %d at index %d is outside the vocabulary of %d", t, i, vocab)
		}
	}
	r.vals = make([][]float32, len(p.g.Values))
	r.ids = make([]int32, p.Tokens())
	copy(r.ids, tokens)
	for _, v := range p.g.Values {
		if err := r.eval(v); err != nil {
			return nil, fmt.Errorf("graph %s: %s: %w", p.g.Name, ir.FormatValue(v), err)
		}
	}
	return r.vals[p.g.Outputs[0].ID], nil
}

// run is the state of one Run: a buffer per value.
type run struct {
	p *Program
	// caches is the one sequence's cache, or each row's (RunRows).
	caches []*Cache
	// pos is each row's position.
	pos    []int
	nValid int
	ids    []int32
	vals   [][]float32
}

func (r *run) eval(v *ir.Value) error {
	arg := func(i int) []float32 { return r.vals[v.Args[i].ID] }
	out := func() []float32 {
		buf := make([]float32, v.Shape.Elems())
		r.vals[v.ID] = buf
		return buf
	}
	switch v.Op {
	case ir.OpInput, ir.OpWeight:
		// Read where used: token ids and scalars through r, weights typed.
	case ir.OpConst:
		r.vals[v.ID] = v.Aux.(*ir.Const).Data
	case ir.OpEmbed:
		dst := out()
		embed(dst, r.weight(v.Args[0]), r.ids)
		if a, ok := v.Aux.(ir.Embed); ok {
			scale(dst, dst, a.Factor())
		}
	case ir.OpMatMul:
		dst := out()
		matmul(dst, arg(0), v.Args[0].Shape.Rows(), r.weight(v.Args[1]), r.p.threads)
		if a, ok := v.Aux.(ir.MatMul); ok && a.Softcap != 0 {
			softcap(dst, dst, a.Softcap)
		}
	case ir.OpGeGLU:
		rows := v.Args[0].Shape.Rows()
		gate := make([]float32, v.Shape.Elems())
		matmul(gate, arg(0), rows, r.weight(v.Args[1]), r.p.threads)
		dst := out()
		matmul(dst, arg(0), rows, r.weight(v.Args[2]), r.p.threads)
		geluTanh(gate, gate)
		mul(dst, gate, dst)
	case ir.OpAddRMSNorm:
		a := v.Aux.(ir.RMSNorm)
		dst := out()
		n := len(dst) / 2
		sum, normed := dst[:n], dst[n:]
		rmsNorm(sum, arg(1), r.vector(v.Args[2]), a.Eps, a.Offset)
		add(sum, arg(0), sum)
		rmsNorm(normed, sum, r.vector(v.Args[3]), a.Eps, a.Offset)
	case ir.OpPart:
		n := v.Shape.Elems()
		i := v.Aux.(ir.Part).Index
		r.vals[v.ID] = arg(0)[i*n : (i+1)*n]
	case ir.OpRMSNorm:
		a := v.Aux.(ir.RMSNorm)
		rmsNorm(out(), arg(0), r.vector(v.Args[1]), a.Eps, a.Offset)
	case ir.OpRoPE:
		a := v.Aux.(ir.RoPE)
		dst := out()
		rope(dst, arg(0), v.Shape, r.pos, a.Theta)
		if a.Factor() != 1 {
			scale(dst, dst, a.Factor())
		}
	case ir.OpAttention:
		return r.attention(out(), v)
	case ir.OpSelectRow:
		h := v.Shape[1]
		copy(out(), arg(0)[(r.nValid-1)*h:r.nValid*h])
	case ir.OpAdd:
		add(out(), arg(0), arg(1))
	case ir.OpMul:
		mul(out(), arg(0), arg(1))
	case ir.OpScale:
		scale(out(), arg(0), v.Aux.(ir.Scalar).C)
	case ir.OpSoftcap:
		softcap(out(), arg(0), v.Aux.(ir.Scalar).C)
	case ir.OpGeluTanh:
		geluTanh(out(), arg(0))
	case ir.OpSoftmax:
		softmaxRows(out(), arg(0), v.Shape.Last())
	case ir.OpReshape:
		r.vals[v.ID] = arg(0)
	default:
		return fmt.Errorf("the interpreter has no kernel for %v", v.Op)
	}
	return nil
}

// weight returns the typed view of a weight, or of a const/activation as f32.
func (r *run) weight(v *ir.Value) weight {
	if w, ok := r.p.weights[v.ID]; ok {
		return w
	}
	return weight{dtype: ir.F32, f32: r.vals[v.ID], cols: v.Shape.Last()}
}

// vector returns a small weight (a norm scale) as f32.
func (r *run) vector(v *ir.Value) []float32 {
	w := r.weight(v)
	out := make([]float32, v.Shape.Elems())
	w.row(0, len(out), out)
	return out
}

// derive materialises a weight the fold pass rewrote.
func derive(t ir.Tensor, d ir.Derived, v *ir.Value) ([]float32, error) {
	if !t.Shape.Equal(v.Shape) {
		return nil, fmt.Errorf("weight %q is %v, the graph wants %v", v.Name, t.Shape, v.Shape)
	}
	data, err := d.Apply(t)
	if err != nil {
		return nil, fmt.Errorf("weight %q: %w", v.Name, err)
	}
	return data, nil
}
