package tokenizer

import (
	"unicode/utf8"
)

// bpeModel is the BPE model of a tokenizer.json ("model": {"type": "BPE"}),
// with the semantics of Hugging Face's Rust implementation: a word is split
// into characters (unknown characters become <0xNN> byte tokens or the unk
// token), then the adjacent pair with the lowest merge rank is merged,
// leftmost first on ties, until no adjacent pair has a merge.
type bpeModel struct {
	vocab   map[string]int
	pieces  []string // id → piece; "" where present is false
	present []bool

	// merges maps a pair of ids, packed by pairKey, to rank<<32 | merged id.
	merges map[uint64]uint64

	// Initial-symbol lookups: the id of each single-rune piece, dense for
	// the Basic Multilingual Plane, and the <0xNN> byte tokens.
	runeID     []int32
	runeIDHigh map[rune]int32
	byteID     [256]int32

	byteFallback bool
	fuseUnk      bool
	ignoreMerges bool
	unkID        int32 // -1: unknown characters are dropped

	joins joinTable

	scratch []byte // addMerge's buffer for the merged piece
}

func pairKey(left, right int32) uint64 { return uint64(uint32(left))<<32 | uint64(uint32(right)) }

// bpeScratch holds buffers reused across the words of one Encode call.
type bpeScratch struct {
	symbols []int32
	links   []symbolLink
	heap    mergeHeap
}

// symbolLink is one symbol of the word being merged, in a doubly linked list
// over the slice (prev/next are indices, -1 at the ends). A symbol absorbed
// by its left neighbour gets id -1.
type symbolLink struct {
	id, prev, next int32
}

// runeToID returns the id of the piece that is exactly r, or -1.
func (m *bpeModel) runeToID(r rune) int32 {
	if int(r) < len(m.runeID) {
		return m.runeID[r]
	}
	if id, ok := m.runeIDHigh[r]; ok {
		return id
	}
	return -1
}

// encodeWord appends the ids of one pre-tokenised word to out.
func (m *bpeModel) encodeWord(word string, out []int, sc *bpeScratch) []int {
	if word == "" {
		return out
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(out, id)
		}
	}
	syms := m.initialSymbols(word, sc.symbols[:0])
	sc.symbols = syms

	// Merges never cross a boundary between two symbols whose outer runes
	// no merge joins (see joinTable), so each run between such boundaries
	// is merged on its own. This keeps the heap small on long words (Gemma
	// has no pre-tokeniser, so a whole paragraph is one word) and gives the
	// same result as one heap over the whole word: merges in different runs
	// never interact, and within a run the (rank, position) order is kept.
	start := 0
	for i := 1; i <= len(syms); i++ {
		if i == len(syms) || !m.joins.canJoin(syms[i-1], syms[i]) {
			out = m.mergeRun(syms[start:i], out, sc)
			start = i
		}
	}
	return out
}

// initialSymbols splits word into characters mapped to ids, following
// Hugging Face's BPE::merge_word: a character missing from the vocabulary
// becomes its UTF-8 bytes as <0xNN> tokens (byte_fallback), else the unk
// token (consecutive unknowns fused into one when fuse_unk), else nothing.
// Bytes that are not valid UTF-8 (which a Rust &str cannot hold) are
// treated as unknown one-byte characters.
func (m *bpeModel) initialSymbols(word string, syms []int32) []int32 {
	pendingUnk := false
	for i := 0; i < len(word); {
		r, size := utf8.DecodeRuneInString(word[i:])
		id := int32(-1)
		if r != utf8.RuneError || size != 1 {
			id = m.runeToID(r)
		}
		if id >= 0 {
			if pendingUnk {
				syms = append(syms, m.unkID)
				pendingUnk = false
			}
			syms = append(syms, id)
			i += size
			continue
		}
		if m.byteFallback && m.hasByteTokens(word[i:i+size]) {
			// As in Hugging Face, a pending unk is not flushed here; it
			// lands after these byte tokens.
			for j := i; j < i+size; j++ {
				syms = append(syms, m.byteID[word[j]])
			}
			i += size
			continue
		}
		if m.unkID >= 0 {
			if pendingUnk && !m.fuseUnk {
				syms = append(syms, m.unkID)
			}
			pendingUnk = true
		}
		i += size
	}
	if pendingUnk {
		syms = append(syms, m.unkID)
	}
	return syms
}

