package passes

import (
	"path/filepath"
	"testing"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/interp"
)

// runBatch feeds four sequences of different lengths (past tiny's sliding
// window) one token at a time, through the batched graph (three rows, then
// all four, then two) after a serial prefill by the decode graph, and
// returns every logits row of the batched steps.
func runBatch(t *testing.T, ckpt *frontend.Checkpoint, batch, decode *ir.Graph) []float32 {
	t.Helper()
	bp, err := interp.New(batch, ckpt.Weights, 2)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := interp.New(decode, ckpt.Weights, 2)
	if err != nil {
		t.Fatal(err)
	}
	lengths := []int{3, 11, 20, 1}
	caches := make([]*interp.Cache, len(lengths))
	for i, n := range lengths {
		if caches[i], err = interp.NewCache(64, batch, decode); err != nil {
			t.Fatal(err)
		}
		for p := 0; p < n; p++ {
			if _, err := dp.Run(caches[i], sequence[(i*7+p)%len(sequence):][:1], p); err != nil {
				t.Fatal(err)
			}
		}
	}
	var out []float32
	vocab := ckpt.Config.VocabSize
	for _, rows := range [][]int{{2, 0, 1}, {0, 1, 2, 3}, {3, 1}} {
		var cs []*interp.Cache
		var toks []int32
		var pos []int
		for _, i := range rows {
			cs = append(cs, caches[i])
			toks = append(toks, sequence[(i*7+lengths[i])%len(sequence)])
			pos = append(pos, lengths[i])
			lengths[i]++
		}
		logits, err := bp.RunRows(cs, toks, pos)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, logits[:len(rows)*vocab]...)
	}
	return out
}

// TestEveryPassPreservesBatchedMeaning is TestEveryPassPreservesMeaning for
// the batched decode graph (per-row positions and caches).
func TestEveryPassPreservesBatchedMeaning(t *testing.T) {
	ckpt, err := frontend.Open(filepath.Join(models, "tiny-hot"))
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	build := func() (batch, decode *ir.Graph) {
		dt := ckpt.WeightDTypes()
		b, err := frontend.Build("decode_batch", ckpt.Config, frontend.GraphShape{Tokens: 4, Context: 64, AllLogits: true, Batch: true}, dt)
		if err != nil {
			t.Fatal(err)
		}
		d, err := frontend.Build("decode", ckpt.Config, frontend.GraphShape{Tokens: 1, Context: 64, AllLogits: true}, dt)
		if err != nil {
			t.Fatal(err)
		}
		return b, d
	}
	b0, d0 := build()
	want := runBatch(t, ckpt, b0, d0)
	b, d := build()
	for _, p := range Pipeline {
		if err := p.Run(b); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if err := ir.Verify(b); err != nil {
			t.Fatalf("after %s: %v", p.Name, err)
		}
		if d := maxDiff(runBatch(t, ckpt, b, d), want); d > 1e-5 {
			t.Fatalf("after %s the batched logits moved by %.3g", p.Name, d)
		}
	}
	if b.Meta["batch"] != 4 || b.KV == nil || b.Mem == nil {
		t.Errorf("optimised batch graph: meta %v, kv %v, mem %v", b.Meta, b.KV != nil, b.Mem != nil)
	}
}

// TestBatchGraphChecks: the frontend and verifier keep batch graphs
// well-formed.
func TestBatchGraphChecks(t *testing.T) {
	ckpt, err := frontend.Open(filepath.Join(models, "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	if _, err := frontend.Build("b", ckpt.Config, frontend.GraphShape{Tokens: 4, Context: 64, Batch: true}, nil); err == nil {
		t.Error("a batch graph with only the last row's logits was built")
	}
	b := ir.NewBuilder("bad")
	x := b.Input("x", ir.F32, ir.Shape{4, 2, 16})
	pos := b.Input("pos", ir.I32, ir.Shape{3})
	b.Op(ir.OpRoPE, "r", ir.RoPE{Theta: 10000}, x, pos)
	if _, err := b.Finish(x); err == nil {
		t.Error("RoPE with 3 positions for 4 rows passed the verifier")
	}
}
