package interp

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/ir"
)

func randomF32(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// TestQuantDotAndRow checks the block kernels against dequantise-then-f32 on
// rows of several blocks.
func TestQuantDotAndRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, k = 5, 96
	for _, d := range []ir.DType{ir.Q8_0, ir.Q4_0} {
		q, err := ir.Quantize(d, ir.Shape{n, k}, randomF32(rng, n*k))
		if err != nil {
			t.Fatal(err)
		}
		deq, err := q.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		w := newWeight(q)
		x := randomF32(rng, k)
		for r := 0; r < n; r++ {
			want := dotF32(x, deq[r*k:(r+1)*k])
			if got := w.dot(r, x); math.Abs(float64(got-want)) > 1e-5*(1+math.Abs(float64(want))) {
				t.Errorf("%v row %d: dot %g, want %g", d, r, got, want)
			}
			row := make([]float32, k)
			w.row(r*k, k, row)
			for j := range row {
				if row[j] != deq[r*k+j] {
					t.Fatalf("%v row %d [%d] = %g, want %g", d, r, j, row[j], deq[r*k+j])
				}
			}
		}
	}
}

// TestQuantGraph runs an embedding and a matmul with quantised weights
// through New and Run and compares with the same graph on the dequantised
// weights stored as f32.
func TestQuantGraph(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const vocab, h, out = 8, 64, 32
	for _, d := range []ir.DType{ir.Q8_0, ir.Q4_0} {
		emb, _ := ir.Quantize(d, ir.Shape{vocab, h}, randomF32(rng, vocab*h))
		proj, _ := ir.Quantize(d, ir.Shape{out, h}, randomF32(rng, out*h))
		build := func(dt ir.DType) *ir.Graph {
			b := ir.NewBuilder("g")
			tok := b.Input("tokens", ir.I32, ir.Shape{3})
			x := b.Op(ir.OpEmbed, "embed", nil, b.Weight("emb", dt, ir.Shape{vocab, h}), tok)
			y := b.Op(ir.OpMatMul, "proj", nil, x, b.Weight("proj", dt, ir.Shape{out, h}))
			g, err := b.Finish(y)
			if err != nil {
				t.Fatal(err)
			}
			return g
		}
		f32 := func(q ir.Tensor) ir.Tensor {
			v, _ := q.Float32s()
			b := make([]byte, 4*len(v))
			for i, x := range v {
				bits := math.Float32bits(x)
				b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
			}
			return ir.Tensor{DType: ir.F32, Shape: q.Shape, Data: b}
		}
		run := func(g *ir.Graph, w map[string]ir.Tensor) []float32 {
			p, err := New(g, w, 2)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := NewCache(4, g)
			y, err := p.Run(c, []int32{3, 0, 7}, 0)
			if err != nil {
				t.Fatal(err)
			}
			return y
		}
		got := run(build(d), map[string]ir.Tensor{"emb": emb, "proj": proj})
		want := run(build(ir.F32), map[string]ir.Tensor{"emb": f32(emb), "proj": f32(proj)})
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("%v: y[%d] = %g, want %g", d, i, got[i], want[i])
			}
		}
		// A weight with too few bytes is an error, not a crash.
		short := proj
		short.Data = short.Data[:len(short.Data)-1]
		if _, err := New(build(d), map[string]ir.Tensor{"emb": emb, "proj": short}, 1); err == nil || !strings.Contains(err.Error(), "needs") {
			t.Errorf("%v: short weight: %v", d, err)
		}
	}
	// Rows that are not whole blocks are refused when the weight is bound.
	b := ir.NewBuilder("g")
	tok := b.Input("tokens", ir.I32, ir.Shape{1})
	x := b.Op(ir.OpEmbed, "embed", nil, b.Weight("emb", ir.F32, ir.Shape{4, 48}), tok)
	y := b.Op(ir.OpMatMul, "proj", nil, x, b.Weight("proj", ir.Q8_0, ir.Shape{2, 48}))
	g, err := b.Finish(y)
	if err != nil {
		t.Fatal(err)
	}
	emb := ir.Tensor{DType: ir.F32, Shape: ir.Shape{4, 48}, Data: make([]byte, 4*4*48)}
	bad := ir.Tensor{DType: ir.Q8_0, Shape: ir.Shape{2, 48}, Data: make([]byte, 3*34)}
	if _, err := New(g, map[string]ir.Tensor{"emb": emb, "proj": bad}, 1); err == nil || !strings.Contains(err.Error(), "whole blocks") {
		t.Errorf("48-wide q8_0 rows: %v", err)
	}
}
