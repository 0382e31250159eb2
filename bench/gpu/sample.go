package main

// The device check of the on-GPU sampler (codegen/ptx.Sample): draws on
// given logits against runtime/sample's rules.

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/gemmac/gemmac/runtime/cuda"
	"github.com/gemmac/gemmac/runtime/sample"
)

// sampleRef is what runtime/sample draws from x under o: the tokens and
// their probabilities.
func sampleRef(x []float32, o sample.Options) map[int32]float64 {
	s, err := sample.New(o)
	if err != nil {
		panic(err) // the check's own option sets are valid
	}
	return s.Distribution(x)
}

// massBuckets groups the kept tokens, most likely first, into at most nb
// buckets of about equal mass (a token heavier than 1/nb alone), so that
// frequencies can be compared however large the kept set is.
func massBuckets(ref map[int32]float64, nb int) (bucket map[int32]int, mass []float64) {
	ids := make([]int32, 0, len(ref))
	for id := range ref {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b int32) int {
		if c := cmp.Compare(ref[b], ref[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	bucket = map[int32]int{}
	var cum float64
	for _, id := range ids {
		if len(mass) == 0 || cum >= float64(len(mass))/float64(nb) && len(mass) < nb {
			mass = append(mass, 0)
		}
		bucket[id] = len(mass) - 1
		mass[len(mass)-1] += ref[id]
		cum += ref[id]
	}
	return bucket, mass
}

// tvBound is the total-variation distance between bucket frequencies of d
// draws and their masses that the check accepts: half the sum over buckets
// of 4 standard deviations of a bucket's frequency (so a correct sampler
// fails with negligible probability, while a wrong temperature, kept set or
// tie rule moves tenths), plus 0.003 for the device's f32 weights and
// fixed-point tail.
func tvBound(mass []float64, d int) float64 {
	var s float64
	for _, p := range mass {
		s += 4 * math.Sqrt(p*(1-p)/float64(d))
	}
	return s/2 + 0.003
}

type logitSet struct {
	name string
	x    []float32
}

// craftedLogits builds the logit sets the check draws from, over the
// model's vocabulary: the model's own logits (when given), a peaked and a
// nearly flat random set, and one with many exact ties, NaN and -Inf.
func craftedLogits(vocab int, model []float32) []logitSet {
	rng := rand.New(rand.NewPCG(7, 11))
	gen := func(f func() float32) []float32 {
		x := make([]float32, vocab)
		for i := range x {
			x[i] = f()
		}
		return x
	}
	var sets []logitSet
	if len(model) == vocab {
		sets = append(sets, logitSet{"model", model})
	}
	sets = append(sets,
		logitSet{"peaked", gen(func() float32 { return float32(rng.NormFloat64() * 4) })},
		logitSet{"flat", gen(func() float32 { return float32(rng.NormFloat64() * 0.02) })})
	ties := gen(func() float32 { return float32(math.Round(rng.NormFloat64()*4) / 2) })
	for i := range ties {
		switch rng.IntN(100) {
		case 0:
			ties[i] = float32(math.NaN())
		case 1:
			ties[i] = float32(math.Inf(-1))
		}
	}
	return append(sets, logitSet{"ties+nan", ties})
}

// samplingOptions are the option sets the check runs.
var samplingOptions = []struct {
	name string
	o    sample.Options
}{
	{"greedy", sample.Options{}},
	{"temp 0.8", sample.Options{Temperature: 0.8}},
	{"top-k 20", sample.Options{Temperature: 1, TopK: 20}},
	{"top-p 0.9", sample.Options{Temperature: 1, TopP: 0.9}},
	{"top-p 0.3", sample.Options{Temperature: 1, TopP: 0.3}},
	{"k 100 + p 0.8, T 0.7", sample.Options{Temperature: 0.7, TopK: 100, TopP: 0.8}},
	{"p 0.95 + min-p 0.1, T 1.5", sample.Options{Temperature: 1.5, TopP: 0.95, MinP: 0.1}},
}

// checkSampling checks the on-GPU sampler on st (any state of eng; its
// arena and call buffer are overwritten, its KV cache is not) for each
// logit set (craftedLogits, with modelLogits, one decode row of the real
// model, first when its length is the vocabulary) and option set
// (samplingOptions): draws draws tokens (4 seeds × draws/4 positions) with
// SampleLogits and requires every drawn token to be one runtime/sample
// keeps (sampleRef), bucket frequencies within tvBound of the kept
// probabilities, greedy to be the argmax, and the same seed and position
// to give the same tokens. It also times the kernel per call (TimeSampler)
// and, when genPos ≥ 0, generates 16 tokens with st.Sample from genPos
// (decode + sampler as one CUDA graph; writes the KV cache from genPos on)
// and checks they are in the vocabulary. The report is a markdown table,
// one row per (logits, options), then the timings.
func checkSampling(eng *cuda.Engine, st *cuda.State, modelLogits []float32, vocab, draws, genPos int) (report string, ok bool) {
	var b strings.Builder
	ok = true
	fail := func(format string, args ...any) {
		ok = false
		fmt.Fprintf(&b, "FAIL: "+format+"\n", args...)
	}
	fmt.Fprintf(&b, "on-GPU sampler on %s, vocabulary %d, %d draws per row\n\n", eng.Name(), vocab, draws)
	fmt.Fprintln(&b, "| logits | options | kept (CPU) | distinct drawn | outside kept | TV (buckets) | bound | ms/call | result |")
	fmt.Fprintln(&b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	seeds := []uint64{1, 2, 0xdeadbeef, 1 << 63}
	for _, ls := range craftedLogits(vocab, modelLogits) {
		for _, so := range samplingOptions {
			ref := sampleRef(ls.x, so.o)
			n := draws
			if so.o.Temperature == 0 {
				n = 16
			}
			per := max(n/len(seeds), 1)
			counts := map[int32]int{}
			outside, total := 0, 0
			var firstErr error
			var firstRun []int32
			for si, seed := range seeds {
				o := so.o
				o.Seed = seed
				ids, err := st.SampleLogits(ls.x, o, 1000*si, per)
				if err != nil {
					firstErr = err
					break
				}
				if si == 0 {
					firstRun = ids
				}
				for _, id := range ids {
					total++
					counts[id]++
					if _, in := ref[id]; !in {
						outside++
					}
				}
			}
			ms := math.NaN()
			if firstErr == nil {
				// The same seed and position draw the same tokens.
				o := so.o
				o.Seed = seeds[0]
				again, err := st.SampleLogits(ls.x, o, 0, per)
				if err != nil {
					firstErr = err
				} else if !slices.Equal(again, firstRun) {
					fail("%s / %s: the same seed and positions drew %v then %v", ls.name, so.name, firstRun[:min(8, len(firstRun))], again[:min(8, len(again))])
				}
				if t, err := st.TimeSampler(50); err == nil {
					ms = t
				} else {
					firstErr = err
				}
			}
			if firstErr != nil {
				fail("%s / %s: %v", ls.name, so.name, firstErr)
				fmt.Fprintf(&b, "| %s | %s | %d | – | – | – | – | – | ERROR |\n", ls.name, so.name, len(ref))
				continue
			}
			bucket, mass := massBuckets(ref, 20)
			freq := make([]float64, len(mass))
			for id, c := range counts {
				if k, in := bucket[id]; in {
					freq[k] += float64(c) / float64(total)
				}
			}
			var tv float64
			for k := range mass {
				tv += math.Abs(freq[k]-mass[k]) / 2
			}
			tv += float64(outside) / float64(total) / 2
			bound := tvBound(mass, total)
			verdict := "PASS"
			if outside > 0 || tv > bound {
				verdict = "FAIL"
				ok = false
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %.4f | %.4f | %.3f | %s |\n",
				ls.name, so.name, len(ref), len(counts), outside, tv, bound, ms, verdict)
		}
	}
	if genPos >= 0 {
		o := sample.Options{Temperature: 1, TopK: 50, TopP: 0.9, Seed: 42}
		start := time.Now()
		ids, err := st.Sample(0, genPos, 16, o)
		el := time.Since(start)
		switch {
		case err != nil:
			fail("Sample (decode + sampler): %v", err)
		case eng.GraphErr != nil:
			fail("Sample: CUDA graph capture failed: %v", eng.GraphErr)
		default:
			for _, id := range ids {
				if id < 0 || int(id) >= vocab {
					fail("Sample drew token %d outside the vocabulary", id)
				}
			}
			fmt.Fprintf(&b, "\nSample (decode + sampler, graphs=%v) from position %d: %v in %v (%.1f tok/s, first call includes the capture)\n",
				eng.Graphs(), genPos, ids, el.Round(time.Microsecond), 16/el.Seconds())
		}
	}
	if _, err := st.Sample(0, 0, 1, sample.Options{Temperature: 1, RepetitionPenalty: 1.3}); err == nil {
		fail("Sample accepted a repetition penalty")
	}
	return b.String(), ok
}
