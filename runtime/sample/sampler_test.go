package sample

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustNew(t testing.TB, o Options) *Sampler {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logProbs returns logits whose softmax is p.
func logProbs(p ...float64) []float32 {
	out := make([]float32, len(p))
	for i, v := range p {
		out[i] = float32(math.Log(v))
	}
	return out
}

func randomLogits(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 3)
	}
	return x
}

// frequencies draws n tokens and returns the fraction of each id.
func frequencies(s *Sampler, logits []float32, n int) []float64 {
	f := make([]float64, len(logits))
	for range n {
		f[s.Sample(logits, nil)]++
	}
	for i := range f {
		f[i] /= float64(n)
	}
	return f
}

func TestGreedyPicksArgmax(t *testing.T) {
	s := mustNew(t, Options{})
	tests := []struct {
		logits []float32
		want   int
	}{
		{[]float32{0.1, 3, -2, 2.9}, 1},
		{[]float32{5}, 0},
		{[]float32{1, 4, 4, 2}, 1}, // lowest index on ties
		{[]float32{float32(math.NaN()), -1, 0}, 2},
		{[]float32{-3, float32(math.Inf(1)), 1e30}, 1},
	}
	for _, tt := range tests {
		if got := s.Sample(tt.logits, nil); got != tt.want {
			t.Errorf("greedy %v = %d; want %d", tt.logits, got, tt.want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		x := randomLogits(r, 1000)
		want := 0
		for i, v := range x {
			if v > x[want] {
				want = i
			}
		}
		if got := s.Sample(x, nil); got != want {
			t.Fatalf("greedy = %d; want %d", got, want)
		}
	}
}

func TestTopK1IsGreedy(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	greedy := mustNew(t, Options{})
	for _, temp := range []float32{0.1, 0.7, 1, 2, 100} {
		s := mustNew(t, Options{Temperature: temp, TopK: 1, Seed: 9})
		for range 50 {
			x := randomLogits(r, 5000)
			if got, want := s.Sample(x, nil), greedy.Sample(x, nil); got != want {
				t.Fatalf("T=%v top-k=1 drew %d; greedy is %d", temp, got, want)
			}
		}
	}
}

func TestTopKKeepsOnlyTopTokens(t *testing.T) {
	x := []float32{1, 5, 2, 4, 3, 0}
	s := mustNew(t, Options{Temperature: 1, TopK: 3, Seed: 1})
	f := frequencies(s, x, 5000)
	for id, want := range map[int]bool{1: true, 3: true, 4: true, 0: false, 2: false, 5: false} {
		if (f[id] > 0) != want {
			t.Errorf("token %d drawn with frequency %v; want drawn=%v", id, f[id], want)
		}
	}
}

func TestTopKKeepsTies(t *testing.T) {
	// Hugging Face removes only tokens strictly below the k-th logit, so
	// with k=2 all three tokens tied for second place stay.
	x := []float32{3, 1, 1, 1, 0}
	s := mustNew(t, Options{Temperature: 1, TopK: 2, Seed: 1})
	f := frequencies(s, x, 5000)
	for id := range 4 {
		if f[id] == 0 {
			t.Errorf("tied token %d never drawn", id)
		}
	}
	if f[4] != 0 {
		t.Errorf("token below the k-th drawn with frequency %v", f[4])
	}
}

func TestRepetitionPenaltyChangesWinner(t *testing.T) {
	tests := []struct {
		name    string
		logits  []float32
		history []int
		penalty float32
		wantOff int // winner without the penalty
		want    int
	}{
		// Positive logit is divided: 2.0/1.2 = 1.67 < 1.9.
		{"positive", []float32{2.0, 1.9, -1}, []int{0}, 1.2, 0, 1},
		// Negative logit is multiplied: -1*1.5 = -1.5 < -1.1.
		{"negative", []float32{-1, -1.1}, []int{0}, 1.5, 0, 1},
		// Each distinct id is penalised once: 2.0/1.2 = 1.67 > 1.5, but
		// penalising twice would give 1.39 < 1.5.
		{"repeated id", []float32{2.0, 1.5}, []int{0, 0, 0}, 1.2, 0, 0},
		// Out-of-vocabulary ids are ignored.
		{"out of range", []float32{2.0, 1.9}, []int{-1, 7}, 1.2, 0, 0},
		// A penalty below 1 encourages repetition instead.
		{"reward", []float32{1.9, 2.0}, []int{0}, 0.5, 1, 0},
	}
	for _, tt := range tests {
		off := mustNew(t, Options{})
		on := mustNew(t, Options{RepetitionPenalty: tt.penalty})
		if got := off.Sample(tt.logits, tt.history); got != tt.wantOff {
			t.Fatalf("%s: without penalty got %d; want %d", tt.name, got, tt.wantOff)
		}
		if got := on.Sample(tt.logits, tt.history); got != tt.want {
			t.Errorf("%s: with penalty got %d; want %d", tt.name, got, tt.want)
		}
	}
}

func TestSampleDoesNotModifyLogits(t *testing.T) {
	x := []float32{2, 1.9, -1, 0.5}
	orig := slices.Clone(x)
	s := mustNew(t, Options{Temperature: 0.8, TopK: 3, TopP: 0.9, MinP: 0.01, RepetitionPenalty: 1.3, Seed: 1})
	for range 10 {
		s.Sample(x, []int{0, 2, 3})
	}
	if !slices.Equal(x, orig) {
		t.Fatalf("logits modified: %v; want %v", x, orig)
	}
}

func TestFrequenciesMatchDistribution(t *testing.T) {
	want := []float64{0.5, 0.3, 0.2}
	s := mustNew(t, Options{Temperature: 1, Seed: 42})
	got := frequencies(s, logProbs(want...), 20000)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 0.02 {
			t.Errorf("token %d: frequency %.4f; want %.2f ± 0.02", i, got[i], want[i])
		}
	}
}

func TestTemperatureFlattens(t *testing.T) {
	// At T=2 the probabilities become proportional to sqrt(p).
	p := []float64{0.64, 0.16, 0.2}
	z := 0.8 + 0.4 + math.Sqrt(0.2)
	want := []float64{0.8 / z, 0.4 / z, math.Sqrt(0.2) / z}
	s := mustNew(t, Options{Temperature: 2, Seed: 5})
	got := frequencies(s, logProbs(p...), 20000)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 0.02 {
			t.Errorf("token %d: frequency %.4f; want %.3f ± 0.02", i, got[i], want[i])
		}
	}
}

