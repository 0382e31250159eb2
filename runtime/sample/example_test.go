package sample_test

import (
	"fmt"

	"github.com/gemmac/gemmac/runtime/sample"
)

func ExampleSampler_Sample() {
	logits := []float32{1.0, 3.5, 0.2, 3.4}
	history := []int{1} // token 1 was already generated

	greedy, _ := sample.New(sample.Options{})
	fmt.Println("greedy:", greedy.Sample(logits, nil))

	// The repetition penalty (3.5/1.3 = 2.7) hands the win to token 3.
	penalised, _ := sample.New(sample.Options{RepetitionPenalty: 1.3})
	fmt.Println("penalised:", penalised.Sample(logits, history))

	// Sampling is reproducible: the same seed gives the same tokens.
	o := sample.Options{Temperature: 0.8, TopK: 3, TopP: 0.95, MinP: 0.05, Seed: 42}
	a, _ := sample.New(o)
	b, _ := sample.New(o)
	same := true
	for range 100 {
		same = same && a.Sample(logits, nil) == b.Sample(logits, nil)
	}
	fmt.Println("reproducible:", same)

	_, err := sample.New(sample.Options{TopP: 1.5})
	fmt.Println(err)
	// Output:
	// greedy: 1
	// penalised: 3
	// reproducible: true
	// sample: TopP is 1.5; want a value in [0, 1]
}
