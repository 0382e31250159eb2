package sample

import (
	"fmt"
	"math"
)

// Options configures a Sampler. The zero value is greedy decoding.
type Options struct {
	// Temperature divides the logits before sampling; 0 selects greedy
	// decoding (argmax), which ignores TopK, TopP, MinP and Seed.
	Temperature float32
	// TopK keeps the TopK most likely tokens (and any tied with the last
	// of them, as Hugging Face does); 0 disables it.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP (nucleus sampling); 0 or 1 disables it.
	TopP float32
	// MinP drops tokens whose probability is below MinP times that of the
	// most likely token; 0 disables it.
	MinP float32
	// RepetitionPenalty discourages tokens already in the history with
	// Hugging Face's rule: a positive logit is divided by it, a negative
	// one multiplied. 0 or 1 disables it.
	RepetitionPenalty float32
	// Seed seeds the random generator used to draw tokens.
	Seed uint64
}

// Validate reports the first invalid field, if any.
func (o Options) Validate() error {
	floats := []struct {
		name     string
		v        float32
		min, max float64
	}{
		{"Temperature", o.Temperature, 0, math.Inf(1)},
		{"TopP", o.TopP, 0, 1},
		{"MinP", o.MinP, 0, 1},
		{"RepetitionPenalty", o.RepetitionPenalty, 0, math.Inf(1)},
	}
	for _, f := range floats {
		v := float64(f.v)
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			return fmt.Errorf("sample: %s is %v; want a finite number", f.name, f.v)
		case v < f.min || v > f.max:
			if math.IsInf(f.max, 1) {
				return fmt.Errorf("sample: %s is %v; want >= %v", f.name, f.v, f.min)
			}
			return fmt.Errorf("sample: %s is %v; want a value in [%v, %v]", f.name, f.v, f.min, f.max)
		}
	}
	if o.TopK < 0 {
		return fmt.Errorf("sample: TopK is %d; want >= 0 (0 disables it)", o.TopK)
	}
	return nil
}

func (o Options) greedy() bool       { return o.Temperature == 0 }
func (o Options) usePenalty() bool   { return o.RepetitionPenalty != 0 && o.RepetitionPenalty != 1 }
func (o Options) useTopP() bool      { return o.TopP != 0 && o.TopP != 1 }
func (o Options) useTopK(n int) bool { return o.TopK > 0 && o.TopK < n }
