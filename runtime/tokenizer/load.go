package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

func errorf(format string, args ...any) error {
	return fmt.Errorf("tokenizer: "+format, args...)
}

// Load reads a tokenizer.json, gzipped or not (detected by the gzip magic
// bytes or a ".gz" suffix).
func Load(path string) (*Tokenizer, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return t, nil
}

// ReadFile returns the JSON text of a tokenizer.json, gunzipping it when it
// is compressed.
func ReadFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errorf("%w", err)
	}
	if isGzip(data) || strings.HasSuffix(path, ".gz") {
		if data, err = gunzip(data); err != nil {
			return nil, errorf("%s: %w", path, err)
		}
	}
	return data, nil
}

func isGzip(data []byte) bool {
	return len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
}

func gunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	var buf bytes.Buffer
	// The gzip trailer ends with the uncompressed size (mod 2^32): use it
	// to allocate once.
	if len(data) >= 4 {
		buf.Grow(int(binary.LittleEndian.Uint32(data[len(data)-4:])) + bytes.MinRead)
	}
	if _, err := io.Copy(&buf, zr); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// The JSON structures below hold only what this package reads; anything
// they name that it does not implement is rejected in Parse.

type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Truncation    json.RawMessage  `json:"truncation"`
	Padding       json.RawMessage  `json:"padding"`
	Model         modelJSON        `json:"model"`
}

type addedTokenJSON struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

// componentJSON is any normaliser, pre-tokeniser, post-processor or decoder
// object; each kind uses a few of these fields.
type componentJSON struct {
	Type string `json:"type"`

	Pattern  *patternJSON `json:"pattern"`  // Replace, Split
	Content  *string      `json:"content"`  // Replace, Strip
	Prepend  *string      `json:"prepend"`  // Prepend
	Behavior string       `json:"behavior"` // Split
	Invert   bool         `json:"invert"`   // Split
	Start    int          `json:"start"`    // Strip
	Stop     int          `json:"stop"`     // Strip

	Normalizers []json.RawMessage `json:"normalizers"` // Sequence
	Decoders    []json.RawMessage `json:"decoders"`    // Sequence

	Single        []templateItemJSON              `json:"single"`         // TemplateProcessing
	SpecialTokens map[string]templateSpecialsJSON `json:"special_tokens"` // TemplateProcessing
}

type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

type templateItemJSON struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

type templateSpecialsJSON struct {
	IDs []int `json:"ids"`
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// Parse builds a Tokenizer from the bytes of a tokenizer.json.
func Parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, errorf("parsing tokenizer.json: %w", err)
	}
	if !isNull(f.Truncation) {
		return nil, errorf("truncation is not supported (it must be null)")
	}
	if !isNull(f.Padding) {
		return nil, errorf("padding is not supported (it must be null)")
	}
	model, err := parseModel(&f.Model)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{model: model}
	if t.added, err = parseAddedTokens(f.AddedTokens); err != nil {
		return nil, err
	}
	if t.normalizer, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if t.preTok, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	if t.prefix, t.suffix, err = parsePostProcessor(f.PostProcessor); err != nil {
		return nil, err
	}
	if t.dec, err = parseDecoder(f.Decoder); err != nil {
		return nil, err
	}
	t.finish()
	for _, id := range append(append([]int(nil), t.prefix...), t.suffix...) {
		if !t.valid(id) {
			return nil, errorf("post_processor: id %d is not in the vocabulary", id)
		}
	}
	return t, nil
}

func parseModel(m *modelJSON) (*bpeModel, error) {
	if m.Type != "BPE" {
		return nil, errorf("model type %q is not supported (only BPE)", m.Type)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return nil, errorf("model: BPE dropout %v is not supported (it must be null)", *m.Dropout)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, errorf("model: continuing_subword_prefix is not supported")
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, errorf("model: end_of_word_suffix is not supported")
	}
	if isNull(m.Vocab) {
		return nil, errorf("model: no vocab")
	}
	vocab, err := parseVocab(m.Vocab)
	if err != nil {
		return nil, errorf("model vocab: %w", err)
	}
	unk := ""
	if m.UnkToken != nil {
		unk = *m.UnkToken
	}
	model, err := newBPEModel(vocab, m.ByteFallback, m.FuseUnk, m.IgnoreMerges, unk)
	if err != nil {
		return nil, err
	}
	if !isNull(m.Merges) {
		if err := parseMerges(m.Merges, model.addMerge); err != nil {
			return nil, errorf("model merges: %w", err)
		}
	}
	model.scratch = nil
	return model, nil
}

func parseAddedTokens(list []addedTokenJSON) (*addedVocab, error) {
	tokens := make([]addedToken, 0, len(list))
	for _, a := range list {
		if a.SingleWord || a.LStrip || a.RStrip {
			return nil, errorf("added token %q: single_word, lstrip and rstrip are not supported", a.Content)
		}
		if a.ID < 0 {
			return nil, errorf("added token %q: negative id %d", a.Content, a.ID)
		}
		tokens = append(tokens, addedToken{id: a.ID, content: a.Content, special: a.Special, normalized: a.Normalized})
	}
	return newAddedVocab(tokens), nil
}

func parseComponent(raw json.RawMessage, what string) (*componentJSON, error) {
	var c componentJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, errorf("%s: %w", what, err)
	}
	return &c, nil
}

