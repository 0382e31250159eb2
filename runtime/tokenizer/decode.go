package tokenizer

import (
	"strings"
	"unicode/utf8"
)

type decodeStepKind int

const (
	decodeReplace      decodeStepKind = iota // every occurrence of pattern becomes content
	decodeStrip                              // drop up to start leading / stop trailing runes equal to stripRune
	decodeByteFallback                       // runs of <0xNN> tokens become the bytes they spell
)

type decodeStep struct {
	kind             decodeStepKind
	pattern, content string
	stripRune        rune
	start, stop      int
}

// decoder is a tokenizer.json decoder chain. Hugging Face decoders work on
// the list of token strings; Fuse joins the list into one string, after
// which only string-to-string steps make sense. perToken holds the steps
// before Fuse (or all of them when there is no Fuse: the final join is
// implicit), fused the steps after it.
type decoder struct {
	perToken []decodeStep
	fused    []decodeStep
}

// Decode turns ids back into text. With skipSpecial, special added tokens
// (<bos>, <eos>, <start_of_turn>, ...) are left out. Ids outside the
// vocabulary are skipped, as Hugging Face does; use Check to reject them.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if !t.valid(id) || (skipSpecial && t.special[id]) {
			continue
		}
		toks = append(toks, t.pieces[id])
	}
	return t.dec.decode(toks)
}

func (d *decoder) decode(toks []string) string {
	s := strings.Join(d.decodeTokens(toks), "")
	for _, st := range d.fused {
		s = st.applyString(s)
	}
	return s
}

// decodeTokens runs the steps before Fuse over a list of token strings.
func (d *decoder) decodeTokens(toks []string) []string {
	for _, st := range d.perToken {
		if st.kind == decodeByteFallback {
			toks = byteFallback(toks)
			continue
		}
		out := make([]string, len(toks))
		for i, tok := range toks {
			out[i] = st.applyString(tok)
		}
		toks = out
	}
	return toks
}

// applyString applies a Replace or Strip step to one string.
func (st *decodeStep) applyString(s string) string {
	switch st.kind {
	case decodeReplace:
		return strings.ReplaceAll(s, st.pattern, st.content)
	case decodeStrip:
		return stripRunes(s, st.stripRune, st.start, st.stop)
	}
	return s
}

// stripRunes removes up to start leading and up to stop trailing runes equal
// to r. (Hugging Face panics when the two overlap; here the result is "".)
func stripRunes(s string, r rune, start, stop int) string {
	lo := 0
	for n := 0; n < start && lo < len(s); n++ {
		c, size := utf8.DecodeRuneInString(s[lo:])
		if c != r {
			break
		}
		lo += size
	}
	hi := len(s)
	for n := 0; n < stop && hi > lo; n++ {
		c, size := utf8.DecodeLastRuneInString(s[:hi])
		if c != r {
			break
		}
		hi -= size
	}
	return s[lo:hi]
}

// byteFallback is Hugging Face's ByteFallback decoder: each maximal run of
// <0xNN> tokens is replaced by the bytes it spells if they are valid UTF-8,
// and otherwise by one U+FFFD per byte token (the whole run, not only the
// bad bytes).
func byteFallback(toks []string) []string {
	out := make([]string, 0, len(toks))
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, tok := range toks {
		if b, ok := byteTokenValue(tok); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, tok)
	}
	flush()
	return out
}

// byteTokenValue parses a byte-fallback piece "<0xNN>" exactly as Hugging
// Face does (six bytes, "<0x" prefix, ">" suffix, the middle parsed by
// Rust's u8::from_str_radix(_, 16), which also takes either case and a
// leading "+").
func byteTokenValue(tok string) (byte, bool) {
	if len(tok) != 6 || tok[:3] != "<0x" || tok[5] != '>' {
		return 0, false
	}
	digits := tok[3:5]
	if digits[0] == '+' {
		digits = digits[1:]
	}
	var v byte
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | (c - '0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}
