package tokenizer

// Encode returns the token ids of text. With addSpecial the post-processor's
// tokens are added around it (for Gemma: <bos> in front, nothing after).
//
// As in Hugging Face's tokenizers, added tokens are cut out of the raw text
// first, so special-token names written in the text ("<start_of_turn>",
// "<bos>") become those tokens; the rest is normalised, pre-tokenised and
// run through the BPE model.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	out := make([]int, 0, len(text)/3+len(t.prefix)+len(t.suffix)+1)
	if addSpecial {
		out = append(out, t.prefix...)
	}
	var sc bpeScratch
	var words []string
	for _, seg := range t.added.raw.split(text, nil) {
		if seg.id >= 0 {
			out = append(out, seg.id)
			continue
		}
		normalized := normalize(t.normalizer, seg.text)
		for _, nseg := range t.added.normalized.split(normalized, nil) {
			if nseg.id >= 0 {
				out = append(out, nseg.id)
				continue
			}
			if t.preTok == nil {
				out = t.model.encodeWord(nseg.text, out, &sc)
				continue
			}
			words = t.preTok.split(nseg.text, words[:0])
			for _, w := range words {
				out = t.model.encodeWord(w, out, &sc)
			}
		}
	}
	if addSpecial {
		out = append(out, t.suffix...)
	}
	return out
}
