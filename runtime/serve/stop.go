package serve

import "strings"

// stopper finds stop sequences in streamed text. It holds back the end of
// the text while it could still become a stop sequence, so that no part of
// a stop sequence is ever sent.
type stopper struct {
	stops   []string
	pending string
}

// add takes the next piece of text and returns what can be sent now; hit
// reports a stop sequence, after which the text before it is all there is.
func (s *stopper) add(text string) (out string, hit bool) {
	if len(s.stops) == 0 {
		return text, false
	}
	s.pending += text
	first := -1
	for _, stop := range s.stops {
		if i := strings.Index(s.pending, stop); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first >= 0 {
		out, s.pending = s.pending[:first], ""
		return out, true
	}
	hold := 0
	for _, stop := range s.stops {
		for k := min(len(stop)-1, len(s.pending)); k > hold; k-- {
			if strings.HasSuffix(s.pending, stop[:k]) {
				hold = k
				break
			}
		}
	}
	cut := len(s.pending) - hold
	out, s.pending = s.pending[:cut], s.pending[cut:]
	return out, false
}

// flush returns the text held back, at the end of generation.
func (s *stopper) flush() string {
	out := s.pending
	s.pending = ""
	return out
}