func TestTopPCutsTail(t *testing.T) {
	// p = [0.6, 0.3, 0.1], top-p 0.65: token 1 stays because only 0.6 of
	// the mass ranks above it (Hugging Face's rule), token 2 goes since
	// 0.9 does. A rule keeping only tokens whose own cumulative mass is
	// within 0.65 would drop token 1.
	x := logProbs(0.6, 0.3, 0.1)
	s := mustNew(t, Options{Temperature: 1, TopP: 0.65, Seed: 3})
	f := frequencies(s, x, 20000)
	if f[2] != 0 {
		t.Errorf("token outside the nucleus drawn with frequency %v", f[2])
	}
	if want := 0.6 / 0.9; math.Abs(f[0]-want) > 0.02 {
		t.Errorf("token 0 frequency %.4f; want %.3f (renormalised nucleus)", f[0], want)
	}
}

func TestTopPAfterTopK(t *testing.T) {
	// top-k 3 leaves [0.4, 0.3, 0.2], renormalised [0.444, 0.333, 0.222];
	// top-p 0.75 on that keeps tokens 0 and 1 (0.444 < 0.75 <= 0.778).
	// On the full distribution it would keep token 2 as well (0.7 < 0.75),
	// so this fails if top-p ran before top-k or ignored its filtering.
	x := logProbs(0.4, 0.3, 0.2, 0.1)
	s := mustNew(t, Options{Temperature: 1, TopK: 3, TopP: 0.75, Seed: 3})
	f := frequencies(s, x, 10000)
	if f[2] != 0 || f[3] != 0 || f[0] == 0 || f[1] == 0 {
		t.Errorf("frequencies %v; want only tokens 0 and 1", f)
	}
}