// literalPattern returns the String of a Replace/Split pattern; regular
// expressions are not supported.
func literalPattern(c *componentJSON, what string) (string, error) {
	if c.Pattern == nil || c.Pattern.String == nil {
		return "", errorf("%s %s: only literal {\"String\": ...} patterns are supported", what, c.Type)
	}
	if *c.Pattern.String == "" {
		return "", errorf("%s %s: empty pattern", what, c.Type)
	}
	return *c.Pattern.String, nil
}

func parseNormalizer(raw json.RawMessage) ([]normalizeStep, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, "normalizer")
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var steps []normalizeStep
		for _, sub := range c.Normalizers {
			s, err := parseNormalizer(sub)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s...)
		}
		return steps, nil
	case "Replace":
		pattern, err := literalPattern(c, "normalizer")
		if err != nil {
			return nil, err
		}
		if c.Content == nil {
			return nil, errorf("normalizer Replace: no content")
		}
		return []normalizeStep{{pattern: pattern, content: *c.Content}}, nil
	case "Prepend":
		if c.Prepend == nil {
			return nil, errorf("normalizer Prepend: no prepend")
		}
		return []normalizeStep{{prepend: true, content: *c.Prepend}}, nil
	}
	return nil, errorf("normalizer type %q is not supported (only Replace, Prepend and Sequence)", c.Type)
}

func parsePreTokenizer(raw json.RawMessage) (*splitPreTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, "pre_tokenizer")
	if err != nil {
		return nil, err
	}
	if c.Type != "Split" {
		return nil, errorf("pre_tokenizer type %q is not supported (only Split on a literal string)", c.Type)
	}
	pattern, err := literalPattern(c, "pre_tokenizer")
	if err != nil {
		return nil, err
	}
	if c.Invert {
		return nil, errorf("pre_tokenizer Split: invert is not supported")
	}
	behavior, ok := splitBehaviors[c.Behavior]
	if !ok {
		return nil, errorf("pre_tokenizer Split: unknown behavior %q", c.Behavior)
	}
	return &splitPreTokenizer{pattern: pattern, behavior: behavior}, nil
}

// parsePostProcessor returns the ids a TemplateProcessing post-processor
// puts before and after a single sequence.
func parsePostProcessor(raw json.RawMessage) (prefix, suffix []int, err error) {
	if isNull(raw) {
		return nil, nil, nil
	}
	c, err := parseComponent(raw, "post_processor")
	if err != nil {
		return nil, nil, err
	}
	if c.Type != "TemplateProcessing" {
		return nil, nil, errorf("post_processor type %q is not supported (only TemplateProcessing)", c.Type)
	}
	seenSequence := false
	for _, item := range c.Single {
		switch {
		case item.Sequence != nil:
			if seenSequence {
				return nil, nil, errorf("post_processor: the single template has more than one sequence")
			}
			seenSequence = true
		case item.SpecialToken != nil:
			st, ok := c.SpecialTokens[item.SpecialToken.ID]
			if !ok {
				return nil, nil, errorf("post_processor: special token %q is not defined", item.SpecialToken.ID)
			}
			if seenSequence {
				suffix = append(suffix, st.IDs...)
			} else {
				prefix = append(prefix, st.IDs...)
			}
		default:
			return nil, nil, errorf("post_processor: unknown item in the single template")
		}
	}
	if !seenSequence {
		return nil, nil, errorf("post_processor: the single template has no sequence")
	}
	return prefix, suffix, nil
}

func parseDecoder(raw json.RawMessage) (*decoder, error) {
	d := &decoder{}
	if isNull(raw) {
		return d, nil
	}
	var steps []json.RawMessage
	c, err := parseComponent(raw, "decoder")
	if err != nil {
		return nil, err
	}
	if c.Type == "Sequence" {
		steps = c.Decoders
	} else {
		steps = []json.RawMessage{raw}
	}
	fused, byteFallbacks := false, 0
	for _, sub := range steps {
		c, err := parseComponent(sub, "decoder")
		if err != nil {
			return nil, err
		}
		var st decodeStep
		switch c.Type {
		case "Fuse":
			fused = true
			continue
		case "ByteFallback":
			if fused {
				return nil, errorf("decoder: ByteFallback after Fuse is not supported")
			}
			if byteFallbacks++; byteFallbacks > 1 {
				return nil, errorf("decoder: more than one ByteFallback is not supported")
			}
			st = decodeStep{kind: decodeByteFallback}
		case "Replace":
			pattern, err := literalPattern(c, "decoder")
			if err != nil {
				return nil, err
			}
			if c.Content == nil {
				return nil, errorf("decoder Replace: no content")
			}
			st = decodeStep{kind: decodeReplace, pattern: pattern, content: *c.Content}
		case "Strip":
			if c.Content == nil || utf8.RuneCountInString(*c.Content) != 1 {
				return nil, errorf("decoder Strip: content must be one character")
			}
			if c.Start < 0 || c.Stop < 0 {
				return nil, errorf("decoder Strip: negative start or stop")
			}
			r, _ := utf8.DecodeRuneInString(*c.Content)
			st = decodeStep{kind: decodeStrip, stripRune: r, start: c.Start, stop: c.Stop}
		case "Sequence":
			return nil, errorf("decoder: nested Sequence is not supported")
		default:
			return nil, errorf("decoder type %q is not supported (only Replace, ByteFallback, Fuse, Strip and Sequence)", c.Type)
		}
		if fused {
			d.fused = append(d.fused, st)
		} else {
			d.perToken = append(d.perToken, st)
		}
	}
	return d, nil
}
