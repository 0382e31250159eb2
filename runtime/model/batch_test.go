package model_test

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gemmac/gemmac/runtime/model"
)

const tiny = "../../../shared/testdata/models/tiny"

func loadTiny(t *testing.T, batch int) *model.Model {
	t.Helper()
	m, err := model.Load(tiny, model.Options{Context: 64, Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func prompt(i, n int) []int {
	p := make([]int, n)
	for j := range p {
		p[j] = 3 + (i*97+j*31)%500
	}
	return p
}

func sessions(t *testing.T, m *model.Model, lengths []int) []*model.Session {
	t.Helper()
	var ss []*model.Session
	for i, n := range lengths {
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Prefill(prompt(i, n)); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	return ss
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// StepBatch over six sessions (more than the batch of 4: two groups), at
// positions before and past tiny's sliding window, equals Step on each.
func TestStepBatchMatchesStep(t *testing.T) {
	m := loadTiny(t, 4)
	if m.MaxBatch() != 4 {
		t.Fatalf("MaxBatch %d, want 4", m.MaxBatch())
	}
	lengths := []int{1, 7, 9, 20, 3, 12}
	batched, alone := sessions(t, m, lengths), sessions(t, m, lengths)
	for step := 0; step < 3; step++ {
		ids := make([]int, len(lengths))
		for i := range ids {
			ids[i] = 5 + 11*i + step
		}
		got, err := m.StepBatch(batched, ids)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range alone {
			want, err := s.Step(ids[i])
			if err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(got[i], want); d > 1e-5 {
				t.Errorf("step %d, session %d: batched differs by %.3g", step, i, d)
			}
			if batched[i].Position() != s.Position() {
				t.Errorf("session %d at %d, alone at %d", i, batched[i].Position(), s.Position())
			}
		}
	}
}

// A model without a batched step has no batcher, and StepBatch runs the
// sessions one by one.
func TestNoBatchEngine(t *testing.T) {
	m := loadTiny(t, 0)
	if m.MaxBatch() != 1 {
		t.Errorf("MaxBatch %d, want 1", m.MaxBatch())
	}
	if _, err := m.NewBatcher(); err == nil {
		t.Error("a batcher for an engine that cannot batch")
	}
	ss := sessions(t, m, []int{2, 5})
	if _, err := m.StepBatch(ss, []int{4, 5}); err != nil {
		t.Fatal(err)
	}
	if ss[0].Position() != 3 || ss[1].Position() != 6 {
		t.Errorf("positions %d, %d after one step", ss[0].Position(), ss[1].Position())
	}
	if _, err := model.Load(tiny, model.Options{Context: 64, Batch: -1}); err == nil {
		t.Error("a negative batch was accepted")
	}
}

// Generations sharing a batcher — more of them than the batch holds, of
// different lengths — produce the tokens they produce alone, and their
// steps are batched.
func TestBatcherGenerations(t *testing.T) {
	m := loadTiny(t, 4)
	b, err := m.NewBatcher()
	if err != nil {
		t.Fatal(err)
	}
	var rows atomic.Int64
	var steps atomic.Int64
	b.OnStep = func(n int, _ time.Duration) {
		rows.Add(int64(n))
		steps.Add(1)
	}
	const n = 6
	generate := func(s *model.Session, i int, batcher *model.Batcher) ([]int, error) {
		var ids []int
		_, err := s.GenerateTokens(context.Background(), prompt(i, 2+3*i), model.GenerateOptions{MaxTokens: 6 + 2*i, Batcher: batcher},
			func(id int) bool { ids = append(ids, id); return true })
		return ids, err
	}
	want := make([][]int, n)
	for i := range want {
		s, _ := m.NewSession()
		if want[i], err = generate(s, i, nil); err != nil {
			t.Fatal(err)
		}
	}
	got := make([][]int, n)
	var wg sync.WaitGroup
	for i := range got {
		s, _ := m.NewSession()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if got[i], err = generate(s, i, b); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range got {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("generation %d: %v with the batcher, %v alone", i, got[i], want[i])
		}
	}
	if steps.Load() == 0 || rows.Load() <= steps.Load() {
		t.Errorf("%d rows in %d steps: nothing was batched", rows.Load(), steps.Load())
	}
	t.Logf("%d rows in %d steps", rows.Load(), steps.Load())

	other := loadTiny(t, 4)
	s, _ := other.NewSession()
	if _, err := s.GenerateTokens(context.Background(), prompt(0, 3), model.GenerateOptions{MaxTokens: 2, Batcher: b}, func(int) bool { return true }); err == nil {
		t.Error("a generation used another model's batcher")
	}
}
