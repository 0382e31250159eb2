package tests

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
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
