package tests

import (
	"path/filepath"
	"testing"

	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/model"
)

// TestGGUFThroughTheModelAPI loads llama.cpp's quantized files the way a user
// does (a path to the .gguf), tokenizer from its metadata included, and
// checks the logits against the float64 reference on the same weights.
func TestGGUFThroughTheModelAPI(t *testing.T) {
	for _, c := range []struct {
		file, ref string
		dt        ir.DType
	}{
		{"tiny-hot.q8_0.gguf", "tiny-hot.q8_0.hf-math.json", ir.Q8_0},
		{"tiny-hot.q4_0.gguf", "tiny-hot.q4_0.hf-math.json", ir.Q4_0},
		{"tiny.f32.gguf", "tiny.hf-math.json", ir.F32},
	} {
		t.Run(c.file, func(t *testing.T) {
			m, err := model.Load(filepath.Join(testdata, "models", c.file), model.Options{Context: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Tokenizer == nil || m.Tokenizer.VocabSize() != 512 {
				t.Fatalf("the GGUF's tokenizer was not loaded: %v", m.Tokenizer)
			}
			ref := loadRef(t, c.ref)
			got := logitsOf(t, m, ref.Tokens, 11)
			checkAgainstRef(t, c.ref, got, ref.Logits, c.dt)
		})
	}
}
