// Package chat renders conversations into the prompt text that Gemma
// checkpoints were fine-tuned on; the built-in renderers need no Jinja
// engine.
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
//
// Alternatively, a checkpoint's own chat_template can be rendered by a
// Jinja engine (github.com/ardanlabs/jinja): ParseTemplate or
// TemplateFromTokenizerConfig compile it, and Template.Render formats a
// conversation as Hugging Face's apply_chat_template does, with the
// template's raise_exception returned as a *TemplateError. This path
// handles templates that Detect does not recognise; for the three built-in
// templates it reproduces every reference output, errors included (so,
// unlike the "systemgemma2" renderer, the Jinja source rejects a
// conversation that starts with the user). Message content is data there
// too: Jinja syntax inside a message is never evaluated.
package chat
