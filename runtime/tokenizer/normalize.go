package tokenizer

import "strings"

// normalizeStep is one supported normaliser: Replace (a literal string) or
// Prepend. A tokenizer.json "Sequence" is flattened into a list of these.
type normalizeStep struct {
	prepend bool   // Prepend: add content in front of a non-empty segment
	pattern string // Replace: every occurrence of pattern becomes content
	content string
}

// normalize applies the steps to one segment of text (the text between
// added tokens: Hugging Face normalises each such segment on its own, which
// matters for Prepend).
func normalize(steps []normalizeStep, s string) string {
	for _, st := range steps {
		if st.prepend {
			if s != "" {
				s = st.content + s
			}
			continue
		}
		s = strings.ReplaceAll(s, st.pattern, st.content)
	}
	return s
}

// splitBehavior is the "behavior" of a Split pre-tokeniser: what happens to
// each occurrence of the delimiter.
type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

var splitBehaviors = map[string]splitBehavior{
	"Removed":            splitRemoved,
	"Isolated":           splitIsolated,
	"MergedWithPrevious": splitMergedWithPrevious,
	"MergedWithNext":     splitMergedWithNext,
	"Contiguous":         splitContiguous,
}

// splitPreTokenizer is a Split pre-tokeniser on a literal string pattern.
// Gemma-3's tokenizer.json has one splitting on " ", which never fires
// because the normaliser has already turned every space into "▁"; it is
// implemented rather than special-cased so that a file where it does fire
// still tokenises correctly.
type splitPreTokenizer struct {
	pattern  string
	behavior splitBehavior
}

// span is a byte range of the text being split; match marks a delimiter.
type span struct {
	start, end int
	match      bool
}

// split returns the words of s, following Hugging Face's
// SplitDelimiterBehavior. Empty words are dropped.
func (p *splitPreTokenizer) split(s string, words []string) []string {
	if !strings.Contains(s, p.pattern) {
		if s != "" {
			words = append(words, s)
		}
		return words
	}
	var spans []span
	prev := 0
	for i := 0; ; {
		j := strings.Index(s[i:], p.pattern)
		if j < 0 {
			break
		}
		start, end := i+j, i+j+len(p.pattern)
		if start != prev {
			spans = append(spans, span{prev, start, false})
		}
		spans = append(spans, span{start, end, true})
		prev, i = end, end
	}
	if prev != len(s) {
		spans = append(spans, span{prev, len(s), false})
	}

	var out []span
	switch p.behavior {
	case splitRemoved:
		for _, sp := range spans {
			if !sp.match {
				out = append(out, sp)
			}
		}
	case splitIsolated:
		out = spans
	case splitMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
	case splitMergedWithNext:
		prevMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].start = sp.start
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	case splitContiguous:
		prevMatch := false
		for _, sp := range spans {
			if sp.match == prevMatch && len(out) > 0 {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
	}
	for _, sp := range out {
		if sp.end > sp.start {
			words = append(words, s[sp.start:sp.end])
		}
	}
	return words
}
