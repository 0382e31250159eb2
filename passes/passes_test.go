package passes

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/interp"
)

const models = "../../shared/testdata/models"

// sequence is 40 tokens: five sliding windows of tiny, so ring wrap-around
// and the window mask are exercised.
var sequence = func() []int32 {
	s := make([]int32, 40)
	for i := range s {
		s[i] = int32((i*37 + 2) % 512)
	}
	return s
}()

type graphs struct{ prefill, decode *ir.Graph }

func build(t *testing.T, ckpt *frontend.Checkpoint) graphs {
	t.Helper()
	const context = 64
	dt := ckpt.WeightDTypes()
	pre, err := frontend.Build("prefill", ckpt.Config, frontend.GraphShape{Tokens: 16, Context: context, AllLogits: true}, dt)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := frontend.Build("decode", ckpt.Config, frontend.GraphShape{Tokens: 1, Context: context, AllLogits: true}, dt)
	if err != nil {
		t.Fatal(err)
	}
	return graphs{pre, dec}
}

// run feeds the sequence: 24 tokens through prefill chunks (the last one
// partial), the rest through decode, and returns every row of logits.
func run(t *testing.T, ckpt *frontend.Checkpoint, gs graphs) []float32 {
	t.Helper()
	pre, err := interp.New(gs.prefill, ckpt.Weights, 2)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := interp.New(gs.decode, ckpt.Weights, 2)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := interp.NewCache(64, gs.prefill, gs.decode)
	if err != nil {
		t.Fatal(err)
	}
	var out []float32
	vocab := ckpt.Config.VocabSize
	for pos := 0; pos < len(sequence); {
		p, n := dec, 1
		if pos < 24 {
			p, n = pre, min(16, 24-pos)
		}
		logits, err := p.Run(cache, sequence[pos:pos+n], pos)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, logits[:n*vocab]...)
		pos += n
	}
	return out
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	worst := 0.0
	for i := range a {
		d := math.Abs(float64(a[i] - b[i]))
		if d > worst || d != d {
			worst = d
		}
	}
	return worst
}

// TestEveryPassPreservesMeaning runs the pipeline one pass at a time on
// tiny-hot (both softcaps active) and the bf16 model, checks the graph after
// each, and compares the interpreter's logits with the unoptimised graph's.
func TestEveryPassPreservesMeaning(t *testing.T) {
	for _, model := range []string{"tiny-hot", "tiny-bf16", "gocoder"} {
		t.Run(model, func(t *testing.T) {
			ckpt, err := frontend.Open(filepath.Join(models, model))
			if err != nil {
				t.Fatal(err)
			}
			defer ckpt.Close()
			want := run(t, ckpt, build(t, ckpt))
			gs := build(t, ckpt)
			for _, p := range Pipeline {
				for _, g := range []*ir.Graph{gs.prefill, gs.decode} {
					if err := p.Run(g); err != nil {
						t.Fatalf("%s on %s: %v", p.Name, g.Name, err)
					}
					if err := ir.Verify(g); err != nil {
						t.Fatalf("after %s: %v", p.Name, err)
					}
				}
				if d := maxDiff(run(t, ckpt, gs), want); d > 1e-5 {
					t.Fatalf("after %s the logits moved by %.3g", p.Name, d)
				}
			}
		})
	}
}

func optimised(t *testing.T, model string, s frontend.GraphShape) *ir.Graph {
	t.Helper()
	ckpt, err := frontend.Open(filepath.Join(models, model))
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	g, err := frontend.Build("g", ckpt.Config, s, ckpt.WeightDTypes())
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(g, Options{Check: true}); err != nil {
		t.Fatal(err)
	}
	return g
}

func count(g *ir.Graph, op ir.Op) int {
	n := 0
	for _, v := range g.Values {
		if v.Op == op {
			n++
		}
	}
	return n
}