func (m *bpeModel) hasByteTokens(s string) bool {
	for i := 0; i < len(s); i++ {
		if m.byteID[s[i]] < 0 {
			return false
		}
	}
	return true
}

// mergeRun applies the merges to one run of symbols and appends the result.
// It is Hugging Face's Word::merge_all: a min-heap of candidate merges keyed
// by (rank, position); an entry is stale when the pair at its position is no
// longer the pair it was pushed for, which is detected by looking the
// current pair up again and comparing ranks (each rank names one pair).
func (m *bpeModel) mergeRun(run []int32, out []int, sc *bpeScratch) []int {
	switch len(run) {
	case 0:
		return out
	case 1:
		return append(out, int(run[0]))
	}
	links := sc.links[:0]
	h := sc.heap[:0]
	for i, id := range run {
		links = append(links, symbolLink{id: id, prev: int32(i - 1), next: int32(i + 1)})
		if i+1 < len(run) {
			if v, ok := m.merges[pairKey(id, run[i+1])]; ok {
				h = append(h, v&^0xffffffff|uint64(i))
			}
		}
	}
	links[len(links)-1].next = -1
	h.init()

	for len(h) > 0 {
		top := h.pop()
		rank, pos := top>>32, int32(uint32(top))
		cur := &links[pos]
		if cur.id < 0 || cur.next < 0 {
			continue
		}
		right := &links[cur.next]
		v, ok := m.merges[pairKey(cur.id, right.id)]
		if !ok || v>>32 != rank {
			continue
		}
		cur.id = int32(uint32(v))
		right.id = -1
		cur.next = right.next
		if cur.next >= 0 {
			links[cur.next].prev = pos
		}
		if cur.prev >= 0 {
			if v, ok := m.merges[pairKey(links[cur.prev].id, cur.id)]; ok {
				h.push(v&^0xffffffff | uint64(cur.prev))
			}
		}
		if cur.next >= 0 {
			if v, ok := m.merges[pairKey(cur.id, links[cur.next].id)]; ok {
				h.push(v&^0xffffffff | uint64(pos))
			}
		}
	}
	for i := int32(0); i >= 0; i = links[i].next {
		out = append(out, int(links[i].id))
	}
	sc.links, sc.heap = links, h
	return out
}

// mergeHeap is a binary min-heap of rank<<32 | position: the lowest rank
// first, the leftmost position on ties.
type mergeHeap []uint64

func (h mergeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *mergeHeap) push(x uint64) {
	*h = append(*h, x)
	s := *h
	i := len(s) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if s[parent] <= x {
			break
		}
		s[i] = s[parent]
		i = parent
	}
	s[i] = x
}

func (h *mergeHeap) pop() uint64 {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	*h = s[:last]
	if last > 0 {
		(*h).down(0)
	}
	return top
}

func (h mergeHeap) down(i int) {
	x := h[i]
	n := len(h)
	for {
		child := 2*i + 1
		if child >= n {
			break
		}
		if r := child + 1; r < n && h[r] < h[child] {
			child = r
		}
		if x <= h[child] {
			break
		}
		h[i] = h[child]
		i = child
	}
	h[i] = x
}

// joinTable records which symbols a merge could ever join. Every piece is
// the concatenation of the initial symbols it was merged from, so a merge
// (a, b) can only join a left symbol ending in a's last rune to a right
// symbol starting with b's first rune. Two adjacent initial symbols whose
// (last rune, first rune) pair appears in no merge can never end up in the
// same token.
type joinTable struct {
	head, tail []rune // first and last rune of each piece, by id
	dense      [(joinDenseN*joinDenseN + 63) / 64]uint64
	sparse     map[uint64]bool // pairs where either rune is outside the dense classes
}

// The dense classes are ASCII and "▁", which cover most boundaries in
// Gemma's normalised text.
const joinDenseN = 129

func joinClass(r rune) int {
	switch {
	case r >= 0 && r < 128:
		return int(r)
	case r == '▁':
		return 128
	}
	return -1
}

