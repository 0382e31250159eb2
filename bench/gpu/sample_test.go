package main

import (
	"math"
	"testing"

	"github.com/gemmac/gemmac/runtime/sample"
)

// TestCheckAcceptsCPUSampler runs the device check's statistics on the CPU
// sampler's own draws: every draw is in the kept set and the bucket
// frequencies stay within tvBound, for the check's logit and option sets,
// so a GPU failure is the GPU's.
func TestCheckAcceptsCPUSampler(t *testing.T) {
	const draws = 4000
	for _, ls := range craftedLogits(3000, nil) {
		for _, so := range samplingOptions {
			ref := sampleRef(ls.x, so.o)
			o := so.o
			o.Seed = 5
			s, err := sample.New(o)
			if err != nil {
				t.Fatal(err)
			}
			counts := map[int32]int{}
			outside := 0
			for i := 0; i < draws; i++ {
				id := int32(s.Sample(ls.x, nil))
				counts[id]++
				if _, ok := ref[id]; !ok {
					outside++
				}
			}
			bucket, mass := massBuckets(ref, 20)
			freq := make([]float64, len(mass))
			for id, c := range counts {
				if k, ok := bucket[id]; ok {
					freq[k] += float64(c) / draws
				}
			}
			var tv, sum float64
			for k := range mass {
				tv += math.Abs(freq[k]-mass[k]) / 2
				sum += mass[k]
			}
			if outside > 0 || tv > tvBound(mass, draws) || math.Abs(sum-1) > 1e-9 {
				t.Errorf("%s / %s: %d outside the kept set of %d, TV %.4f (bound %.4f), mass %v",
					ls.name, so.name, outside, len(ref), tv, tvBound(mass, draws), sum)
			}
		}
	}
}
