// Package chat renders conversations into the prompt text that Gemma
// checkpoints were fine-tuned on, without a Jinja engine.
//
// Three built-in renderers reproduce the chat templates shipped with the
// supported checkpoints byte for byte:
//
//   - "gemma2": the template of google/gemma-2-*-it. A leading system
//     message is an error.
//   - "systemgemma2": a Gemma-2 variant that writes a leading system
//     message verbatim between <bos> and the first turn.
//   - "gemma3": the template of google/gemma-3-*-it. A leading system
//     message is folded into the first user turn.
//
// The reference outputs were produced with @huggingface/jinja (the engine
// used by transformers.js and most JavaScript front ends). Where it differs
// from Python's jinja2, this package follows @huggingface/jinja; the only
// such difference that matters here is which characters the trim filter
// strips (see trimSpace).
//
// Detect and FromTokenizerConfig pick a renderer for a checkpoint from the
// chat_template source in its tokenizer_config.json.
package chat
