package sample

import (
	"math"
	"math/rand/v2"
)

// pcgStream is the second PCG seed word. Options carries a single seed, so
// the stream is fixed; any constant would do, this one is from SplitMix64.
const pcgStream = 0x9e3779b97f4a7c15

// Sampler draws tokens from logits according to its Options. It keeps
// scratch buffers between calls, so it is not safe for concurrent use;
// use one Sampler per sequence.
type Sampler struct {
	opts Options
	rng  *rand.Rand

	// Scratch reused across calls so that sampling a 256000-entry
	// vocabulary allocates nothing in the steady state.
	logits  []float32 // copy of the caller's logits, repetition-penalised
	cand    []int32   // candidate token ids, shrunk by each filter
	weights []float64 // unnormalised probability of each candidate
}

// New returns a Sampler for o, or o's validation error.
func New(o Options) (*Sampler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &Sampler{opts: o, rng: rand.New(rand.NewPCG(o.Seed, pcgStream))}, nil
}

// Options returns the options the Sampler was created with.
func (s *Sampler) Options() Options { return s.opts }

// Sample returns the next token id for logits, the model's scores over the
// vocabulary, given the ids already in the context (used only by the
// repetition penalty; ids outside the vocabulary are ignored). logits is
// not modified.
//
// NaN logits are treated as -Inf. If no token has a logit above -Inf,
// Sample falls back to the greedy choice. Each non-greedy call consumes
// exactly one random number, so the random stream does not depend on the
// logits.
// Sample panics if logits is empty.
func (s *Sampler) Sample(logits []float32, history []int) int {
	if len(logits) == 0 {
		panic("sample: Sample called with empty logits")
	}
	x := s.prepare(logits, history)
	if s.opts.greedy() {
		return Argmax(x)
	}
	u := s.rng.Float64()
	cand, w := s.filter(x)
	if len(cand) == 0 {
		return Argmax(x) // every logit is -Inf or NaN: nothing to draw from
	}
	return int(draw(cand, w, u))
}

// Distribution returns the tokens that survive the filters for logits
// with no history (so no repetition penalty applies), each with the
// probability Sample draws it with; some may be 0 (beside a +Inf logit, or
// far below the top at a low temperature). At temperature 0, or when no
// logit is above -Inf, it is the greedy choice alone. Other samplers (the
// GPU's) are checked against it.
func (s *Sampler) Distribution(logits []float32) map[int32]float64 {
	x := s.prepare(logits, nil)
	greedy := map[int32]float64{int32(Argmax(x)): 1}
	if s.opts.greedy() {
		return greedy
	}
	cand, w := s.filter(x)
	if len(cand) == 0 {
		return greedy
	}
	var total float64
	for _, wi := range w {
		total += wi
	}
	out := make(map[int32]float64, len(cand))
	for i, id := range cand {
		out[id] = w[i] / total
	}
	return out
}

// filter applies temperature, top-k, top-p and min-p, in Hugging Face's
// order, and returns the surviving token ids with their unnormalised
// probabilities. The slices alias the Sampler's scratch buffers.
func (s *Sampler) filter(x []float32) ([]int32, []float64) {
	cand := s.candidates(x)
	if len(cand) == 0 {
		return nil, nil
	}
	m := maxLogit(cand, x)
	w := s.computeWeights(cand, x, m)
	if s.opts.useTopP() {
		p, t := float64(s.opts.TopP), float64(s.opts.Temperature)
		var total float64
		for _, wi := range w {
			total += wi
		}
		// Top-p needs its candidates sorted; prune the ones it would
		// drop anyway first, then sort what is left once and recompute
		// its weights in that order.
		cand = pruneForTopP(cand, w, x, m, t, p, total)
		sortByLogit(cand, x)
		w = s.computeWeights(cand, x, m)
		cand, w = topP(cand, w, p, total)
	}
	if s.opts.MinP > 0 {
		cand, w = minP(cand, w, float64(s.opts.MinP))
	}
	return cand, w
}

// prepare returns the logits to sample from: with a repetition penalty, a
// penalised copy in the scratch buffer; without one, the caller's slice
// itself, since nothing else writes to it and copying 256000 floats per
// token would be wasted.
func (s *Sampler) prepare(logits []float32, history []int) []float32 {
	if n := len(logits); cap(s.cand) < n {
		// Size the buffers for the whole vocabulary once rather than
		// letting append grow them step by step.
		s.cand = make([]int32, 0, n)
		s.weights = make([]float64, 0, n)
	}
	if !s.opts.usePenalty() {
		return logits
	}
	s.logits = append(s.logits[:0], logits...)
	x := s.logits
	p := s.opts.RepetitionPenalty
	for _, id := range history {
		if id < 0 || id >= len(x) {
			continue
		}
		// Reading the caller's unpenalised logit makes repeated ids
		// idempotent: Hugging Face penalises each distinct id once.
		if l := logits[id]; l > 0 {
			x[id] = l / p
		} else {
			x[id] = l * p
		}
	}
	return x
}

// candidates returns the ids that survive top-k, or every id whose logit
// is above -Inf when top-k is off.
func (s *Sampler) candidates(x []float32) []int32 {
	if s.opts.useTopK(len(x)) {
		s.cand = topK(s.cand[:0], x, s.opts.TopK)
		return s.cand
	}
	cand := s.cand[:0]
	for i, v := range x {
		if v > negInf { // also false for NaN
			cand = append(cand, int32(i))
		}
	}
	s.cand = cand
	return cand
}

// maxLogit returns the largest logit among the candidates.
func maxLogit(cand []int32, x []float32) float32 {
	m := negInf
	for _, id := range cand {
		m = max(m, x[id])
	}
	return m
}

// computeWeights sets w[i] = exp((x[cand[i]] - m) / T), the temperature
// softmax without its normaliser, in float64 so that long tails of tiny
// probabilities still add up correctly. m is the largest candidate logit.
func (s *Sampler) computeWeights(cand []int32, x []float32, m float32) []float64 {
	t := float64(s.opts.Temperature)
	w := s.weights[:0]
	for _, id := range cand {
		v := x[id]
		if v == m {
			// Exact 1 for the most likely token(s); also avoids
			// Inf-Inf = NaN when a logit is +Inf.
			w = append(w, 1)
			continue
		}
		w = append(w, math.Exp(float64(v-m)/t))
	}
	s.weights = w
	return w
}

// draw returns the candidate whose cumulative weight interval contains
// u * total, for u in [0, 1).
func draw(cand []int32, w []float64, u float64) int32 {
	var total float64
	for _, wi := range w {
		total += wi
	}
	target := u * total
	var cum float64
	last := 0
	for i, wi := range w {
		if wi <= 0 {
			continue
		}
		cum += wi
		if target < cum {
			return cand[i]
		}
		last = i
	}
	return cand[last] // rounding left target at the very end of the range
}

// negInf is float32 -Inf (Go has no infinite constants).
var negInf = float32(math.Inf(-1))
