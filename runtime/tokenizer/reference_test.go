package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// The reference files live in the shared test data next to the project
// root (../shared from /work/main); CI has the same layout.
const sharedTestdata = "../../../shared/testdata"

var (
	gemmaPath   = filepath.Join(sharedTestdata, "tokenizer", "gemma3-tokenizer.json.gz")
	gocoderPath = filepath.Join(sharedTestdata, "models", "gocoder", "tokenizer.json")
)

func requireFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("reference data missing: %v (the shared test data must be at %s relative to the package)", err, sharedTestdata)
	}
}

var gemma struct {
	once sync.Once
	tok  *Tokenizer
	err  error
	load time.Duration
}

// gemmaTokenizer loads the 262k-piece Gemma-3 tokenizer once per test binary.
func gemmaTokenizer(t testing.TB) *Tokenizer {
	t.Helper()
	requireFile(t, gemmaPath)
	gemma.once.Do(func() {
		start := time.Now()
		gemma.tok, gemma.err = Load(gemmaPath)
		gemma.load = time.Since(start)
	})
	if gemma.err != nil {
		t.Fatalf("Load(%s): %v", gemmaPath, gemma.err)
	}
	return gemma.tok
}

func gocoderTokenizer(t testing.TB) *Tokenizer {
	t.Helper()
	requireFile(t, gocoderPath)
	tok, err := Load(gocoderPath)
	if err != nil {
		t.Fatalf("Load(%s): %v", gocoderPath, err)
	}
	return tok
}

