package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// StreamDecoder decodes ids one at a time, as a model generates them. The
// text it returns is always whole UTF-8 characters, and the concatenation of
// everything Add and Flush return equals Decode of all the ids added.
//
// To keep that promise it holds back a run of byte-fallback tokens
// (<0xNN>) until the first token after the run: Hugging Face's ByteFallback
// turns a run that is not valid UTF-8 into one U+FFFD per byte, so even the
// valid-looking start of a run cannot be emitted before the run ends. Gemma's
// vocabulary covers almost every character, so such runs are rare and short.
type StreamDecoder struct {
	t           *Tokenizer
	skipSpecial bool
	pending     []string // tokens whose text may still depend on the next token
	fused       []fusedStream
}

// NewDecoder returns a StreamDecoder; skipSpecial has the meaning it has for
// Decode.
func (t *Tokenizer) NewDecoder(skipSpecial bool) *StreamDecoder {
	d := &StreamDecoder{t: t, skipSpecial: skipSpecial}
	for _, st := range t.dec.fused {
		d.fused = append(d.fused, newFusedStream(st))
	}
	return d
}

// Add decodes one more id and returns the text that is now final (possibly
// ""). Ids outside the vocabulary are skipped, as in Decode.
func (d *StreamDecoder) Add(id int) string {
	t := d.t
	if !t.valid(id) || (d.skipSpecial && t.special[id]) {
		return ""
	}
	tok := t.pieces[id]
	d.pending = append(d.pending, tok)
	if t.dec.continuesByteRun(tok) {
		return ""
	}
	// A token that is not a byte token ends any byte run, and every
	// step before Fuse then treats the pending tokens independently of
	// what follows, so their text is final up to Fuse.
	s := strings.Join(t.dec.decodeTokens(d.pending), "")
	d.pending = d.pending[:0]
	return d.feedFused(s, false)
}

// Flush returns the text still held back and resets the decoder for a new
// sequence.
func (d *StreamDecoder) Flush() string {
	s := strings.Join(d.t.dec.decodeTokens(d.pending), "")
	d.pending = d.pending[:0]
	out := d.feedFused(s, true)
	for i, st := range d.t.dec.fused {
		d.fused[i] = newFusedStream(st)
	}
	return out
}

func (d *StreamDecoder) feedFused(s string, final bool) string {
	for _, f := range d.fused {
		s = f.feed(s, final)
	}
	return s
}

// continuesByteRun reports whether tok, as the ByteFallback step will see
// it, is a <0xNN> byte token.
func (d *decoder) continuesByteRun(tok string) bool {
	for _, st := range d.perToken {
		if st.kind == decodeByteFallback {
			_, ok := byteTokenValue(tok)
			return ok
		}
		tok = st.applyString(tok)
	}
	return false
}

// fusedStream is the streaming form of a step after Fuse: feed takes the
// next piece of the fused string and returns the output that no later input
// can change; with final it also returns whatever was held back.
type fusedStream interface {
	feed(s string, final bool) string
}

func newFusedStream(st decodeStep) fusedStream {
	if st.kind == decodeStrip {
		return &stripStream{r: st.stripRune, startLeft: st.start, stop: st.stop}
	}
	return &replaceStream{pattern: st.pattern, content: st.content}
}

// replaceStream replaces pattern by content, holding back a tail of the
// input that could be the start of a match.
type replaceStream struct {
	pattern, content string
	held             string
}

func (r *replaceStream) feed(s string, final bool) string {
	buf := r.held + s
	r.held = ""
	var out strings.Builder
	for {
		i := strings.Index(buf, r.pattern)
		if i < 0 {
			break
		}
		out.WriteString(buf[:i])
		out.WriteString(r.content)
		buf = buf[i+len(r.pattern):]
	}
	if !final {
		// Keep the longest suffix of buf that is a proper prefix of the
		// pattern: a match may start there.
		for n := min(len(buf), len(r.pattern)-1); n > 0; n-- {
			if strings.HasPrefix(r.pattern, buf[len(buf)-n:]) {
				r.held = buf[len(buf)-n:]
				buf = buf[:len(buf)-n]
				break
			}
		}
	}
	out.WriteString(buf)
	return out.String()
}

// stripStream drops up to startLeft leading runes equal to r and, at the
// end, up to stop trailing ones; trailing candidates are held back until a
// different rune follows them.
type stripStream struct {
	r         rune
	startLeft int
	stop      int
	held      string
}

func (p *stripStream) feed(s string, final bool) string {
	for p.startLeft > 0 && s != "" {
		c, size := utf8.DecodeRuneInString(s)
		if c != p.r {
			p.startLeft = 0
			break
		}
		s = s[size:]
		p.startLeft--
	}
	if s == "" && !final {
		return ""
	}
	buf := p.held + s
	// Hold back up to stop trailing runes equal to r; at the end they are
	// exactly what Strip removes.
	hi := len(buf)
	for n := 0; n < p.stop && hi > 0; n++ {
		c, size := utf8.DecodeLastRuneInString(buf[:hi])
		if c != p.r {
			break
		}
		hi -= size
	}
	if final {
		p.held = ""
	} else {
		p.held = buf[hi:]
	}
	return buf[:hi]
}
