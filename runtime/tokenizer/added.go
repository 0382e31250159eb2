package tokenizer

// addedToken is one entry of tokenizer.json's "added_tokens".
type addedToken struct {
	id         int
	content    string
	special    bool
	normalized bool // matched on the normalised text instead of the raw text
}

// addedVocab holds the added tokens and the matchers that cut them out of
// the text before the BPE model sees it.
type addedVocab struct {
	tokens         []addedToken
	idOf           map[string]int
	specialContent map[string]bool
	raw            *tokenMatcher // tokens with normalized=false, matched on the raw text
	normalized     *tokenMatcher // tokens with normalized=true, matched on each normalised segment
}

func newAddedVocab(tokens []addedToken) *addedVocab {
	v := &addedVocab{
		tokens:         tokens,
		idOf:           make(map[string]int, len(tokens)),
		specialContent: map[string]bool{},
		raw:            newTokenMatcher(),
		normalized:     newTokenMatcher(),
	}
	for _, tok := range tokens {
		v.idOf[tok.content] = tok.id
		if tok.special {
			v.specialContent[tok.content] = true
		}
		if tok.normalized {
			v.normalized.add(tok.content, tok.id)
		} else {
			v.raw.add(tok.content, tok.id)
		}
	}
	return v
}

// tokenMatcher finds added tokens in text with leftmost-longest semantics
// (Hugging Face uses Aho-Corasick with MatchKind::LeftmostLongest): the
// match starting earliest wins, and of those the longest. It is a byte trie
// with a table of the bytes a token can start with, so that ordinary text
// is skipped byte by byte without touching the trie.
type tokenMatcher struct {
	canStart [256]bool
	edges    map[uint64]int32 // node<<8 | byte → child node
	tokenAt  []int32          // node → token id ending there, or -1
	empty    bool             // no tokens: every text is one segment
}

func newTokenMatcher() *tokenMatcher {
	return &tokenMatcher{edges: map[uint64]int32{}, tokenAt: []int32{-1}, empty: true}
}

func (m *tokenMatcher) add(content string, id int) {
	if content == "" {
		return
	}
	m.empty = false
	m.canStart[content[0]] = true
	node := int32(0)
	for i := 0; i < len(content); i++ {
		key := uint64(node)<<8 | uint64(content[i])
		child, ok := m.edges[key]
		if !ok {
			child = int32(len(m.tokenAt))
			m.tokenAt = append(m.tokenAt, -1)
			m.edges[key] = child
		}
		node = child
	}
	m.tokenAt[node] = int32(id)
}

// longestAt returns the id and length of the longest token that starts at
// s[i], or length 0.
func (m *tokenMatcher) longestAt(s string, i int) (id int, n int) {
	node := int32(0)
	for j := i; j < len(s); j++ {
		child, ok := m.edges[uint64(node)<<8|uint64(s[j])]
		if !ok {
			break
		}
		node = child
		if tok := m.tokenAt[node]; tok >= 0 {
			id, n = int(tok), j+1-i
		}
	}
	return id, n
}

// segment is a piece of text between added tokens (id < 0) or an added
// token (text is its content, id its id).
type segment struct {
	text string
	id   int
}

// split cuts s into segments, appending them to segs. Empty text segments
// are dropped.
func (m *tokenMatcher) split(s string, segs []segment) []segment {
	if m.empty {
		if s != "" {
			segs = append(segs, segment{s, -1})
		}
		return segs
	}
	textStart := 0
	for i := 0; i < len(s); {
		if !m.canStart[s[i]] {
			i++
			continue
		}
		id, n := m.longestAt(s, i)
		if n == 0 {
			i++
			continue
		}
		if i > textStart {
			segs = append(segs, segment{s[textStart:i], -1})
		}
		segs = append(segs, segment{s[i : i+n], id})
		i += n
		textStart = i
	}
	if textStart < len(s) {
		segs = append(segs, segment{s[textStart:], -1})
	}
	return segs
}
