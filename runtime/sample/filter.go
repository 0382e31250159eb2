package sample

import (
	"cmp"
	"slices"
)

// Argmax returns the index of the largest value (the greedy choice), the
// lowest such index on ties. NaN ranks below every number, -Inf included.
func Argmax(x []float32) int {
	best, bv := 0, x[0]
	for i, v := range x {
		if v > bv || bv != bv && v == v {
			best, bv = i, v
		}
	}
	return best
}

// key orders logits with NaN as -Inf.
func key(v float32) float32 {
	if v != v {
		return negInf
	}
	return v
}

// ranksBelow reports whether token a is less likely than token b, lower
// ids ranking first among equal logits so that results are deterministic.
func ranksBelow(x []float32, a, b int32) bool {
	va, vb := key(x[a]), key(x[b])
	return va < vb || va == vb && a > b
}

// topK appends to dst the ids of the k largest logits plus any tied with
// the k-th, in id order. Hugging Face keeps ties too: it removes only the
// tokens strictly below the k-th largest value.
//
// The k-th value is found with a size-k min-heap in one pass, O(n log k),
// instead of sorting the whole vocabulary; most tokens are rejected by a
// single comparison with the heap's root.
func topK(dst []int32, x []float32, k int) []int32 {
	h := dst[:0] // the heap is built in dst's storage, then overwritten
	for i := range x {
		id := int32(i)
		if len(h) < k {
			h = append(h, id)
			siftUp(h, x, len(h)-1)
			continue
		}
		if ranksBelow(x, h[0], id) {
			h[0] = id
			siftDown(h, x, 0)
		}
	}
	kth := key(x[h[0]])
	out := h[:0]
	for i, v := range x {
		// The -Inf check drops impossible tokens when fewer than k are
		// possible; they would get zero weight anyway.
		if v := key(v); v >= kth && v > negInf {
			out = append(out, int32(i))
		}
	}
	return out
}

// siftUp and siftDown maintain a min-heap ordered by ranksBelow. They are
// written out rather than using container/heap to avoid an interface call
// per comparison in the vocabulary-wide loop.
func siftUp(h []int32, x []float32, i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !ranksBelow(x, h[i], h[parent]) {
			return
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func siftDown(h []int32, x []float32, i int) {
	for {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && ranksBelow(x, h[l], h[least]) {
			least = l
		}
		if r < len(h) && ranksBelow(x, h[r], h[least]) {
			least = r
		}
		if least == i {
			return
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
}

// sortByLogit orders ids from most to least likely, lower ids first among
// equal logits.
func sortByLogit(ids []int32, x []float32) {
	slices.SortFunc(ids, func(a, b int32) int {
		if c := cmp.Compare(key(x[b]), key(x[a])); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
}

// Nucleus pruning buckets candidates by how far their logit lies below
// the maximum, in steps of 1/nucleusBucketsPerNat nats (after
// temperature), with everything past the last bucket sharing it.
const (
	nucleusBuckets       = 256
	nucleusBucketsPerNat = 8
)

// pruneForTopP returns a subset of cand, in any order, that contains every
// token top-p can keep, so that only the subset needs sorting. w holds the
// candidates' weights (same order), m the largest logit, t the
// temperature, and total the sum of w.
//
// One pass sums the weight in each bucket; walking buckets from the top,
// once their mass exceeds the nucleus target every token in a lower bucket
// has at least that much mass ranked strictly above it (a lower bucket
// means a strictly lower logit), so top-p would drop it. The small margin
// on the target covers rounding differences between this sum and the
// sequential one in topP. For a typical peaked distribution this shrinks
// the sort from the whole vocabulary to a few hundred tokens.
func pruneForTopP(cand []int32, w []float64, x []float32, m float32, t, p, total float64) []int32 {
	bucket := func(id int32) int {
		if x[id] == m {
			return 0 // also keeps m = +Inf from giving Inf-Inf = NaN
		}
		d := float64(m-x[id]) / t * nucleusBucketsPerNat
		if d >= nucleusBuckets-1 {
			return nucleusBuckets - 1
		}
		return int(d)
	}
	var mass [nucleusBuckets]float64
	for i, id := range cand {
		mass[bucket(id)] += w[i]
	}
	target := p * total * (1 + 1e-6)
	last, cum := nucleusBuckets-1, 0.0
	for b, mb := range mass {
		if cum += mb; cum >= target {
			last = b
			break
		}
	}
	if last == nucleusBuckets-1 {
		return cand
	}
	n := 0
	for _, id := range cand {
		if bucket(id) <= last {
			cand[n] = id
			n++
		}
	}
	return cand[:n]
}

// topP keeps the nucleus of candidates sorted most likely first: a
// candidate survives while the probability mass ranked strictly above it
// is below p of total, the weight of all candidates before pruning. That
// is Hugging Face's rule (drop tokens whose ascending cumulative
// probability is <= 1-p) read from the other end; the most likely
// candidate always survives.
func topP(cand []int32, w []float64, p, total float64) ([]int32, []float64) {
	limit := p * total
	var above float64
	n := 0
	for n < len(w) && (n == 0 || above < limit) {
		above += w[n]
		n++
	}
	return cand[:n], w[:n]
}

// minP drops candidates whose probability is below p times the largest.
// Weights are relative to the most likely candidate, which has weight 1
// and is never dropped, so the test needs no normaliser.
func minP(cand []int32, w []float64, p float64) ([]int32, []float64) {
	n := 0
	for i, wi := range w {
		if wi >= p {
			cand[n], w[n] = cand[i], wi
			n++
		}
	}
	return cand[:n], w[:n]
}
