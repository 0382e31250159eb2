package tokenizer

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// synthetic returns a small Llama-2-style tokenizer.json as a mutable
// value: Prepend "▁" + Replace " "→"▁" normaliser, byte fallback, <s> added
// in front, and a decoder that strips the leading space after Fuse.
//
// ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then the pieces below.
func synthetic() map[string]any {
	vocab := map[string]any{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := 0; b < 256; b++ {
		vocab[byteTokenName(byte(b))] = 3 + b
	}
	pieces := []string{"a", "b", "c", "▁", "ab", "abc", "▁a", "▁ab", "bc", "x"}
	for i, p := range pieces {
		vocab[p] = 259 + i
	}
	return map[string]any{
		"version":    "1.0",
		"truncation": nil,
		"padding":    nil,
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<unk>", "special": true},
			map[string]any{"id": 1, "content": "<s>", "special": true},
			map[string]any{"id": 2, "content": "</s>", "special": true},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{
			"type":   "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"special_tokens": map[string]any{
				"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}},
			},
		},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": "<unk>",
			"continuing_subword_prefix": nil, "end_of_word_suffix": nil,
			"fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
			"vocab": vocab,
			// Legacy "a b" spelling; Gemma's files use pairs.
			"merges": []string{"a b", "ab c", "▁ a", "▁a b", "b c"},
		},
	}
}

func mustParse(t *testing.T, spec map[string]any) *Tokenizer {
	t.Helper()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tok
}

func model(spec map[string]any) map[string]any { return spec["model"].(map[string]any) }

// pieces renders ids as their pieces for readable failures.
func pieces(tok *Tokenizer, ids []int) []string {
	out := []string{}
	for _, id := range ids {
		out = append(out, tok.Piece(id))
	}
	return out
}

func TestSyntheticEncode(t *testing.T) {
	noByteFallback := synthetic()
	model(noByteFallback)["byte_fallback"] = false
	noFuse := synthetic()
	model(noFuse)["byte_fallback"] = false
	model(noFuse)["fuse_unk"] = false
	pairMerges := synthetic()
	model(pairMerges)["merges"] = [][]string{{"a", "b"}, {"ab", "c"}, {"▁", "a"}, {"▁a", "b"}, {"b", "c"}}
	// "bc" ranks before "ab": the leftmost-first tie rule must not hide it.
	bcFirst := synthetic()
	model(bcFirst)["merges"] = []string{"b c", "a b", "ab c", "▁ a", "▁a b"}
	ignoreMerges := synthetic()
	ignoreMerges["normalizer"] = nil
	model(ignoreMerges)["ignore_merges"] = true
	model(ignoreMerges)["merges"] = []string{"a b", "b c"} // "abc" is not reachable by these merges
	normalizedAdded := synthetic()
	normalizedAdded["added_tokens"] = append(normalizedAdded["added_tokens"].([]any),
		map[string]any{"id": 266, "content": "▁ab", "normalized": true, "special": false})

	tests := []struct {
		name       string
		spec       map[string]any
		text       string
		addSpecial bool
		want       []string
	}{
		{"bos and merges", synthetic(), "ab c", true, []string{"<s>", "▁", "ab", "▁", "c"}},
		{"rank order", synthetic(), "abc", false, []string{"▁", "abc"}},
		{"pair merges", pairMerges, "abc", false, []string{"▁", "abc"}},
		{"lower rank wins", bcFirst, "abc", false, []string{"▁a", "bc"}},
		{"leftmost on ties", synthetic(), "aaa", false, []string{"▁a", "a", "a"}},
		{"prepend per segment", synthetic(), "a</s>b", false, []string{"▁a", "</s>", "▁", "b"}},
		{"special at start", synthetic(), "<s>a", true, []string{"<s>", "<s>", "▁a"}},
		{"empty", synthetic(), "", true, []string{"<s>"}},
		{"byte fallback", synthetic(), "é", false, []string{"▁", "<0xC3>", "<0xA9>"}},
		{"invalid utf8 byte", synthetic(), "a\xffb", false, []string{"▁a", "<0xFF>", "b"}},
		{"fused unk", noByteFallback, "aéüb", false, []string{"▁a", "<unk>", "b"}},
		{"unfused unk", noFuse, "aéüb", false, []string{"▁a", "<unk>", "<unk>", "b"}},
		{"ignore merges", ignoreMerges, "abc", false, []string{"abc"}},
		{"ignore merges miss", ignoreMerges, "abca", false, []string{"ab", "c", "a"}},
		{"normalized added token", normalizedAdded, "c ab", false, []string{"▁", "c", "▁ab"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := mustParse(t, tc.spec)
			got := pieces(tok, tok.Encode(tc.text, tc.addSpecial))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Encode(%q) mismatch (-want +got):\n%s", tc.text, diff)
			}
		})
	}
}

