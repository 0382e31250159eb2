package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// gocoderVocabSpec turns the gocoder tokenizer.json into the form a GGUF
// stores: its pieces, a score per piece (minus the rank of the merge that
// makes it, as SentencePiece orders pieces), and token types.
func gocoderVocabSpec(t *testing.T) VocabSpec {
	t.Helper()
	hf := gocoderTokenizer(t)
	data, err := os.ReadFile(gocoderPath)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Model struct {
			Merges [][2]string `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	n := hf.VocabSize()
	v := VocabSpec{Tokens: make([]string, n), Scores: make([]float32, n), Types: make([]int32, n),
		BOS: hf.BOS(), EOS: hf.EOS(), UNK: 3, AddBOS: true}
	for id := range n {
		v.Tokens[id] = hf.Piece(id)
		switch _, isByte := byteTokenValue(v.Tokens[id]); {
		case hf.IsSpecial(id):
			v.Types[id] = TokenControl
		case isByte:
			v.Types[id] = TokenByte
		default:
			v.Types[id] = TokenNormal
		}
	}
	for rank, m := range f.Model.Merges {
		id, _ := hf.TokenID(m[0] + m[1])
		v.Scores[id] = -float32(rank)
	}
	return v
}

func TestFromVocabMatchesTokenizerJSON(t *testing.T) {
	hf := gocoderTokenizer(t)
	spm, err := FromVocab(gocoderVocabSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	sample, err := os.ReadFile(filepath.Join(sharedTestdata, "models", "gocoder", "valid_sample.go.txt"))
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{string(sample), englishProse(20_000), "func Max(x, y int) int {\n\treturn x\n}", "héllo 世界 <eos> 😀"}
	for _, c := range readJSONL[referenceCase](t, filepath.Join(sharedTestdata, "tokenizer", "cases.jsonl")) {
		texts = append(texts, c.Text)
	}
	for _, text := range texts {
		want := hf.Encode(text, true)
		if diff := cmp.Diff(want, spm.Encode(text, true)); diff != "" {
			t.Errorf("Encode(%.40q) differs from tokenizer.json (-json +vocab):\n%s", text, diff)
			continue
		}
		if got, want := spm.Decode(want, false), hf.Decode(want, false); got != want {
			t.Errorf("Decode differs: %q vs %q", got, want)
		}
	}
	if spm.VocabSize() != hf.VocabSize() || spm.BOS() != hf.BOS() || spm.EOS() != hf.EOS() {
		t.Errorf("VocabSize/BOS/EOS = %d/%d/%d, want %d/%d/%d", spm.VocabSize(), spm.BOS(), spm.EOS(), hf.VocabSize(), hf.BOS(), hf.EOS())
	}
}

func TestFromVocabErrors(t *testing.T) {
	if _, err := FromVocab(VocabSpec{}); err == nil {
		t.Error("FromVocab of an empty vocabulary succeeded")
	}
	if _, err := FromVocab(VocabSpec{Tokens: []string{"a"}, Scores: []float32{0}, Types: []int32{1, 1}, BOS: -1, EOS: -1, UNK: -1}); err == nil {
		t.Error("FromVocab with mismatched lengths succeeded")
	}
}
