package sample

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkSample measures one call on Gemma's 256000-token vocabulary.
func BenchmarkSample(b *testing.B) {
	x := randomLogits(rand.New(rand.NewPCG(1, 1)), 256000)
	history := make([]int, 512)
	for i := range history {
		history[i] = i * 37
	}
	for _, bc := range []struct {
		name string
		o    Options
	}{
		{"greedy", Options{}},
		{"temperature", Options{Temperature: 1}},
		{"topk64", Options{Temperature: 1, TopK: 64}},
		{"gemma_topk64_topp0.95_penalty", Options{Temperature: 1, TopK: 64, TopP: 0.95, RepetitionPenalty: 1.1}},
		{"topp0.9", Options{Temperature: 1, TopP: 0.9}},
		{"minp0.05", Options{Temperature: 1, MinP: 0.05}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(bc.o)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				s.Sample(x, history)
			}
		})
	}
}
