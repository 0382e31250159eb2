package model

import (
	"bytes"
	"slices"
	"testing"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
)

// copyingEngine is the interpreter on its own copy of the weights, standing
// in for an engine that keeps them elsewhere (a GPU's memory).
type copyingEngine struct{ *InterpEngine }

func (copyingEngine) CopiesWeights() bool { return true }

// TestConvertedWeightsLifetime: a model converted at load keeps the
// converted checkpoint while its engine reads it, and closes it at once
// when the engine copied the weights (model.WeightCopier).
func TestConvertedWeightsLifetime(t *testing.T) {
	const tiny = "../../../shared/testdata/models/tiny"
	conv := frontend.Conversion{Layers: ir.Q8_0}
	tokens := []int{2, 40, 7, 300, 12}
	logits := func(m *Model) []float32 {
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.Logits(tokens, len(tokens))
		if err != nil {
			t.Fatal(err)
		}
		return rows[len(rows)-1]
	}

	inPlace, err := Load(tiny, Options{Context: 64, Convert: conv})
	if err != nil {
		t.Fatal(err)
	}
	defer inPlace.Close()
	if inPlace.converted == nil {
		t.Fatal("the interpreter reads the converted weights, but the model let them go")
	}

	copier := func(c *frontend.Checkpoint, o Options) (Engine, error) {
		own := *c
		own.Weights = map[string]ir.Tensor{}
		for name, w := range c.Weights {
			w.Data = bytes.Clone(w.Data)
			own.Weights[name] = w
		}
		e, err := newInterpEngine(&own, o.Context, o.Threads, o.KVDType)
		return copyingEngine{e}, err
	}
	copied, err := Load(tiny, Options{Context: 64, Convert: conv, Engine: copier})
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Close()
	if copied.converted != nil {
		t.Error("the engine copied the weights, but the model still holds the converted ones")
	}
	a, b := logits(inPlace), logits(copied)
	if !slices.Equal(a, b) {
		t.Errorf("logits differ between the engines: %v vs %v", a[:4], b[:4])
	}
}
