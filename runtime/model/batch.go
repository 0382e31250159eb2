package model

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// MaxBatch is the most sessions one batched decode step of the model's
// engine takes: 1 when the engine has no batched step.
func (m *Model) MaxBatch() int {
	if be, ok := m.Engine.(BatchEngine); ok && be.MaxBatch() > 1 {
		return be.MaxBatch()
	}
	return 1
}

// StepBatch feeds ids[i] to sessions[i] after the tokens in its cache and
// returns each one's logits, as Step does for one session. The sessions
// must be different sessions of this model. With a batched engine the
// steps run together, MaxBatch at a time, so the weights are read once per
// group instead of once per session; a single session takes the ordinary
// decode step. Every token and position is checked before any step runs.
//
// A session's logits from a batched step are in a buffer of the session's
// own, valid until its next StepBatch (or generation step): copy them to
// keep them.
func (m *Model) StepBatch(sessions []*Session, ids []int) ([][]float32, error) {
	if len(sessions) != len(ids) {
		return nil, fmt.Errorf("%d sessions and %d tokens", len(sessions), len(ids))
	}
	for i, s := range sessions {
		if s == nil || s.m != m {
			return nil, fmt.Errorf("session %d is not a session of this model", i)
		}
		for _, o := range sessions[:i] {
			if o == s {
				return nil, fmt.Errorf("session %d appears twice", i)
			}
		}
		if err := s.check(ids[i:i+1], len(s.fed)); err != nil {
			return nil, fmt.Errorf("session %d: %w", i, err)
		}
	}
	out := make([][]float32, 0, len(sessions))
	for len(sessions) > 0 {
		n := min(len(sessions), m.MaxBatch())
		logits, err := m.step(sessions[:n], ids[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, logits...)
		sessions, ids = sessions[n:], ids[n:]
	}
	return out, nil
}

// step runs one checked group of at most MaxBatch sessions.
func (m *Model) step(sessions []*Session, ids []int) ([][]float32, error) {
	be, ok := m.Engine.(BatchEngine)
	if len(sessions) == 1 || !ok || be.MaxBatch() < 2 {
		out := make([][]float32, len(sessions))
		for i, s := range sessions {
			logits, err := s.forward(ids[i:i+1], false)
			if err != nil {
				return nil, err
			}
			out[i] = logits
		}
		return out, nil
	}
	rows := make([]BatchRow, len(sessions))
	vocab := m.Config.VocabSize
	for i, s := range sessions {
		// A buffer per session: a step of a large vocabulary allocates
		// megabytes otherwise, and the garbage collector that it wakes
		// competes with the engine's threads.
		if len(s.batchLogits) < vocab {
			s.batchLogits = make([]float32, vocab)
		}
		rows[i] = BatchRow{State: s.state, Token: int32(ids[i]), Pos: len(s.fed), Out: s.batchLogits}
	}
	out, err := be.DecodeBatch(rows)
	if err != nil {
		return nil, err
	}
	for i, s := range sessions {
		s.fed = append(s.fed, ids[i])
	}
	return out, nil
}

// A Batcher runs the decode steps of concurrent generations together: a
// generation whose GenerateOptions name the batcher hands each of its steps
// to it, and the batcher runs the steps waiting at one time as one batched
// step (StepBatch), up to MaxBatch of them. It waits for every running
// generation to be ready, but not for long: a generation that is late (its
// caller is slow to take the tokens) joins the next step. A Batcher is safe
// for concurrent use; it needs no closing.
type Batcher struct {
	m   *Model
	max int

	mu      sync.Mutex
	pending []*stepRequest
	active  int  // generations in their decode loop
	running bool // the loop goroutine is live
	kick    chan struct{}
	// lastStep is how long the latest step took; a step waits at most
	// linger(lastStep) for late generations.
	lastStep time.Duration

	// OnStep, when set (before the batcher is used), is called after each
	// step with its rows and duration.
	OnStep func(rows int, took time.Duration)
}

type stepRequest struct {
	s      *Session
	id     int
	logits []float32
	err    error
	done   chan struct{}
}

// NewBatcher makes a batcher for the model's sessions. It fails when the
// engine has no batched decode step.
func (m *Model) NewBatcher() (*Batcher, error) {
	if m.MaxBatch() < 2 {
		return nil, fmt.Errorf("engine %s has no batched decode step", m.Engine.Name())
	}
	return &Batcher{m: m, max: m.MaxBatch(), kick: make(chan struct{}, 1)}, nil
}

// MaxBatch is the most steps the batcher runs at once.
func (b *Batcher) MaxBatch() int { return b.max }

// join counts a generation in its decode loop; the batcher waits (briefly)
// for the steps of every such generation. The returned function ends it.
func (b *Batcher) join() (leave func()) {
	b.mu.Lock()
	b.active++
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		b.active--
		b.mu.Unlock()
		b.wake()
	}
}

func (b *Batcher) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// step feeds id to s in the next batched step and returns its logits. When
// ctx ends first, the step is withdrawn if it has not started; if it has,
// step waits for it (it writes s's cache) and returns its result.
func (b *Batcher) step(ctx context.Context, s *Session, id int) ([]float32, error) {
	if s.m != b.m {
		return nil, fmt.Errorf("the session is not a session of the batcher's model")
	}
	if err := s.check([]int{id}, len(s.fed)); err != nil {
		return nil, err
	}
	r := &stepRequest{s: s, id: id, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, r)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	b.wake()
	select {
	case <-r.done:
		return r.logits, r.err
	case <-ctx.Done():
	}
	b.mu.Lock()
	for i, p := range b.pending {
		if p == r {
			b.pending = append(b.pending[:i], b.pending[i+1:]...)
			b.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	b.mu.Unlock()
	<-r.done
	return r.logits, r.err
}

// linger is how long a step waits for late generations: a quarter of a
// step (a late generation that makes it saves a whole step), within
// [100µs, 20ms].
func linger(step time.Duration) time.Duration {
	return min(max(step/4, 100*time.Microsecond), 20*time.Millisecond)
}

// loop runs batched steps while any are pending, then exits.
func (b *Batcher) loop() {
	var deadline time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		ready := len(b.pending) >= min(b.active, b.max)
		if !ready {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(linger(b.lastStep))
			}
			if now.Before(deadline) {
				b.mu.Unlock()
				if timer == nil {
					timer = time.NewTimer(deadline.Sub(now))
				} else {
					timer.Reset(deadline.Sub(now))
				}
				select {
				case <-b.kick:
				case <-timer.C:
				}
				timer.Stop()
				continue
			}
		}
		deadline = time.Time{}
		n := min(len(b.pending), b.max)
		batch := append([]*stepRequest(nil), b.pending[:n]...)
		b.pending = append(b.pending[:0], b.pending[n:]...)
		b.mu.Unlock()

		sessions := make([]*Session, n)
		ids := make([]int, n)
		for i, r := range batch {
			sessions[i], ids[i] = r.s, r.id
		}
		start := time.Now()
		logits, err := b.m.StepBatch(sessions, ids)
		took := time.Since(start)
		b.mu.Lock()
		b.lastStep = took
		b.mu.Unlock()
		if b.OnStep != nil {
			b.OnStep(n, took)
		}
		for i, r := range batch {
			if err != nil {
				r.err = err
			} else {
				r.logits = logits[i]
			}
			close(r.done)
		}
	}
}
