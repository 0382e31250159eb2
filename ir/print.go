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
		sb.WriteString("  " + FormatValue(v))
		if off, ok := g.Mem.offset(v); ok {
			fmt.Fprintf(&sb, "  @%d", off)
		}
		sb.WriteString("\n")
	}
	outs := make([]string, len(g.Outputs))
	for i, o := range g.Outputs {
		outs[i] = o.String()
	}
	fmt.Fprintf(&sb, "  return %s\n", strings.Join(outs, " "))
	if g.KV != nil {
		fmt.Fprintf(&sb, "kv cache: %d bytes per sequence\n", g.KV.Bytes)
		for _, l := range g.KV.Layers {
			fmt.Fprintf(&sb, "  layer %-3d %5d slots × %d heads × %d  k@%d v@%d\n", l.Layer, l.Slots, l.Heads, l.Dim, l.KOffset, l.VOffset)
		}
	}
	if g.Mem != nil {
		fmt.Fprintf(&sb, "arena: %d bytes (%d without reuse)\n", g.Mem.Bytes, g.Mem.Naive)
	}
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
