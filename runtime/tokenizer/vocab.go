package tokenizer

import (
	"sort"
	"unicode/utf8"
)

// Token types as GGUF stores them in tokenizer.ggml.token_type (llama.cpp's
// llama_token_type).
const (
	TokenNormal      int32 = 1
	TokenUnknown     int32 = 2
	TokenControl     int32 = 3
	TokenUserDefined int32 = 4
	TokenUnused      int32 = 5
	TokenByte        int32 = 6
)

// VocabSpec is a SentencePiece vocabulary as a GGUF file with
// tokenizer.ggml.model = "llama" stores it: pieces, scores and token types,
// without merges.
type VocabSpec struct {
	Tokens []string
	Scores []float32
	Types  []int32

	BOS, EOS, UNK  int // -1 where absent
	AddBOS, AddEOS bool
	// AddSpacePrefix prepends "▁" to the text (and strips the leading
	// space when decoding). Gemma's GGUFs set it to false.
	AddSpacePrefix bool
}

// FromVocab builds a Tokenizer from a SentencePiece-BPE vocabulary. The
// merge priority comes from the scores, as in SentencePiece and llama.cpp:
// two adjacent symbols may merge when their concatenation is a normal piece,
// the highest-scoring such piece first, leftmost on ties. This is the rule
// Hugging Face's converter turns into Gemma's merge list, so for Gemma the
// result matches the tokenizer.json.
//
// Control, user-defined and unused pieces are matched in the raw text like
// tokenizer.json's added tokens; control and unknown pieces are special.
// Pieces of type byte provide byte fallback.
func FromVocab(v VocabSpec) (*Tokenizer, error) {
	n := len(v.Tokens)
	if n == 0 {
		return nil, errorf("vocab: no tokens")
	}
	if len(v.Scores) != n || len(v.Types) != n {
		return nil, errorf("vocab: %d tokens, %d scores, %d types", n, len(v.Scores), len(v.Types))
	}
	for _, id := range []int{v.BOS, v.EOS, v.UNK} {
		if id >= n {
			return nil, errorf("vocab: special id %d out of range (%d tokens)", id, n)
		}
	}
	vocab := make(map[string]int, n)
	byteFallback := false
	var added []addedToken
	for id, piece := range v.Tokens {
		vocab[piece] = id
		switch v.Types[id] {
		case TokenByte:
			byteFallback = true
		case TokenControl, TokenUserDefined, TokenUnused:
			added = append(added, addedToken{id: id, content: piece, special: v.Types[id] == TokenControl})
		case TokenUnknown:
			added = append(added, addedToken{id: id, content: piece, special: true})
		}
	}
	unk := ""
	if v.UNK >= 0 {
		unk = v.Tokens[v.UNK]
	}
	model, err := newBPEModel(vocab, byteFallback, true, false, unk)
	if err != nil {
		return nil, err
	}

	// Rank the normal pieces by score, best first; equal scores share a
	// rank so that the position decides, as in SentencePiece.
	ids := make([]int, 0, n)
	for id, piece := range v.Tokens {
		if v.Types[id] == TokenNormal && vocab[piece] == id && utf8.RuneCountInString(piece) > 1 {
			ids = append(ids, id)
		}
	}
	sort.SliceStable(ids, func(i, j int) bool { return v.Scores[ids[i]] > v.Scores[ids[j]] })
	rank := 0
	for i, id := range ids {
		if i > 0 && v.Scores[id] != v.Scores[ids[i-1]] {
			rank++
		}
		piece := v.Tokens[id]
		_, first := utf8.DecodeRuneInString(piece)
		for split := first; split < len(piece); {
			left, right := piece[:split], piece[split:]
			if _, ok := vocab[left]; ok {
				if _, ok := vocab[right]; ok {
					if err := model.addMerge(rank, []byte(left), []byte(right)); err != nil {
						return nil, err
					}
				}
			}
			_, size := utf8.DecodeRuneInString(right)
			split += size
		}
	}
	model.scratch = nil

	t := &Tokenizer{
		model:      model,
		added:      newAddedVocab(added),
		normalizer: []normalizeStep{{pattern: " ", content: "▁"}},
		dec: &decoder{perToken: []decodeStep{
			{kind: decodeReplace, pattern: "▁", content: " "},
			{kind: decodeByteFallback},
		}},
	}
	if v.AddSpacePrefix {
		t.normalizer = append([]normalizeStep{{prepend: true, content: "▁"}}, t.normalizer...)
		t.dec.fused = []decodeStep{{kind: decodeStrip, stripRune: ' ', start: 1}}
	}
	if v.AddBOS && v.BOS >= 0 {
		t.prefix = []int{v.BOS}
	}
	if v.AddEOS && v.EOS >= 0 {
		t.suffix = []int{v.EOS}
	}
	t.finish()
	// "<bos>"/"<eos>" by name may be absent from a SentencePiece vocabulary
	// ("<s>", "</s>"); the GGUF ids are authoritative.
	if v.BOS >= 0 {
		t.bos = v.BOS
	}
	if v.EOS >= 0 {
		t.eos = v.EOS
	}
	return t, nil
}
