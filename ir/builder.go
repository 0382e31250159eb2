package ir

import "fmt"

// Builder appends values to a graph, inferring each result's shape and dtype.
// The first ill-typed op is remembered and returned by Finish, so graph
// construction code reads as straight-line math without error checks.
type Builder struct {
	g   *Graph
	err error
}

// NewBuilder starts an empty graph.
func NewBuilder(name string) *Builder {
	return &Builder{g: &Graph{Name: name, Meta: map[string]int{}}}
}

// Meta records a build parameter shown by the printer.
func (b *Builder) Meta(key string, val int) { b.g.Meta[key] = val }

func (b *Builder) add(v *Value) *Value {
	v.ID = len(b.g.Values)
	b.g.Values = append(b.g.Values, v)
	return v
}

// Input declares a run-time input.
func (b *Builder) Input(name string, dt DType, shape Shape) *Value {
	return b.add(&Value{Op: OpInput, Name: name, DType: dt, Shape: shape})
}

// Weight declares a checkpoint tensor.
func (b *Builder) Weight(name string, dt DType, shape Shape) *Value {
	return b.add(&Value{Op: OpWeight, Name: name, DType: dt, Shape: shape})
}

// Const adds build-time data.
func (b *Builder) Const(name string, shape Shape, data []float32) *Value {
	if len(data) != shape.Elems() {
		b.fail(fmt.Errorf("const %q: %d values for shape %v", name, len(data), shape))
	}
	return b.add(&Value{Op: OpConst, Name: name, DType: F32, Shape: shape, Aux: &Const{Data: data}})
}

// Op appends an op over args; label names it in printouts.
func (b *Builder) Op(op Op, label string, aux Aux, args ...*Value) *Value {
	v := &Value{Op: op, Args: args, Aux: aux, Name: label}
	shape, dt, err := Infer(v)
	if err != nil {
		b.fail(fmt.Errorf("%s %q: %w", op, label, err))
		shape, dt = Shape{}, F32
	}
	v.Shape, v.DType = shape, dt
	return b.add(v)
}

func (b *Builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// Finish sets the graph outputs and returns the graph, or the first error.
func (b *Builder) Finish(outputs ...*Value) (*Graph, error) {
	if b.err != nil {
		return nil, b.err
	}
	b.g.Outputs = outputs
	return b.g, Verify(b.g)
}

// Infer computes the shape and dtype v's op gives its args, or says why the
// args do not fit the op.
func Infer(v *Value) (Shape, DType, error) {
	if v.Op <= OpInvalid || v.Op >= numOps {
		return nil, 0, fmt.Errorf("unknown op %d", v.Op)
	}
	info := opTable[v.Op]
	if info.arity < 0 {
		return v.Shape, v.DType, nil
	}
	if len(v.Args) != info.arity {
		return nil, 0, fmt.Errorf("has %d args, want %d", len(v.Args), info.arity)
	}
	for i, a := range v.Args {
		if a == nil {
			return nil, 0, fmt.Errorf("arg %d is nil", i)
		}
	}
	return info.infer(v.Args, v.Aux)
}
