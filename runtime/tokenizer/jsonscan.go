package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// jsonScanner reads the two big parts of a tokenizer.json, the vocabulary
// object and the merge list (hundreds of thousands of entries for Gemma),
// several times faster than encoding/json's reflection, and without
// allocating a string per merge. The input has already been validated by
// encoding/json (it arrives as a json.RawMessage), so the scanner only has
// to be correct on valid JSON; it still reports malformed input instead of
// panicking.
type jsonScanner struct {
	data []byte
	pos  int
	buf  []byte // scratch for strings with escapes
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *jsonScanner) expect(c byte) error {
	if s.peek() != c {
		return s.errorf("expected %q", c)
	}
	s.pos++
	return nil
}

func (s *jsonScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", s.pos, fmt.Sprintf(format, args...))
}

// str reads a JSON string and returns its decoded bytes. The result aliases
// the input or the scanner's scratch buffer and is only valid until the next
// call.
func (s *jsonScanner) str() ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return nil, err
	}
	start := s.pos
	escaped := false
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '\\':
			escaped = true
			s.pos += 2
			continue
		case '"':
			s.pos++
			if !escaped {
				return s.data[start : s.pos-1], nil
			}
			// Rare (quotes, backslashes, control characters, surrogate
			// pairs): let encoding/json decode the literal.
			var v string
			if err := json.Unmarshal(s.data[start-1:s.pos], &v); err != nil {
				return nil, s.errorf("bad string: %v", err)
			}
			s.buf = append(s.buf[:0], v...)
			return s.buf, nil
		}
		s.pos++
	}
	return nil, s.errorf("unterminated string")
}

func (s *jsonScanner) integer() (int, error) {
	s.skipSpace()
	start := s.pos
	for s.pos < len(s.data) && (s.data[s.pos] == '-' || '0' <= s.data[s.pos] && s.data[s.pos] <= '9') {
		s.pos++
	}
	n, err := strconv.Atoi(string(s.data[start:s.pos]))
	if err != nil {
		return 0, s.errorf("bad integer %q", s.data[start:s.pos])
	}
	return n, nil
}

// endOfItem consumes the ',' between items or the closing bracket; it
// reports whether the container ended.
func (s *jsonScanner) endOfItem(closing byte) (bool, error) {
	switch s.peek() {
	case ',':
		s.pos++
		return false, nil
	case closing:
		s.pos++
		return true, nil
	}
	return false, s.errorf("expected ',' or %q", closing)
}

// parseVocab reads a {"piece": id, ...} object.
func parseVocab(raw []byte) (map[string]int, error) {
	s := &jsonScanner{data: raw}
	// Roughly 20 bytes per entry in Gemma's vocabulary; a size hint
	// avoids most of the map's growth.
	vocab := make(map[string]int, len(raw)/20)
	if err := s.expect('{'); err != nil {
		return nil, err
	}
	if s.peek() == '}' {
		return vocab, nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return nil, err
		}
		piece := string(key)
		if err := s.expect(':'); err != nil {
			return nil, err
		}
		id, err := s.integer()
		if err != nil {
			return nil, err
		}
		vocab[piece] = id
		if done, err := s.endOfItem('}'); err != nil || done {
			return vocab, err
		}
	}
}

// parseMerges reads the merge list in either spelling, the legacy
// ["a b", ...] or the current [["a", "b"], ...], and calls add with each
// pair in order. The slices passed to add are only valid during the call.
func parseMerges(raw []byte, add func(rank int, a, b []byte) error) error {
	s := &jsonScanner{data: raw}
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		return nil
	}
	var left []byte
	for rank := 0; ; rank++ {
		var a, b []byte
		if s.peek() == '"' {
			line, err := s.str()
			if err != nil {
				return err
			}
			i := bytes.IndexByte(line, ' ')
			if i < 0 || bytes.IndexByte(line[i+1:], ' ') >= 0 {
				return fmt.Errorf("entry %d %q is not two pieces separated by one space", rank, line)
			}
			a, b = line[:i], line[i+1:]
		} else {
			if err := s.expect('['); err != nil {
				return err
			}
			first, err := s.str()
			if err != nil {
				return err
			}
			left = append(left[:0], first...) // str reuses its buffer
			if err := s.expect(','); err != nil {
				return fmt.Errorf("entry %d: want two pieces: %w", rank, err)
			}
			if b, err = s.str(); err != nil {
				return err
			}
			if err := s.expect(']'); err != nil {
				return fmt.Errorf("entry %d: want two pieces: %w", rank, err)
			}
			a = left
		}
		if err := add(rank, a, b); err != nil {
			return err
		}
		if done, err := s.endOfItem(']'); err != nil || done {
			return err
		}
	}
}
