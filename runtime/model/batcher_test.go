package model

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// A generation whose context ends while it waits for a batched step
// leaves at once; the batcher goes on serving the others.
func TestBatcherCancel(t *testing.T) {
	m, err := Load("../../../shared/testdata/models/tiny", Options{Context: 64, Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, err := m.NewBatcher()
	if err != nil {
		t.Fatal(err)
	}
	// A long step: the first generation blocks the batcher's loop inside
	// OnStep until released, so the second waits in the queue.
	release := make(chan struct{})
	var once sync.Once
	blocked := make(chan struct{})
	b.OnStep = func(int, time.Duration) {
		once.Do(func() {
			close(blocked)
			<-release
		})
	}
	s1, _ := m.NewSession()
	s2, _ := m.NewSession()
	done1 := make(chan error, 1)
	go func() {
		_, err := s1.GenerateTokens(context.Background(), []int{2, 40, 41, 42}, GenerateOptions{MaxTokens: 5, Batcher: b}, func(int) bool { return true })
		done1 <- err
	}()
	<-blocked
	ctx, cancel := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() {
		_, err := s2.GenerateTokens(ctx, []int{2, 50, 51, 52}, GenerateOptions{MaxTokens: 5, Batcher: b}, func(int) bool { return true })
		done2 <- err
	}()
	// Once s2's first step waits in the queue, its client goes away.
	for {
		b.mu.Lock()
		n := len(b.pending)
		b.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done2:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled generation: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled generation waited for the batcher")
	}
	close(release)
	if err := <-done1; err != nil {
		t.Errorf("the other generation: %v", err)
	}
	// The withdrawn step never ran: the session holds its prompt only, and
	// is usable.
	if p := s2.Position(); p != 4 {
		t.Errorf("cancelled session at position %d, want 4 (its prompt)", p)
	}
	if _, err := s2.Step(7); err != nil {
		t.Errorf("the cancelled session: %v", err)
	}
}