func TestSyntheticDecode(t *testing.T) {
	tok := mustParse(t, synthetic())
	id := func(p string) int {
		i, ok := tok.TokenID(p)
		if !ok {
			t.Fatalf("no piece %q", p)
		}
		return i
	}
	tests := []struct {
		name        string
		ids         []int
		skipSpecial bool
		want        string
	}{
		{"strip leading space", []int{id("<s>"), id("▁ab"), id("▁"), id("c")}, true, "ab c"},
		{"specials kept", []int{id("<s>"), id("▁ab")}, false, "<s> ab"},
		{"valid byte run", []int{id("▁a"), id("<0xC3>"), id("<0xA9>")}, false, "aé"},
		{"invalid byte run", []int{id("▁a"), id("<0xC3>"), id("<0x41>"), id("b")}, false, "a\uFFFD\uFFFDb"},
		{"truncated byte run", []int{id("a"), id("<0xE2>"), id("<0x96>")}, false, "a\uFFFD\uFFFD"},
		{"unknown ids skipped", []int{id("a"), -1, 1 << 20, id("b")}, false, "ab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tok.Decode(tc.ids, tc.skipSpecial); got != tc.want {
				t.Errorf("Decode = %q, want %q", got, tc.want)
			}
			if got := streamDecode(t, tok, tc.ids, tc.skipSpecial); got != tc.want {
				t.Errorf("stream decode = %q, want %q", got, tc.want)
			}
		})
	}
	if err := tok.Check([]int{1, 2, 999}); err == nil || !strings.Contains(err.Error(), "id 999 at position 2") {
		t.Errorf("Check = %v, want an error naming id 999 at position 2", err)
	}
}

// TestStreamMatchesDecode feeds random id sequences through decoders with
// every supported step, including ones that hold text back, and checks the
// streamed text against Decode.
func TestStreamMatchesDecode(t *testing.T) {
	decoders := map[string][]any{
		"llama": nil, // synthetic()'s own
		"strip both ends": {
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 2, "stop": 2},
		},
		"multi-rune replace after fuse": {
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "ab▁"}, "content": "<AB>"},
		},
		"per-token strip, no fuse": {
			map[string]any{"type": "Strip", "content": "▁", "start": 1, "stop": 1},
			map[string]any{"type": "ByteFallback"},
		},
	}
	for name, steps := range decoders {
		t.Run(name, func(t *testing.T) {
			spec := synthetic()
			if steps != nil {
				spec["decoder"] = map[string]any{"type": "Sequence", "decoders": steps}
			}
			tok := mustParse(t, spec)
			rng := rand.New(rand.NewPCG(7, uint64(len(name))))
			interesting := []int{0, 1, 2, 3 + 0xC3, 3 + 0xA9, 3 + 0xE2, 3 + 0x96, 3 + 0x81, 3 + 'A', 3 + ' ', -1}
			for i := 0; i < 259+10; i++ {
				if i >= 259 {
					interesting = append(interesting, i, i, i) // the text pieces, more often
				}
			}
			for iter := 0; iter < 3000; iter++ {
				ids := make([]int, rng.IntN(12))
				for i := range ids {
					ids[i] = interesting[rng.IntN(len(interesting))]
				}
				skip := rng.IntN(2) == 0
				want := tok.Decode(ids, skip)
				if got := streamDecode(t, tok, ids, skip); got != want {
					t.Fatalf("ids %v (%q) skipSpecial=%v: stream %q, Decode %q", ids, pieces(tok, ids), skip, got, want)
				}
			}
		})
	}
}

func TestStreamDecoderHoldsBackByteRuns(t *testing.T) {
	tok := gemmaTokenizer(t)
	ids := tok.Encode("a😀b", false) // the emoji may be byte tokens or a piece
	d := tok.NewDecoder(false)
	var chunks []string
	for _, id := range ids {
		chunks = append(chunks, d.Add(id))
	}
	chunks = append(chunks, d.Flush())
	for _, c := range chunks {
		if !utf8.ValidString(c) {
			t.Errorf("chunk %q is not valid UTF-8", c)
		}
	}
	if got := strings.Join(chunks, ""); got != "a😀b" {
		t.Errorf("stream = %q, want %q", got, "a😀b")
	}
	// Byte tokens spelled out one by one are held until the run ends.
	d = tok.NewDecoder(false)
	for _, b := range []byte("€") {
		id, _ := tok.TokenID(byteTokenName(b))
		if s := d.Add(id); s != "" {
			t.Errorf("Add(<0x%02X>) = %q before the run ended", b, s)
		}
	}
	if s := d.Flush(); s != "€" {
		t.Errorf("Flush = %q, want %q", s, "€")
	}
}

