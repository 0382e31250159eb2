package serve

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/gemmac/gemmac/runtime/model"
)

// A slot is one place where a generation runs: a session whose KV cache
// it keeps between requests. With a batching engine, the busy slots' decode
// steps run together through the server's model.Batcher; each slot still
// runs its own prefill.
type slot struct {
	id   int
	sess *model.Session
	// cached are the tokens in the session's KV cache, for choosing the
	// slot whose conversation a new prompt extends.
	cached []int
}

// remember records what the session's cache holds after a generation of
// generated tokens after prompt.
func (sl *slot) remember(prompt, generated []int) {
	n := sl.sess.Position()
	sl.cached = append(append(sl.cached[:0], prompt...), generated...)
	if n < len(sl.cached) {
		sl.cached = sl.cached[:n]
	}
}

var errFull = errors.New("serve: every slot is busy and the wait queue is full")

// slots hands out slots: a free one at once, else a place in a FIFO queue
// of at most depth waiters (depth < 0: unbounded), else errFull.
type slots struct {
	mu      sync.Mutex
	free    []*slot
	waiters []*waiter
	depth   int
	busy    int
	// changed is called, under mu, with the busy slots and waiters.
	changed func(busy, waiting int)
}

type waiter struct{ ch chan *slot }

func newSlots(ss []*slot, depth int, changed func(busy, waiting int)) *slots {
	q := &slots{free: ss, depth: depth, changed: changed}
	q.changed(0, 0)
	return q
}

// acquire returns a slot for prompt, waiting in the queue if every slot is
// busy, until ctx is done.
func (q *slots) acquire(ctx context.Context, prompt []int) (*slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	if len(q.free) > 0 {
		sl := q.takeBest(prompt)
		q.busy++
		q.changed(q.busy, len(q.waiters))
		q.mu.Unlock()
		return sl, nil
	}
	if q.depth >= 0 && len(q.waiters) >= q.depth {
		q.mu.Unlock()
		return nil, errFull
	}
	w := &waiter{ch: make(chan *slot, 1)}
	q.waiters = append(q.waiters, w)
	q.changed(q.busy, len(q.waiters))
	q.mu.Unlock()

	select {
	case sl := <-w.ch:
		return sl, nil
	case <-ctx.Done():
		q.mu.Lock()
		if i := slices.Index(q.waiters, w); i >= 0 {
			q.waiters = slices.Delete(q.waiters, i, i+1)
			q.changed(q.busy, len(q.waiters))
			q.mu.Unlock()
			return nil, ctx.Err()
		}
		q.mu.Unlock()
		// release handed us a slot as ctx ended: pass it on.
		q.release(<-w.ch)
		return nil, ctx.Err()
	}
}

// takeBest removes and returns the free slot whose cache shares the longest
// prefix with prompt. q.mu is held.
func (q *slots) takeBest(prompt []int) *slot {
	best, bestLen := 0, -1
	for i, sl := range q.free {
		n := 0
		for n < len(sl.cached) && n < len(prompt) && sl.cached[n] == prompt[n] {
			n++
		}
		if n > bestLen {
			best, bestLen = i, n
		}
	}
	sl := q.free[best]
	q.free = slices.Delete(q.free, best, best+1)
	return sl
}

// release gives a slot back: to the first waiter, else to the free list.
func (q *slots) release(sl *slot) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiters) > 0 {
		w := q.waiters[0]
		q.waiters = slices.Delete(q.waiters, 0, 1)
		w.ch <- sl // buffered: never blocks
	} else {
		q.free = append(q.free, sl)
		q.busy--
	}
	q.changed(q.busy, len(q.waiters))
}
