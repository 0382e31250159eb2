package ir

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Fprint writes g as text a person can read, one value per line:
//
//	v12 f32[8,4,16] = rope v11 v1 {theta=10000}  # model.layers.0.q
func Fprint(w io.Writer, g *Graph) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "graph %s", g.Name)
	keys := make([]string, 0, len(g.Meta))
	for k := range g.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&sb, " %s=%d", k, g.Meta[k])
	}
	sb.WriteString("\n")
	for _, v := range g.Values {
		sb.WriteString("  " + FormatValue(v) + "\n")
	}
	outs := make([]string, len(g.Outputs))
	for i, o := range g.Outputs {
		outs[i] = o.String()
	}
	fmt.Fprintf(&sb, "  return %s\n", strings.Join(outs, " "))
	_, err := io.WriteString(w, sb.String())
	return err
}

// String renders g as Fprint does.
func (g *Graph) String() string {
	var sb strings.Builder
	Fprint(&sb, g)
	return sb.String()
}

// FormatValue renders one value as a line of the printed graph.
func FormatValue(v *Value) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-5s %-18s = %s", v, v.DType.String()+v.Shape.String(), v.Op)
	if v.Op.IsLeaf() && v.Name != "" {
		fmt.Fprintf(&sb, " %q", v.Name)
	}
	for _, a := range v.Args {
		sb.WriteString(" " + a.String())
	}
	if v.Aux != nil {
		fmt.Fprintf(&sb, " {%s}", v.Aux)
	}
	if !v.Op.IsLeaf() && v.Name != "" {
		sb.WriteString("  # " + v.Name)
	}
	return sb.String()
}