func TestSplitPreTokenizer(t *testing.T) {
	// The examples of Hugging Face's SplitDelimiterBehavior documentation.
	const text = "the-final--countdown"
	want := map[splitBehavior][]string{
		splitRemoved:            {"the", "final", "countdown"},
		splitIsolated:           {"the", "-", "final", "-", "-", "countdown"},
		splitMergedWithPrevious: {"the-", "final-", "-", "countdown"},
		splitMergedWithNext:     {"the", "-final", "-", "-countdown"},
		splitContiguous:         {"the", "-", "final", "--", "countdown"},
	}
	for behavior, w := range want {
		p := &splitPreTokenizer{pattern: "-", behavior: behavior}
		if diff := cmp.Diff(w, p.split(text, nil)); diff != "" {
			t.Errorf("behavior %d (-want +got):\n%s", behavior, diff)
		}
	}
	spec := synthetic()
	spec["normalizer"] = nil
	spec["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"String": " "}, "behavior": "MergedWithPrevious", "invert": false}
	tok := mustParse(t, spec)
	// Words "ab " and "c": the space is unknown (no piece) and byte-falls-back.
	if diff := cmp.Diff([]string{"ab", "<0x20>", "c"}, pieces(tok, tok.Encode("ab c", false))); diff != "" {
		t.Errorf("Encode with Split (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(map[string]any)
		want   string
	}{
		{"model type", func(s map[string]any) { model(s)["type"] = "WordPiece" }, `model type "WordPiece" is not supported`},
		{"dropout", func(s map[string]any) { model(s)["dropout"] = 0.1 }, "dropout"},
		{"subword prefix", func(s map[string]any) { model(s)["continuing_subword_prefix"] = "##" }, "continuing_subword_prefix"},
		{"merge piece missing", func(s map[string]any) { model(s)["merges"] = []string{"a q"} }, `"q" is not in the vocabulary`},
		{"merged piece missing", func(s map[string]any) { model(s)["merges"] = []string{"b a"} }, `merged piece "ba"`},
		{"bad merge line", func(s map[string]any) { model(s)["merges"] = []string{"abc"} }, "not two pieces"},
		{"bad merge pair", func(s map[string]any) { model(s)["merges"] = [][]string{{"a", "b", "c"}} }, "want two pieces"},
		{"unk missing", func(s map[string]any) { model(s)["unk_token"] = "<nope>" }, "unk_token"},
		{"normalizer", func(s map[string]any) { s["normalizer"] = map[string]any{"type": "NFKC"} }, `normalizer type "NFKC"`},
		{"regex", func(s map[string]any) {
			s["normalizer"] = map[string]any{"type": "Replace", "pattern": map[string]any{"Regex": " +"}, "content": "▁"}
		}, "literal"},
		{"pre_tokenizer", func(s map[string]any) { s["pre_tokenizer"] = map[string]any{"type": "Metaspace"} }, `pre_tokenizer type "Metaspace"`},
		{"split behavior", func(s map[string]any) {
			s["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"String": " "}, "behavior": "Sideways"}
		}, "behavior"},
		{"decoder", func(s map[string]any) { s["decoder"] = map[string]any{"type": "ByteLevel"} }, `decoder type "ByteLevel"`},
		{"post_processor", func(s map[string]any) { s["post_processor"] = map[string]any{"type": "BertProcessing"} }, `post_processor type "BertProcessing"`},
		{"added lstrip", func(s map[string]any) {
			s["added_tokens"] = []any{map[string]any{"id": 0, "content": "<unk>", "lstrip": true}}
		}, "lstrip"},
		{"truncation", func(s map[string]any) { s["truncation"] = map[string]any{"max_length": 8} }, "truncation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := synthetic()
			tc.mutate(spec)
			data, err := json.Marshal(spec)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "{", `{"model": 5}`, `[1, 2]`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
	bad := filepath.Join(dir, "tokenizer.json.gz")
	if err := os.WriteFile(bad, []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil {
		t.Error("Load of a corrupt .gz succeeded")
	}
	notJSON := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(notJSON, []byte("{oops"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(notJSON); err == nil || !strings.Contains(err.Error(), notJSON) {
		t.Errorf("Load(bad json) = %v, want an error naming the file", err)
	}
}

// TestLoadGzipDetection loads the same tokenizer gzipped under a name
// without ".gz" (magic bytes) and plain under a name with no hint.
func TestLoadGzipDetection(t *testing.T) {
	data, err := json.Marshal(synthetic())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, data, 0o644); err != nil {
		t.Fatal(err)
	}
	zipped := filepath.Join(dir, "zipped.json")
	f, err := os.Create(zipped)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, path := range []string{plain, zipped} {
		tok, err := Load(path)
		if err != nil {
			t.Fatalf("Load(%s): %v", path, err)
		}
		if got := tok.Decode(tok.Encode("abc", true), true); got != "abc" {
			t.Errorf("%s: round trip = %q", path, got)
		}
	}
}