// readJSONL decodes every line of a JSON-lines file into a T.
func readJSONL[T any](t *testing.T, path string) []T {
	t.Helper()
	requireFile(t, path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for line := 1; sc.Scan(); line++ {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type referenceCase struct {
	Name               string   `json:"name"`
	Category           string   `json:"category"`
	Text               string   `json:"text"`
	IDsWithSpecial     []int    `json:"ids_with_special"`
	IDsNoSpecial       []int    `json:"ids_no_special"`
	Pieces             []string `json:"pieces"`
	Decoded            string   `json:"decoded"`
	DecodedSkipSpecial string   `json:"decoded_skip_special"`
}

// streamDecode decodes ids one at a time and checks that every chunk is
// valid UTF-8.
func streamDecode(t *testing.T, tok *Tokenizer, ids []int, skipSpecial bool) string {
	t.Helper()
	d := tok.NewDecoder(skipSpecial)
	var all string
	for i, id := range ids {
		chunk := d.Add(id)
		if !utf8.ValidString(chunk) {
			t.Errorf("stream chunk after id %d (position %d) is not valid UTF-8: %q", id, i, chunk)
		}
		all += chunk
	}
	chunk := d.Flush()
	if !utf8.ValidString(chunk) {
		t.Errorf("stream Flush chunk is not valid UTF-8: %q", chunk)
	}
	return all + chunk
}

func TestGemmaReferenceCases(t *testing.T) {
	tok := gemmaTokenizer(t)
	cases := readJSONL[referenceCase](t, filepath.Join(sharedTestdata, "tokenizer", "cases.jsonl"))
	if len(cases) != 228 {
		t.Errorf("cases.jsonl has %d cases, want 228", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if diff := cmp.Diff(c.IDsWithSpecial, tok.Encode(c.Text, true)); diff != "" {
				t.Errorf("Encode(%q, true) mismatch (-want +got):\n%s", c.Text, diff)
			}
			if diff := cmp.Diff(c.IDsNoSpecial, tok.Encode(c.Text, false)); diff != "" {
				t.Errorf("Encode(%q, false) mismatch (-want +got):\n%s", c.Text, diff)
			}
			pieces := []string{}
			for _, id := range c.IDsNoSpecial {
				pieces = append(pieces, tok.Piece(id))
			}
			if diff := cmp.Diff(c.Pieces, pieces); diff != "" {
				t.Errorf("pieces mismatch (-want +got):\n%s", diff)
			}
			if got := tok.Decode(c.IDsWithSpecial, false); got != c.Decoded {
				t.Errorf("Decode(skipSpecial=false) = %q, want %q", got, c.Decoded)
			}
			if got := tok.Decode(c.IDsWithSpecial, true); got != c.DecodedSkipSpecial {
				t.Errorf("Decode(skipSpecial=true) = %q, want %q", got, c.DecodedSkipSpecial)
			}
			if got := streamDecode(t, tok, c.IDsWithSpecial, false); got != c.Decoded {
				t.Errorf("stream decode = %q, want %q", got, c.Decoded)
			}
			if got := streamDecode(t, tok, c.IDsWithSpecial, true); got != c.DecodedSkipSpecial {
				t.Errorf("stream decode (skipSpecial) = %q, want %q", got, c.DecodedSkipSpecial)
			}
			if err := tok.Check(c.IDsWithSpecial); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestGemmaChatTemplates(t *testing.T) {
	tok := gemmaTokenizer(t)
	type templateCase struct {
		Name   string  `json:"name"`
		Output *string `json:"output"`
		Error  *string `json:"error"`
		IDs    []int   `json:"ids"`
	}
	lines := readJSONL[templateCase](t, filepath.Join(sharedTestdata, "tokenizer", "templates.jsonl"))
	checked := 0
	for _, c := range lines {
		if c.Output == nil || c.IDs == nil {
			continue
		}
		checked++
		t.Run(c.Name, func(t *testing.T) {
			// The rendered text already holds "<bos>", which becomes id 2.
			if diff := cmp.Diff(c.IDs, tok.Encode(*c.Output, false)); diff != "" {
				t.Errorf("Encode(%q, false) mismatch (-want +got):\n%s", *c.Output, diff)
			}
			if got := tok.Decode(c.IDs, false); got != *c.Output {
				t.Errorf("Decode = %q, want %q", got, *c.Output)
			}
		})
	}
	if checked == 0 {
		t.Fatal("templates.jsonl has no lines with output and ids")
	}
}

func TestGemmaVocabulary(t *testing.T) {
	tok := gemmaTokenizer(t)
	t.Logf("Load took %v", gemma.load)
	if got := tok.VocabSize(); got != 262145 {
		t.Errorf("VocabSize = %d, want 262145 (262144 pieces + <image_soft_token>)", got)
	}
	if tok.BOS() != 2 || tok.EOS() != 1 {
		t.Errorf("BOS, EOS = %d, %d; want 2, 1", tok.BOS(), tok.EOS())
	}
	for piece, want := range map[string]int{"<bos>": 2, "<start_of_turn>": 105, "<end_of_turn>": 106, "<image_soft_token>": 262144, "▁world": 1902, "<0x0A>": -1} {
		id, ok := tok.TokenID(piece)
		if want < 0 {
			continue // only checked for existence below
		}
		if !ok || id != want {
			t.Errorf("TokenID(%q) = %d, %v; want %d", piece, id, ok, want)
		}
		if got := tok.Piece(want); got != piece {
			t.Errorf("Piece(%d) = %q, want %q", want, got, piece)
		}
	}
	if !tok.IsSpecial(2) || !tok.IsSpecial(106) || tok.IsSpecial(1902) || tok.IsSpecial(-1) || tok.IsSpecial(1<<30) {
		t.Error("IsSpecial is wrong for <bos>, <end_of_turn>, ▁world or out-of-range ids")
	}
	if tok.Piece(-1) != "" || tok.Piece(tok.VocabSize()) != "" {
		t.Error("Piece of an out-of-range id is not empty")
	}
}

type gocoderGreedy struct {
	Prompt    string `json:"prompt"`
	PromptIDs []int  `json:"prompt_ids"`
	Greedy    []int  `json:"greedy_ids"`
}

func TestGocoderPrompt(t *testing.T) {
	tok := gocoderTokenizer(t)
	path := filepath.Join(sharedTestdata, "models", "refs", "gocoder.greedy.json")
	requireFile(t, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ref gocoderGreedy
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ref.PromptIDs, tok.Encode(ref.Prompt, true)); diff != "" {
		t.Errorf("Encode(prompt, true) mismatch (-want +got):\n%s", diff)
	}
	if got := tok.Decode(ref.PromptIDs, true); got != ref.Prompt {
		t.Errorf("Decode(prompt ids) = %q, want %q", got, ref.Prompt)
	}
	all := append(append([]int(nil), ref.PromptIDs...), ref.Greedy...)
	if got, want := streamDecode(t, tok, all, false), tok.Decode(all, false); got != want {
		t.Errorf("stream decode of prompt+greedy = %q, want %q", got, want)
	}
	if tok.VocabSize() != 4096 {
		t.Errorf("VocabSize = %d, want 4096", tok.VocabSize())
	}
}

func TestGocoderRoundTrip(t *testing.T) {
	tok := gocoderTokenizer(t)
	path := filepath.Join(sharedTestdata, "models", "gocoder", "valid_sample.go.txt")
	requireFile(t, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	ids := tok.Encode(text, false)
	if got := tok.Decode(ids, false); got != text {
		t.Errorf("Decode(Encode(valid_sample)) differs from the input (%d vs %d bytes)", len(got), len(text))
	}
	if got := streamDecode(t, tok, ids, false); got != text {
		t.Errorf("stream decode of valid_sample differs from the input")
	}
	t.Logf("valid_sample.go.txt: %d bytes → %d tokens", len(text), len(ids))
}

// TestRunSplittingIsExact checks that merging each run between unjoinable
// boundaries on its own (see joinTable) gives the same ids as one merge
// loop over the whole word, on long words of code, prose and every case.
func TestRunSplittingIsExact(t *testing.T) {
	sample, err := os.ReadFile(filepath.Join(sharedTestdata, "models", "gocoder", "valid_sample.go.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var cases string
	for _, c := range readJSONL[referenceCase](t, filepath.Join(sharedTestdata, "tokenizer", "cases.jsonl")) {
		cases += c.Text + " "
	}
	texts := map[string]string{"valid_sample": string(sample), "prose": englishProse(200_000), "cases": cases}
	for name, tok := range map[string]*Tokenizer{"gemma3": gemmaTokenizer(t), "gocoder": gocoderTokenizer(t)} {
		for textName, text := range texts {
			word := normalize(tok.normalizer, text)
			got := tok.model.encodeWord(word, nil, &bpeScratch{})
			syms := tok.model.initialSymbols(word, nil)
			want := tok.model.mergeRun(syms, nil, &bpeScratch{})
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s/%s: split merge differs from whole-word merge (-want +got):\n%s", name, textName, diff)
			}
		}
	}
}
