package tests

import (
	"testing"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/interp"
)

// interpLogits runs tokens through the interpreter: the first prefill tokens
// as chunks of chunk tokens, the rest one at a time through the decode graph.
func interpLogits(t *testing.T, dir string, tokens []int, prefill, chunk int) [][]float32 {
	t.Helper()
	ckpt, err := frontend.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	cfg := ckpt.Config
	context := 64
	pre, err := frontend.Build("prefill", cfg, frontend.GraphShape{Tokens: chunk, Context: context, AllLogits: true}, ckpt.WeightDTypes())
	if err != nil {
		t.Fatal(err)
	}
	dec, err := frontend.Build("decode", cfg, frontend.GraphShape{Tokens: 1, Context: context, AllLogits: true}, ckpt.WeightDTypes())
	if err != nil {
		t.Fatal(err)
	}
	pp, err := interp.New(pre, ckpt.Weights, 0)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := interp.New(dec, ckpt.Weights, 0)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := interp.NewCache(context, pre, dec)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]float32
	ids := make([]int32, len(tokens))
	for i, tok := range tokens {
		ids[i] = int32(tok)
	}
	vocab := cfg.VocabSize
	for pos := 0; pos < len(tokens); {
		prog, n := dp, 1
		if pos < prefill {
			prog, n = pp, min(chunk, prefill-pos)
		}
		out, err := prog.Run(cache, ids[pos:pos+n], pos)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			rows = append(rows, out[i*vocab:(i+1)*vocab])
		}
		pos += n
	}
	return rows
}

func TestInterpreterMatchesReferences(t *testing.T) {
	cases := []struct {
		model, ref string
		tol        float64
	}{
		{"tiny", "tiny.hf-math.json", 1e-3},
		{"tiny-hot", "tiny-hot.hf-math.json", 1e-3},
		{"tiny-bf16", "tiny.hf-math.json", 1e-3},
		{"tiny", "tiny.llamacpp.json", 2e-2},
		{"tiny-hot", "tiny-hot.llamacpp.json", 2e-2},
		{"gocoder", "gocoder.hf-math.json", 1e-3},
	}
	for _, c := range cases {
		ref := loadRef(t, c.ref)
		for _, mode := range []struct {
			name           string
			prefill, chunk int
		}{
			{"one-prefill", len(ref.Tokens), len(ref.Tokens)},
			{"chunks-of-16", len(ref.Tokens), 16},
			{"prefill-11-then-decode", 11, 11},
			{"all-decode", 0, 1},
		} {
			t.Run(c.model+"/"+c.ref+"/"+mode.name, func(t *testing.T) {
				got := interpLogits(t, modelDir(c.model), ref.Tokens, mode.prefill, mode.chunk)
				worst, row, col := maxAbsDiff(t, got, ref.Logits)
				if worst > c.tol {
					t.Errorf("max |Δlogit| = %.3g at position %d, token %d; tolerance %g", worst, row, col, c.tol)
				}
				t.Logf("max |Δlogit| = %.3g", worst)
			})
		}
	}
}
