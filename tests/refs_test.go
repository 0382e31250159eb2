package tests

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/ir"
)

// testdata is ../shared/testdata from the project root; CI lays it out the
// same way.
const testdata = "../../shared/testdata"

type refLogits struct {
	Tokens []int       `json:"tokens"`
	Logits [][]float64 `json:"logits"`
}

func loadRef(t *testing.T, name string) refLogits {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, "models", "refs", name))
	if err != nil {
		t.Fatalf("reference data missing (is ../shared beside the project?): %v", err)
	}
	var ref refLogits
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return ref
}

func modelDir(name string) string { return filepath.Join(testdata, "models", name) }

// maxAbsDiff compares rows of logits and reports the worst element.
func maxAbsDiff(t *testing.T, got [][]float32, want [][]float64) (worst float64, row, col int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rows of logits, want %d", len(got), len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("row %d: got %d logits, want %d", i, len(got[i]), len(want[i]))
		}
		for j := range want[i] {
			d := math.Abs(float64(got[i][j]) - want[i][j])
			if d > worst || math.IsNaN(d) {
				worst, row, col = d, i, j
			}
		}
	}
	return worst, row, col
}

func argmax[T float32 | float64](row []T) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}

// quantizesActivations reports whether this machine's compiled matmuls over
// weights of dt quantise x to bytes for integer dot products.
func quantizesActivations(dt ir.DType) bool {
	return codegen.HostTarget().QuantizesActivations(dt)
}

// wordsTol bounds the logits of prefills whose matmuls round x to 16 bits
// per block (q8_0 on AVX-512 VNNI, codegen.Target.PrefillXBits): the
// reference data allows 1.0 for rounded activations, but 16 bits keep
// tiny-hot's prefill logits within 0.002 of its float64 reference and
// 0.0004 of the interpreter, so a fault that 1.0 would let through fails.
const wordsTol = 1e-2

// xTolerance is the tolerance for logits of a model with weights of dt,
// compiled for this machine, against a reference held to tol: tol when
// activations stay f32, wordsTol when prefill rounds them to 16 bits, and
// 1.0 with the same argmax (quantized) when they are rounded to bytes.
func xTolerance(dt ir.DType, tol float64) (float64, bool) {
	switch codegen.HostTarget().PrefillXBits(1024, dt) { // 1024 rows: a prefill chunk
	case 8:
		return 1, true
	case 16:
		return max(tol, wordsTol), false
	}
	return tol, false
}

// checkAgainstRef checks logits of a model with weights of dt against a
// float64 reference on the same (dequantised) weights with the reference
// data's tolerance (1e-3 or, with activations rounded to bytes, 1.0 and the
// same argmax at every position; xTolerance).
func checkAgainstRef(t *testing.T, what string, got [][]float32, ref [][]float64, dt ir.DType) {
	t.Helper()
	tol, quantized := xTolerance(dt, 1e-3)
	checkLogits(t, what, got, ref, tol, quantized, false)
}

// checkAgainstInterp checks compiled logits against the interpreter's on
// the same weights: within 1e-4 or, as xTolerance says, wordsTol or 1.0
// with the same argmax unless the interpreter's top two are closer than
// twice the difference (tiny's are).
func checkAgainstInterp(t *testing.T, what string, got, interp [][]float32, dt ir.DType) {
	t.Helper()
	tol, quantized := xTolerance(dt, 1e-4)
	checkLogits(t, what, got, interp, tol, quantized, true)
}

// checkLogits fails unless got is within tol of want row by row and, when
// quantized, has want's argmax (or, with nearTies, one of two logits closer
// than twice the difference).
func checkLogits[T float32 | float64](t *testing.T, what string, got [][]float32, want [][]T, tol float64, quantized, nearTies bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows of logits, want %d", what, len(got), len(want))
	}
	for r := range want {
		if len(got[r]) != len(want[r]) {
			t.Fatalf("%s: row %d: %d logits, want %d", what, r, len(got[r]), len(want[r]))
		}
		worst, at := 0.0, 0
		for i := range want[r] {
			if d := math.Abs(float64(got[r][i]) - float64(want[r][i])); d > worst || math.IsNaN(d) {
				worst, at = d, i
			}
		}
		if !(worst <= tol) {
			t.Errorf("%s: row %d: |Δlogit| %.3g at %d > %g", what, r, worst, at, tol)
		}
		tie := nearTies && topMargin(want[r]) <= 2*worst
		if quantized && argmax(got[r]) != argmax(want[r]) && !tie {
			t.Errorf("%s: row %d: argmax %d, want %d", what, r, argmax(got[r]), argmax(want[r]))
		}
	}
}

// topMargin is the gap between the largest and second largest logit.
func topMargin[T float32 | float64](row []T) float64 {
	best := argmax(row)
	second := math.Inf(-1)
	for i, v := range row {
		if i != best && float64(v) > second {
			second = float64(v)
		}
	}
	return float64(row[best]) - second
}