func (j *joinTable) add(tail, head rune) {
	a, b := joinClass(tail), joinClass(head)
	if a >= 0 && b >= 0 {
		k := a*joinDenseN + b
		j.dense[k/64] |= 1 << (k % 64)
		return
	}
	j.sparse[uint64(uint32(tail))<<32|uint64(uint32(head))] = true
}

func (j *joinTable) canJoin(left, right int32) bool {
	tail, head := j.tail[left], j.head[right]
	a, b := joinClass(tail), joinClass(head)
	if a >= 0 && b >= 0 {
		k := a*joinDenseN + b
		return j.dense[k/64]&(1<<(k%64)) != 0
	}
	return j.sparse[uint64(uint32(tail))<<32|uint64(uint32(head))]
}

// newBPEModel builds the lookup tables for a vocabulary; the merges are
// added afterwards with addMerge, in rank order.
func newBPEModel(vocab map[string]int, byteFallback, fuseUnk, ignoreMerges bool, unkToken string) (*bpeModel, error) {
	m := &bpeModel{
		vocab:        vocab,
		byteFallback: byteFallback,
		fuseUnk:      fuseUnk,
		ignoreMerges: ignoreMerges,
		unkID:        -1,
		runeID:       make([]int32, 0x10000),
		runeIDHigh:   map[rune]int32{},
		merges:       map[uint64]uint64{},
	}
	size := 0
	for piece, id := range vocab {
		if id < 0 || id >= 1<<31-1 {
			return nil, errorf("model vocab: id %d of %q out of range", id, piece)
		}
		size = max(size, id+1)
	}
	m.pieces = make([]string, size)
	m.present = make([]bool, size)
	for i := range m.runeID {
		m.runeID[i] = -1
	}
	for piece, id := range vocab {
		m.pieces[id], m.present[id] = piece, true
		if r, n := utf8.DecodeRuneInString(piece); n == len(piece) && !(r == utf8.RuneError && n <= 1) {
			if int(r) < len(m.runeID) {
				m.runeID[r] = int32(id)
			} else {
				m.runeIDHigh[r] = int32(id)
			}
		}
	}
	for b := range m.byteID {
		m.byteID[b] = -1
		if id, ok := vocab[byteTokenName(byte(b))]; ok {
			m.byteID[b] = int32(id)
		}
	}
	if unkToken != "" {
		id, ok := vocab[unkToken]
		if !ok {
			return nil, errorf("model: unk_token %q is not in the vocabulary", unkToken)
		}
		m.unkID = int32(id)
	}

	m.joins.head = make([]rune, size)
	m.joins.tail = make([]rune, size)
	m.joins.sparse = map[uint64]bool{}
	for id, p := range m.pieces {
		if p == "" {
			continue
		}
		m.joins.head[id], _ = utf8.DecodeRuneInString(p)
		m.joins.tail[id], _ = utf8.DecodeLastRuneInString(p)
	}
	return m, nil
}

// addMerge adds the merge of pieces a and b with the given rank (its index
// in the merge list). A later duplicate of a pair overrides an earlier one,
// as when Hugging Face collects the merges into a map. Both pieces and their
// concatenation must be in the vocabulary.
func (m *bpeModel) addMerge(rank int, a, b []byte) error {
	left, okA := m.vocab[string(a)]
	right, okB := m.vocab[string(b)]
	if !okA || !okB {
		missing := a
		if okA {
			missing = b
		}
		return errorf("merge %d (%q %q): %q is not in the vocabulary", rank, a, b, missing)
	}
	m.scratch = append(append(m.scratch[:0], a...), b...)
	merged, ok := m.vocab[string(m.scratch)]
	if !ok {
		return errorf("merge %d (%q %q): the merged piece %q is not in the vocabulary", rank, a, b, m.scratch)
	}
	m.merges[pairKey(int32(left), int32(right))] = uint64(rank)<<32 | uint64(merged)
	m.joins.add(m.joins.tail[left], m.joins.head[right])
	return nil
}

// byteTokenName returns the byte-fallback piece for b, e.g. "<0x0A>".
func byteTokenName(b byte) string {
	const hex = "0123456789ABCDEF"
	return string([]byte{'<', '0', 'x', hex[b>>4], hex[b&15], '>'})
}
