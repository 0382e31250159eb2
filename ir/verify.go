package ir

import (
	"errors"
	"fmt"
)

// Verify checks that g is well formed: values in topological order with
// consistent IDs, every op's args fit it, the recorded shape and dtype are the
// ones the op gives, leaves are declared sensibly, and the outputs belong to
// the graph. Errors name the offending value.
func Verify(g *Graph) error {
	var errs []error
	seen := make(map[*Value]bool, len(g.Values))
	for i, v := range g.Values {
		if err := verifyValue(v, i, seen); err != nil {
			errs = append(errs, fmt.Errorf("graph %s: %s %s: %w", g.Name, v, v.Op, err))
		}
		seen[v] = true
	}
	if len(g.Outputs) == 0 {
		errs = append(errs, fmt.Errorf("graph %s has no outputs", g.Name))
	}
	for i, o := range g.Outputs {
		if !seen[o] {
			errs = append(errs, fmt.Errorf("graph %s: output %d is not a value of the graph", g.Name, i))
		}
	}
	return errors.Join(errs...)
}

func verifyValue(v *Value, index int, seen map[*Value]bool) error {
	if v.ID != index {
		return fmt.Errorf("has ID %d at position %d", v.ID, index)
	}
	for i, a := range v.Args {
		if a != nil && !seen[a] {
			return fmt.Errorf("arg %d (%v) is not defined before it", i, a)
		}
	}
	switch v.Op {
	case OpInput, OpWeight:
		if v.Name == "" {
			return errors.New("has no name")
		}
	case OpConst:
		c, ok := v.Aux.(*Const)
		if !ok || len(c.Data) != v.Shape.Elems() || v.DType != F32 {
			return fmt.Errorf("const data does not fill %v%v", v.DType, v.Shape)
		}
	}
	for _, d := range v.Shape {
		if d <= 0 {
			return fmt.Errorf("has non-positive dimension in %v", v.Shape)
		}
	}
	if v.Op.IsLeaf() {
		if !v.DType.Known() {
			return fmt.Errorf("has unknown dtype %v", v.DType)
		}
		return nil
	}
	shape, dt, err := Infer(v)
	if err != nil {
		return err
	}
	if !shape.Equal(v.Shape) || dt != v.DType {
		return fmt.Errorf("recorded as %v%v but the op gives %v%v", v.DType, v.Shape, dt, shape)
	}
	return nil
}
