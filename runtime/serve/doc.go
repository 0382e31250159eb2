// Package serve is an HTTP server for one loaded model that speaks the
// OpenAI API, so that OpenAI client libraries can talk to it unchanged.
//
// Endpoints:
//
//	POST /v1/chat/completions   chat with the model's template (stream or not)
//	POST /v1/completions        raw completion of a prompt (BOS + prompt)
//	GET  /v1/models             the one served model
//	GET  /v1/models/{id}        the same, by id
//	GET  /healthz               200 {"status":"ok"} once the model is loaded,
//	                            503 {"status":"loading"} before, and
//	                            503 {"status":"shutting down"} while draining
//	GET  /metrics               Prometheus metrics (the server's own registry)
//
// Errors are OpenAI-style JSON, {"error":{"message","type","param","code"}},
// with the status that says what went wrong: 400 for a malformed request
// or a parameter out of range, 404 for an unknown model or path, 405 for a
// wrong method, 413 for a prompt longer than the compiled context, 429
// when the wait queue is full, 503 while the model loads or the server
// shuts down.
//
// Requests beyond OpenAI's parameters: top_k, min_p and repetition_penalty
// (see sample.Options). presence_penalty and frequency_penalty are
// rejected when non-zero, n when not 1. Omitted temperature and top_p take
// OpenAI's defaults (1 and 1) and an omitted seed is drawn at random, so
// pass temperature 0 for greedy, reproducible replies.
//
// # Slots and the queue
//
// The server runs at most Options.Slots generations at once. Each slot owns
// a model.Session, reused from one request to the next: the KV cache keeps
// the slot's last conversation, and a prompt that extends it (the next turn
// of a chat) runs only its new tokens. A request that finds every slot busy
// waits, first come first served, if fewer than Options.QueueDepth requests
// are already waiting, and gets 429 otherwise. Among free slots a request
// takes the one whose cached conversation shares the longest prefix with
// its prompt.
//
// Generation runs with the request's context: a client that disconnects
// stops its generation at the next token and frees its slot (or its place
// in the queue) at once.
//
// A Server can exist before its model: New, start serving (503 on the API
// endpoints, /healthz "loading"), then SetModel once model.Load returns.
package serve
