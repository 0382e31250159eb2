// Package tokenizer implements the Gemma tokenizer: the subset of Hugging
// Face tokenizer.json that Gemma checkpoints use (a BPE model with byte
// fallback, a " " → "▁" normaliser, added tokens matched on the raw text and
// a Replace/ByteFallback/Fuse decoder), reproducing the Rust `tokenizers`
// crate id for id.
//
// Supported components: model BPE (byte_fallback, fuse_unk, unk_token,
// ignore_merges; merges as "a b" strings or ["a", "b"] pairs); normalisers
// Replace (literal), Prepend and Sequence; the Split pre-tokeniser on a
// literal string; the TemplateProcessing post-processor; decoders Replace,
// ByteFallback, Fuse, Strip and Sequence. Anything else in a tokenizer.json
// (regex patterns, dropout, lstrip/rstrip added tokens, truncation, ...) is
// rejected by Parse with an error naming it, rather than silently producing
// different ids.
//
// FromVocab builds the same kind of tokenizer from a SentencePiece
// vocabulary as GGUF files store it (pieces, scores, token types).
package tokenizer

import "fmt"

// Tokenizer turns text into token ids and back. It is immutable after
// construction and safe for concurrent use.
type Tokenizer struct {
	model      *bpeModel
	added      *addedVocab
	normalizer []normalizeStep
	preTok     *splitPreTokenizer // nil: the whole normalised segment is one word
	dec        *decoder

	// Ids the post-processor wraps around a single sequence when
	// Encode is called with addSpecial (Gemma: prefix = [<bos>]).
	prefix, suffix []int

	// Id-indexed views over the model vocabulary and the added tokens,
	// added tokens taking precedence as in Hugging Face's id_to_token.
	pieces  []string
	present []bool
	special []bool

	bos, eos int
}

// VocabSize returns the highest token id plus one, over the model vocabulary
// and the added tokens. It is the row count a model's embedding must have at
// least.
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// TokenID returns the id of a piece, looking at the added tokens first and
// then the model vocabulary.
func (t *Tokenizer) TokenID(piece string) (int, bool) {
	if id, ok := t.added.idOf[piece]; ok {
		return id, true
	}
	if id, ok := t.model.vocab[piece]; ok {
		return id, true
	}
	return -1, false
}

// Piece returns the vocabulary string of id (for example "▁world" or
// "<0x0A>"), or "" when id names no token.
func (t *Tokenizer) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// BOS returns the id of "<bos>", or -1 when the vocabulary has none.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the id of "<eos>", or -1 when the vocabulary has none.
func (t *Tokenizer) EOS() int { return t.eos }

// IsSpecial reports whether id is a special added token (such as <bos>,
// <eos>, <start_of_turn>). Decode with skipSpecial drops exactly these.
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}

// Check returns an error naming the first id in ids that is not a token of
// this vocabulary, with its position. Decode and StreamDecoder.Add silently
// drop such ids (as Hugging Face's decode does); call Check first where an
// unknown id should be an error.
func (t *Tokenizer) Check(ids []int) error {
	for i, id := range ids {
		if !t.valid(id) {
			return fmt.Errorf("tokenizer: id %d at position %d is not in the vocabulary (size %d)", id, i, len(t.pieces))
		}
	}
	return nil
}

func (t *Tokenizer) valid(id int) bool {
	return id >= 0 && id < len(t.present) && t.present[id]
}

// finish fills the id-indexed tables once the model and added tokens are
// known. Shared by every constructor.
func (t *Tokenizer) finish() {
	size := len(t.model.pieces)
	for _, tok := range t.added.tokens {
		size = max(size, tok.id+1)
	}
	t.pieces = make([]string, size)
	t.present = make([]bool, size)
	t.special = make([]bool, size)
	for id, p := range t.model.pieces {
		if t.model.present[id] {
			t.pieces[id], t.present[id] = p, true
		}
	}
	for _, tok := range t.added.tokens {
		t.pieces[tok.id], t.present[tok.id] = tok.content, true
	}
	// Hugging Face decides "special" by content, not by id: any id whose
	// string is a special added token's content is skipped.
	for id, p := range t.pieces {
		t.special[id] = t.present[id] && t.added.specialContent[p]
	}
	t.bos, t.eos = -1, -1
	if id, ok := t.TokenID("<bos>"); ok {
		t.bos = id
	}
	if id, ok := t.TokenID("<eos>"); ok {
		t.eos = id
	}
}
