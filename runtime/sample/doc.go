// Package sample picks the next token from a model's logits.
//
// A Sampler applies the logits processors of Hugging Face transformers'
// generate in its order (repetition penalty, temperature, top-k, top-p,
// min-p) and then draws from the remaining distribution with a seeded
// PCG generator, so a given seed and call sequence always yields the same
// tokens. Temperature 0 selects greedy decoding.
//
// It is written for large vocabularies (Gemma's 256000 tokens): the
// caller's logits are never modified (the repetition penalty works on a
// copy in a scratch buffer), buffers are reused so that steady-state calls
// do not allocate, top-k uses partial selection instead of a full sort,
// and top-p sorts only the candidates that can be in the nucleus.
package sample