func TestMinPCutsTail(t *testing.T) {
	// min-p 0.2 of max 0.5 drops tokens below 0.1: token 3 (0.05).
	x := logProbs(0.5, 0.3, 0.15, 0.05)
	s := mustNew(t, Options{Temperature: 1, MinP: 0.2, Seed: 11})
	f := frequencies(s, x, 20000)
	if f[3] != 0 {
		t.Errorf("token below min-p drawn with frequency %v", f[3])
	}
	for i, want := range []float64{0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95} {
		if math.Abs(f[i]-want) > 0.02 {
			t.Errorf("token %d frequency %.4f; want %.3f", i, f[i], want)
		}
	}
}

func TestSameSeedSameSequence(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	logits := make([][]float32, 200)
	for i := range logits {
		logits[i] = randomLogits(r, 3000)
	}
	run := func(seed uint64) []int {
		s := mustNew(t, Options{Temperature: 1, TopK: 50, TopP: 0.9, MinP: 0.01, RepetitionPenalty: 1.1, Seed: seed})
		var out []int
		for _, x := range logits {
			out = append(out, s.Sample(x, out))
		}
		return out
	}
	a, b, c := run(1), run(1), run(2)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different sequences")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds gave the same 200-token sequence")
	}
}

func TestDegenerateLogits(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	s := mustNew(t, Options{Temperature: 1, TopP: 0.9, MinP: 0.1, Seed: 1})
	tests := []struct {
		logits []float32
		want   []int // acceptable results
	}{
		{[]float32{-inf, -inf, -inf}, []int{0}},
		{[]float32{nan, -inf, 2, nan}, []int{2}},
		{[]float32{1, inf, 3, inf}, []int{1, 3}},
	}
	for _, tt := range tests {
		for range 50 {
			if got := s.Sample(tt.logits, nil); !slices.Contains(tt.want, got) {
				t.Fatalf("Sample(%v) = %d; want one of %v", tt.logits, got, tt.want)
			}
		}
	}
}

func TestEmptyLogitsPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic on empty logits")
		}
	}()
	mustNew(t, Options{}).Sample(nil, nil)
}

// TestMatchesReference compares the optimised filters with a direct
// transcription of Hugging Face's warpers (full sort, probabilities), on
// a vocabulary with many ties, by the set of tokens each can draw.
func TestMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for trial := range 300 {
		n := 1 + r.IntN(60)
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.IntN(8)) / 2 // coarse values: many ties
		}
		o := Options{Temperature: 0.5 + r.Float32()*1.5, TopK: r.IntN(n + 2), TopP: r.Float32(), MinP: r.Float32() * 0.5, Seed: 1}
		s := mustNew(t, o)
		cand, _ := s.filter(x)
		got := slices.Sorted(slices.Values(cand))
		want := referenceSupport(x, o)
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d: %+v on %v\n got support %v\nwant %v", trial, o, x, got, want)
		}
	}
}

// TestTopPPruningOnLargeVocab checks that pruning before the top-p sort
// never changes the nucleus, on vocabularies large enough for pruning to
// matter and at temperatures from peaked to flat.
func TestTopPPruningOnLargeVocab(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 24 {
		x := randomLogits(r, 20000)
		o := Options{Temperature: []float32{0.3, 1, 4}[trial%3], TopP: []float32{0.5, 0.9, 0.99, 0.999}[trial%4], Seed: 1}
		if trial%5 == 0 {
			o.MinP = 0.001
		}
		cand, _ := mustNew(t, o).filter(x)
		got := slices.Sorted(slices.Values(cand))
		if want := referenceSupport(x, o); !slices.Equal(got, want) {
			t.Fatalf("trial %d %+v: nucleus of %d tokens; want %d", trial, o, len(got), len(want))
		}
	}
}

