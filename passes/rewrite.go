package passes

import "github.com/gemmac/gemmac/ir"

// users maps each value to the values that take it as an argument.
func users(g *ir.Graph) map[*ir.Value][]*ir.Value {
	u := make(map[*ir.Value][]*ir.Value, len(g.Values))
	for _, v := range g.Values {
		for _, a := range v.Args {
			u[a] = append(u[a], v)
		}
	}
	return u
}

// isOutput reports whether v is one of the graph's results.
func isOutput(g *ir.Graph, v *ir.Value) bool {
	for _, o := range g.Outputs {
		if o == v {
			return true
		}
	}
	return false
}

// singleUse reports whether v feeds exactly one op and is not a result, so a
// fusion may absorb it.
func singleUse(g *ir.Graph, u map[*ir.Value][]*ir.Value, v *ir.Value) bool {
	return len(u[v]) == 1 && !isOutput(g, v)
}

// replaceUses points every use of old at new.
func replaceUses(g *ir.Graph, old, new *ir.Value) {
	for _, v := range g.Values {
		for i, a := range v.Args {
			if a == old {
				v.Args[i] = new
			}
		}
	}
	for i, o := range g.Outputs {
		if o == old {
			g.Outputs[i] = new
		}
	}
}

// insertBefore places vs just before at in the value order.
func insertBefore(g *ir.Graph, at *ir.Value, vs ...*ir.Value) {
	for i, v := range g.Values {
		if v == at {
			rest := append(append([]*ir.Value{}, vs...), g.Values[i:]...)
			g.Values = append(g.Values[:i], rest...)
			break
		}
	}
	g.Renumber()
}

// deadCode removes the ops no result depends on. Inputs stay: they are the
// graph's calling convention.
func deadCode(g *ir.Graph) {
	live := map[*ir.Value]bool{}
	var mark func(v *ir.Value)
	mark = func(v *ir.Value) {
		if live[v] {
			return
		}
		live[v] = true
		for _, a := range v.Args {
			mark(a)
		}
	}
	for _, o := range g.Outputs {
		mark(o)
	}
	kept := g.Values[:0]
	for _, v := range g.Values {
		if live[v] || v.Op == ir.OpInput {
			kept = append(kept, v)
		}
	}
	g.Values = kept
	g.Renumber()
}

// newValue makes a value for op over args, typed by the op.
func newValue(op ir.Op, label string, aux ir.Aux, args ...*ir.Value) (*ir.Value, error) {
	v := &ir.Value{Op: op, Name: label, Aux: aux, Args: args}
	shape, dt, err := ir.Infer(v)
	if err != nil {
		return nil, err
	}
	v.Shape, v.DType = shape, dt
	return v, nil
}
