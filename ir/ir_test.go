package ir

import (
	"strings"
	"testing"
)

func smallGraph(t *testing.T) *Graph {
	t.Helper()
	b := NewBuilder("test")
	ids := b.Input("tokens", I32, Shape{3})
	table := b.Weight("embed", BF16, Shape{10, 4})
	x := b.Op(OpEmbed, "embed", nil, table, ids)
	w := b.Weight("proj", F32, Shape{6, 4})
	y := b.Op(OpMatMul, "proj", nil, x, w)
	y = b.Op(OpSoftcap, "cap", Scalar{C: 30}, y)
	g, err := b.Finish(y)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestBuilderInfersShapes(t *testing.T) {
	g := smallGraph(t)
	out := g.Outputs[0]
	if !out.Shape.Equal(Shape{3, 6}) || out.DType != F32 {
		t.Errorf("output is %v%v, want f32[3,6]", out.DType, out.Shape)
	}
}

func TestBuilderReportsFirstIllTypedOp(t *testing.T) {
	b := NewBuilder("bad")
	x := b.Input("x", F32, Shape{2, 4})
	w := b.Weight("w", F32, Shape{6, 5})
	y := b.Op(OpMatMul, "blk.0.q", nil, x, w)
	_, err := b.Finish(y)
	if err == nil || !strings.Contains(err.Error(), "blk.0.q") || !strings.Contains(err.Error(), "inner dimensions") {
		t.Fatalf("err = %v, want the matmul named with the inner-dimension mismatch", err)
	}
}

func TestVerifierRejects(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(g *Graph)
		want   string
	}{
		{"wrong recorded shape", func(g *Graph) { g.Values[4].Shape = Shape{3, 7} }, "v4 matmul: recorded as f32[3,7] but the op gives f32[3,6]"},
		{"arg defined later", func(g *Graph) { g.Values[2].Args[1] = g.Values[4] }, "v2 embed: arg 1 (v4) is not defined before it"},
		{"wrong aux", func(g *Graph) { g.Values[5].Aux = RoPE{} }, "v5 softcap: aux is ir.RoPE, want Scalar"},
		{"bad id", func(g *Graph) { g.Values[1].ID = 9 }, "has ID 9 at position 1"},
		{"unnamed weight", func(g *Graph) { g.Values[3].Name = "" }, "v3 weight: has no name"},
		{"int activations", func(g *Graph) { g.Values[2].Args[0] = g.Values[0] }, "table v0 is i32"},
		{"arity", func(g *Graph) { g.Values[5].Args = nil }, "has 0 args, want 1"},
		{"foreign output", func(g *Graph) { g.Outputs = []*Value{{ID: 0}} }, "output 0 is not a value of the graph"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := smallGraph(t)
			c.break_(g)
			err := Verify(g)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Verify = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestPrinter(t *testing.T) {
	got := smallGraph(t).String()
	for _, want := range []string{
		"graph test\n",
		`v1    bf16[10,4]         = weight "embed"`,
		"v2    f32[3,4]           = embed v1 v0  # embed",
		"v5    f32[3,6]           = softcap v4 {c=30}  # cap",
		"return v5",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("printout lacks %q:\n%s", want, got)
		}
	}
}

func TestBF16Rounding(t *testing.T) {
	cases := []struct {
		in   float32
		want float32
	}{
		{1, 1},
		{59.866518, 59.75}, // sqrt(3584): the 9B's embedding scale in bf16
		{48, 48},
		{1.00390625, 1},        // halfway: ties to even
		{1.01171875, 1.015625}, // halfway: ties to even (up)
		{-3.1415927, -3.140625},
	}
	for _, c := range cases {
		if got := RoundTo(c.in, BF16); got != c.want {
			t.Errorf("RoundTo(%v, bf16) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestLayPanels(t *testing.T) {
	// w is 3 × 2 (rows are output columns); panels of 2 columns.
	w := []float32{
		1, 2,
		3, 4,
		5, 6,
	}
	want := []float32{
		1, 3, // panel 0, k = 0: w[0,0], w[1,0]
		2, 4, // panel 0, k = 1
		5, 0, // panel 1, k = 0: w[2,0], then padding
		6, 0,
	}
	if n := PanelFloats(3, 2, 2); n != len(want) {
		t.Fatalf("PanelFloats(3, 2, 2) = %d, want %d", n, len(want))
	}
	got := make([]float32, len(want))
	for i := range got {
		got[i] = -1 // padding must be written
	}
	LayPanels(got, w, 3, 2, 2, 0, 1)
	LayPanels(got, w, 3, 2, 2, 1, 2)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("LayPanels = %v, want %v", got, want)
		}
	}
}

// BenchmarkLayPanels lays out the 2B's down projection, one thread: the
// engine's cost at load per matrix.
func BenchmarkLayPanels(b *testing.B) {
	const N, K, P = 2304, 9216, 64
	src := make([]float32, N*K)
	dst := make([]float32, PanelFloats(N, K, P))
	b.SetBytes(int64(len(src)) * 4)
	for i := 0; i < b.N; i++ {
		LayPanels(dst, src, N, K, P, 0, N/P)
	}
}
