package tests

import (
	"testing"

	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/model"
)

// TestBF16KVCache runs the reference sequences with a bfloat16 KV cache,
// compiled and interpreted, split into calls in several ways (every split
// must see the same rounded keys), and bounds the cost against the float64
// reference. Compiled and interpreted agree to 2e-3 rather than 1e-4: a key
// within an f32 ulp of a bfloat16 rounding boundary may round either way.
func TestBF16KVCache(t *testing.T) {
	for _, name := range []string{"tiny", "gocoder"} {
		t.Run(name, func(t *testing.T) {
			ref := loadRef(t, map[string]string{"tiny": "tiny.hf-math.json", "gocoder": "gocoder.hf-math.json"}[name])
			opts := model.Options{Context: 64, KVDType: ir.BF16}
			compiled, interp := loadWith(t, name, opts, true), loadWith(t, name, opts, false)
			if got := compiled.Engine.(interface{ KVDType() ir.DType }).KVDType(); got != ir.BF16 {
				t.Fatalf("compiled engine's KV cache is %v", got)
			}
			want := logitsOf(t, interp, ref.Tokens, len(ref.Tokens))
			for _, prefill := range []int{len(ref.Tokens), 11, 0} {
				if d := maxRowDiff(logitsOf(t, compiled, ref.Tokens, prefill), want); d > 2e-3 {
					t.Errorf("compiled, prefill %d: %.3g from the interpreter's single prefill", prefill, d)
				}
				if d := maxRowDiff(logitsOf(t, interp, ref.Tokens, prefill), want); d > 1e-4 {
					t.Errorf("interpreter, prefill %d: %.3g from its single prefill", prefill, d)
				}
			}
			worst, row, col := maxAbsDiff(t, want, ref.Logits)
			var scale float64
			for _, r := range ref.Logits {
				for _, v := range r {
					scale = max(scale, v, -v)
				}
			}
			t.Logf("bf16 KV cache: %.3g from the float64 reference at %d,%d (largest logit %.3g)", worst, row, col, scale)
			if worst > 0.01*scale || worst < 1e-6 {
				t.Errorf("bf16 KV cache moves the logits by %.3g: want some rounding, and under 1%% of the largest logit", worst)
			}
		})
	}
}