func TestFusedGraphShape(t *testing.T) {
	g := optimised(t, "tiny", frontend.GraphShape{Tokens: 8, Context: 32})
	layers := 4
	for _, c := range []struct {
		op   ir.Op
		want int
	}{
		{ir.OpGeGLU, layers},
		{ir.OpAddRMSNorm, 2 * layers}, // every residual add feeds a norm (the last, the final norm)
		{ir.OpSelectRow, 2},           // the last layer's attention output and residual stream
		{ir.OpGeluTanh, 0},
		{ir.OpScale, 0},
		{ir.OpSoftcap, 0},
		{ir.OpAttention, layers},
		{ir.OpMatMul, 5*layers + 1}, // q, k, v, o and down per layer, and the LM head
	} {
		if got := count(g, c.op); got != c.want {
			t.Errorf("%d %v ops after the pipeline, want %d\n%s", got, c.op, c.want, g)
		}
	}
	// Past the last attention only the last valid token's row is computed.
	for _, v := range g.Values {
		if v.Op != ir.OpGeGLU {
			continue
		}
		want := 8
		if strings.HasPrefix(v.Name, fmt.Sprintf("layers.%d.", layers-1)) {
			want = 1
		}
		if v.Shape[0] != want {
			t.Errorf("%v computes %d rows, want %d", v, v.Shape[0], want)
		}
	}
	for _, v := range g.Values {
		switch a := v.Aux.(type) {
		case ir.RMSNorm:
			if a.Offset != 0 {
				t.Errorf("%v still adds %g to its norm weight", v, a.Offset)
			}
		case ir.Attention:
			if a.Scale != 1 {
				t.Errorf("%v still scales scores by %g", v, a.Scale)
			}
		case ir.RoPE:
			if strings.Contains(v.Name, "q_rope") && a.Factor() != 0.25 {
				t.Errorf("%v: query scale %g, want 1/sqrt(16)", v, a.Factor())
			}
		case ir.Embed:
			if a.Factor() != 8 {
				t.Errorf("embedding scale %g, want sqrt(64)", a.Factor())
			}
		}
	}
}

func TestKVCacheLayout(t *testing.T) {
	g := optimised(t, "tiny", frontend.GraphShape{Tokens: 4, Context: 32})
	if len(g.KV.Layers) != 4 {
		t.Fatalf("%d cache layers, want 4", len(g.KV.Layers))
	}
	var end int64
	for _, l := range g.KV.Layers {
		want := 32
		if l.Layer%2 == 0 {
			want = 8 // sliding window
		}
		if l.Slots != want || l.Heads != 2 || l.Dim != 16 {
			t.Errorf("layer %d: %d slots × %d × %d, want %d × 2 × 16", l.Layer, l.Slots, l.Heads, l.Dim, want)
		}
		if l.KOffset < end || l.VOffset < l.KOffset+int64(l.Slots*32*4) || l.KOffset%64 != 0 || l.VOffset%64 != 0 {
			t.Errorf("layer %d overlaps or is misaligned: %+v", l.Layer, l)
		}
		end = l.VOffset + int64(l.Slots*32*4)
	}
	if g.KV.Bytes < end {
		t.Errorf("cache of %d bytes is smaller than its last layer's end %d", g.KV.Bytes, end)
	}
}

// TestMemPlanNeverOverlapsLiveBuffers checks the plan against liveness
// computed independently, and that reuse makes the arena smaller.
func TestMemPlanNeverOverlapsLiveBuffers(t *testing.T) {
	g := optimised(t, "gocoder", frontend.GraphShape{Tokens: 32, Context: 128, AllLogits: true})
	type span struct {
		v          *ir.Value
		off, bytes int64
		first, end int
	}
	root := func(v *ir.Value) *ir.Value {
		for v.Op.IsView() {
			v = v.Args[0]
		}
		return v
	}
	spans := map[*ir.Value]*span{}
	for i, v := range g.Values {
		if v.Op.IsLeaf() || v.Op.IsView() {
			continue
		}
		off, ok := g.Mem.Offsets[v.ID]
		if !ok {
			t.Fatalf("%v has no offset", v)
		}
		if off%64 != 0 {
			t.Errorf("%v at offset %d is not 64-byte aligned", v, off)
		}
		spans[v] = &span{v, off, int64(v.Shape.Elems() * 4), i, i}
	}
	for i, v := range g.Values {
		for _, a := range v.Args {
			if s, ok := spans[root(a)]; ok {
				s.end = max(s.end, i)
			}
		}
	}
	for _, o := range g.Outputs {
		spans[root(o)].end = len(g.Values)
	}
	for _, a := range spans {
		if a.off+a.bytes > g.Mem.Bytes {
			t.Errorf("%v runs past the arena", a.v)
		}
		for _, b := range spans {
			if a == b || a.end < b.first || b.end < a.first {
				continue
			}
			if a.off < b.off+b.bytes && b.off < a.off+a.bytes {
				t.Fatalf("%v [%d,%d) and %v [%d,%d) are live together and overlap", a.v, a.off, a.off+a.bytes, b.v, b.off, b.off+b.bytes)
			}
		}
	}
	if g.Mem.Bytes*3 > g.Mem.Naive {
		t.Errorf("arena %d bytes, without reuse %d: reuse saves less than 3×", g.Mem.Bytes, g.Mem.Naive)
	}
	t.Logf("arena %d bytes, %d without reuse", g.Mem.Bytes, g.Mem.Naive)
}
