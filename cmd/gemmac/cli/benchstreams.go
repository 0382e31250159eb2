package cli

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gemmac/gemmac/runtime/model"
)

// StreamsResult is bench --streams N: the aggregate decode speed of N
// concurrent streams in batched steps against one stream alone, measured
// step by step in turn on the same model, so a busy machine slows both
// alike.
type StreamsResult struct {
	Streams int `json:"streams"`
	// Steps is the decode steps measured for each.
	Steps int `json:"steps"`
	// OneTokS is one stream's decode tokens/s (the ordinary decode step).
	OneTokS float64 `json:"one_stream_tok_s"`
	// AggregateTokS is the tokens/s of all N streams together: N tokens
	// per batched step.
	AggregateTokS float64 `json:"aggregate_tok_s"`
	// Speedup is AggregateTokS / OneTokS.
	Speedup float64 `json:"speedup"`
}

// BenchStreams prefills streams+1 sessions with promptTokens random tokens
// each, then runs genTokens decode steps of one session alone and of the
// other streams sessions together (Model.StepBatch), alternating one step
// of each, after one untimed step of each.
func BenchStreams(m *model.Model, promptTokens, genTokens, streams int) (*StreamsResult, error) {
	if streams < 2 {
		return nil, fmt.Errorf("--streams %d: want 2 or more", streams)
	}
	if m.MaxBatch() < streams {
		return nil, fmt.Errorf("--streams %d: the engine decodes %d sequences per step (a binary: rebuild with --batch %d)", streams, m.MaxBatch(), streams)
	}
	if need := promptTokens + genTokens + 1; need > m.Engine.Context() {
		return nil, &model.ContextError{Tokens: need, Context: m.Engine.Context()}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	token := func() int { return 3 + rng.IntN(m.Config.VocabSize-3) }
	sessions := make([]*model.Session, streams+1)
	for i := range sessions {
		s, err := m.NewSession()
		if err != nil {
			return nil, err
		}
		prompt := make([]int, promptTokens)
		for j := range prompt {
			prompt[j] = token()
		}
		if _, err := s.Prefill(prompt); err != nil {
			return nil, err
		}
		sessions[i] = s
	}
	one, group := sessions[streams], sessions[:streams]
	ids := make([]int, streams)
	var tOne, tGroup time.Duration
	for step := 0; step <= genTokens; step++ {
		start := time.Now()
		if _, err := one.Step(token()); err != nil {
			return nil, err
		}
		d1 := time.Since(start)
		for i := range ids {
			ids[i] = token()
		}
		start = time.Now()
		if _, err := m.StepBatch(group, ids); err != nil {
			return nil, err
		}
		if step > 0 { // the first step of each warms up
			tOne += d1
			tGroup += time.Since(start)
		}
	}
	r := &StreamsResult{
		Streams:       streams,
		Steps:         genTokens,
		OneTokS:       float64(genTokens) / tOne.Seconds(),
		AggregateTokS: float64(streams*genTokens) / tGroup.Seconds(),
	}
	r.Speedup = r.AggregateTokS / r.OneTokS
	return r, nil
}