// referenceSupport returns the ids HF's warpers leave finite.
func referenceSupport(x []float32, o Options) []int32 {
	n := len(x)
	scores := make([]float64, n)
	for i, v := range x {
		scores[i] = float64(v) / float64(o.Temperature)
	}
	if o.TopK > 0 {
		k := min(o.TopK, n)
		sorted := slices.Clone(scores)
		slices.Sort(sorted)
		kth := sorted[n-k]
		for i := range scores {
			if scores[i] < kth {
				scores[i] = math.Inf(-1)
			}
		}
	}
	softmax := func() []float64 {
		m := slices.Max(scores)
		p := make([]float64, n)
		var z float64
		for i, v := range scores {
			p[i] = math.Exp(v - m)
			z += p[i]
		}
		for i := range p {
			p[i] /= z
		}
		return p
	}
	if o.TopP > 0 && o.TopP < 1 {
		p := softmax()
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		// Ascending, ties broken by higher id first (the mirror of the
		// sampler's descending order).
		slices.SortFunc(idx, func(a, b int) int {
			if p[a] != p[b] {
				if p[a] < p[b] {
					return -1
				}
				return 1
			}
			return b - a
		})
		var cum float64
		remove := make([]bool, n)
		for j, i := range idx {
			cum += p[i]
			remove[j] = cum <= 1-float64(o.TopP)
		}
		remove[n-1] = false
		for j, i := range idx {
			if remove[j] {
				scores[i] = math.Inf(-1)
			}
		}
	}
	if o.MinP > 0 {
		p := softmax()
		top := slices.Max(p)
		for i := range p {
			if p[i] < float64(o.MinP)*top {
				scores[i] = math.Inf(-1)
			}
		}
	}
	var out []int32
	for i, v := range scores {
		if !math.IsInf(v, -1) {
			out = append(out, int32(i))
		}
	}
	return out
}

// TestDistribution checks the probabilities by hand on logits whose
// softmax is 4/7, 2/7, 1/7 (and an impossible token), and against Sample's
// frequencies on random logits.
func TestDistribution(t *testing.T) {
	x := append(logProbs(4, 2, 1), float32(math.Inf(-1)))
	for _, c := range []struct {
		o    Options
		want map[int32]float64
	}{
		{Options{}, map[int32]float64{0: 1}},
		{Options{Temperature: 1}, map[int32]float64{0: 4.0 / 7, 1: 2.0 / 7, 2: 1.0 / 7}},
		{Options{Temperature: 1, TopK: 2}, map[int32]float64{0: 4.0 / 6, 1: 2.0 / 6}},
		{Options{Temperature: 1, TopP: 0.5}, map[int32]float64{0: 1}},
		{Options{Temperature: 1, TopP: 0.6}, map[int32]float64{0: 4.0 / 6, 1: 2.0 / 6}},
		{Options{Temperature: 1, MinP: 0.4}, map[int32]float64{0: 4.0 / 6, 1: 2.0 / 6}},
		{Options{Temperature: 0.5}, map[int32]float64{0: 16.0 / 21, 1: 4.0 / 21, 2: 1.0 / 21}},
	} {
		got := mustNew(t, c.o).Distribution(x)
		if len(got) != len(c.want) {
			t.Errorf("%+v: %v; want %v", c.o, got, c.want)
			continue
		}
		for id, p := range c.want {
			if math.Abs(got[id]-p) > 1e-6 {
				t.Errorf("%+v: token %d has %.6f; want %.6f", c.o, id, got[id], p)
			}
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	logits := randomLogits(r, 50)
	o := Options{Temperature: 0.8, TopK: 20, TopP: 0.9, Seed: 3}
	dist := mustNew(t, o).Distribution(logits)
	got := frequencies(mustNew(t, o), logits, 20000)
	for id, f := range got {
		if p := dist[int32(id)]; math.Abs(f-p) > 0.02 {
			t.Errorf("token %d: frequency %.4f; Distribution says %.4f", id, f, p)
		}
	}
}
