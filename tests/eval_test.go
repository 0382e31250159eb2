package tests

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gemmac/gemmac/cmd/gemmac/cli"
)

// TestGocoderPerplexity scores gocoder/valid_sample.go.txt as the float64
// reference did (windows of 129 ids, 128 predictions each) on both engines.
func TestGocoderPerplexity(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdata, "models/refs/gocoder.nll.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref cli.EvalResult
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(testdata, "models/gocoder/valid_sample.go.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, compiled := range []bool{true, false} {
		name := map[bool]string{true: "compiled", false: "interp"}[compiled]
		t.Run(name, func(t *testing.T) {
			if testing.Short() && !compiled {
				t.Skip("the interpreter takes a minute on 13k tokens; skipped in -short")
			}
			m := loadModel(t, "gocoder", 129, compiled)
			r, err := cli.Eval(m, m.Tokenizer.Encode(string(text), true), 128)
			if err != nil {
				t.Fatal(err)
			}
			if r.TokensScored != ref.TokensScored || r.Windows != ref.Windows {
				t.Fatalf("scored %d tokens in %d windows, the reference %d in %d", r.TokensScored, r.Windows, ref.TokensScored, ref.Windows)
			}
			if rel := math.Abs(r.MeanNLL-ref.MeanNLL) / ref.MeanNLL; rel > 1e-3 {
				t.Errorf("mean NLL %.6f, reference %.6f: off by %.3g%%", r.MeanNLL, ref.MeanNLL, 100*rel)
			}
			t.Logf("%s: mean NLL %.6f (reference %.6f), perplexity %.4f", name, r.MeanNLL, ref.MeanNLL, r.Perplexity)
		})
	}
}
