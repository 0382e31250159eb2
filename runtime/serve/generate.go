package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gemmac/gemmac/runtime/model"
)

// run generates the reply to prompt in a slot and sends it.
func (s *Server) run(w *recorder, r *http.Request, st *loaded, j *job, prompt []int, info *requestInfo) {
	info.promptTokens = len(prompt)
	if n := st.m.Engine.Context(); len(prompt) > n {
		writeError(w, contextError(j, &model.ContextError{Tokens: len(prompt), Context: n}))
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.baseCtx, cancel)()

	sl, err := st.slots.acquire(ctx, prompt)
	if err != nil {
		if errors.Is(err, errFull) {
			writeError(w, errQueueFull)
		} else {
			info.gone = true
		}
		return
	}
	defer st.slots.release(sl)
	waited := time.Since(info.start)
	s.metrics.queueWait.Observe(waited.Seconds())

	out := &output{w: w, j: j, created: time.Now().Unix()}
	if j.chat {
		out.id = newID("chatcmpl-")
	} else {
		out.id = newID("cmpl-")
	}
	stop := &stopper{stops: j.stops}
	dec := st.tok.NewDecoder(true)
	var writeErr error
	stopped := false
	send := func(text string) bool {
		text, hit := stop.add(text)
		if text != "" {
			if writeErr = out.text(text); writeErr != nil {
				return false
			}
		}
		stopped = hit
		return !hit
	}
	opts := j.opts
	opts.Batcher = st.batcher
	res, err := sl.sess.GenerateTokens(ctx, prompt, opts, func(id int) bool {
		if s.tokenHook != nil {
			s.tokenHook(ctx)
		}
		if text := dec.Add(id); text != "" {
			return send(text)
		}
		return true
	})
	if err == nil && writeErr == nil && !stopped {
		if tail := dec.Flush(); tail == "" || send(tail) {
			if rest := stop.flush(); rest != "" {
				writeErr = out.text(rest)
			}
		}
	}

	var generated []int
	if res != nil {
		generated = res.Tokens
		info.completionTokens = res.GeneratedTokens
		info.ttft = waited + res.Prefill
		s.metrics.promptTokens.Add(float64(res.PromptTokens))
		s.metrics.completionTokens.Add(float64(res.GeneratedTokens))
		s.metrics.ttft.Observe(info.ttft.Seconds())
		if res.GeneratedTokens > 1 && res.Decode > 0 {
			s.metrics.tokensPerSecond.Observe(float64(res.GeneratedTokens-1) / res.Decode.Seconds())
		}
	}
	switch {
	case ctx.Err() != nil || writeErr != nil:
		// The client went away (or Close): nobody reads a response. The
		// cache still holds a valid prefix of the conversation.
		sl.remember(prompt, generated)
		info.gone, info.finish = true, "cancelled"
		return
	case err != nil:
		// The cache may hold anything: start the next request afresh.
		sl.sess.Reset()
		sl.cached = sl.cached[:0]
		info.err = err.Error()
		var ce *model.ContextError
		if errors.As(err, &ce) {
			out.fail(contextError(j, ce))
		} else {
			out.fail(internalError(err))
		}
		return
	}
	sl.remember(prompt, generated)
	info.finish = res.FinishReason
	if stopped {
		info.finish = "stop"
	}
	out.finish(info.finish, usage{PromptTokens: res.PromptTokens, CompletionTokens: res.GeneratedTokens,
		TotalTokens: res.PromptTokens + res.GeneratedTokens})
}

func contextError(j *job, err *model.ContextError) *apiError {
	param := "prompt"
	if j.chat {
		param = "messages"
	}
	return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Param: param,
		Code: "context_length_exceeded",
		Message: fmt.Sprintf("the prompt is %d tokens; this model's context holds %d tokens (prompt and reply)",
			err.Tokens, err.Context)}
}

// output sends a reply: one JSON object, or server-sent events that start
// with the first text.
type output struct {
	w       *recorder
	j       *job
	id      string
	created int64
	started bool
	reply   strings.Builder // the whole reply, when not streaming
}

func (o *output) text(t string) error {
	if !o.j.stream {
		o.reply.WriteString(t)
		return nil
	}
	if err := o.start(); err != nil {
		return err
	}
	if o.j.chat {
		return o.event(o.chatChunk(delta{Content: &t}, nil))
	}
	return o.event(o.textChunk(t, nil))
}

// start sends the headers of an event stream, and a chat's role chunk.
func (o *output) start() error {
	if o.started {
		return nil
	}
	o.started = true
	h := o.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	o.w.WriteHeader(http.StatusOK)
	if o.j.chat {
		empty := ""
		return o.event(o.chatChunk(delta{Role: "assistant", Content: &empty}, nil))
	}
	return nil
}

func (o *output) chatChunk(d delta, finish *string) chatChunk {
	return chatChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.j.model,
		Choices: []chatChunkChoice{{Delta: d, FinishReason: finish}}}
}

func (o *output) textChunk(t string, finish *string) textCompletion {
	return textCompletion{ID: o.id, Object: "text_completion", Created: o.created, Model: o.j.model,
		Choices: []textChoice{{Text: t, FinishReason: finish}}}
}

// event sends one server-sent event and flushes it.
func (o *output) event(v any) error {
	data, err := marshal(v)
	if err != nil {
		return err
	}
	return o.raw(append(append([]byte("data: "), data...), '\n', '\n'))
}

func (o *output) raw(b []byte) error {
	if _, err := o.w.Write(b); err != nil {
		return err
	}
	return o.w.FlushError()
}

// finish sends the end of the reply.
func (o *output) finish(reason string, u usage) error {
	if !o.j.stream {
		if o.j.chat {
			writeJSON(o.w, http.StatusOK, chatCompletion{ID: o.id, Object: "chat.completion", Created: o.created,
				Model: o.j.model, Usage: u, Choices: []chatChoice{{
					Message:      assistantOutput{Role: "assistant", Content: o.reply.String()},
					FinishReason: reason}}})
		} else {
			writeJSON(o.w, http.StatusOK, textCompletion{ID: o.id, Object: "text_completion", Created: o.created,
				Model: o.j.model, Usage: &u, Choices: []textChoice{{Text: o.reply.String(), FinishReason: &reason}}})
		}
		return nil
	}
	if err := o.start(); err != nil {
		return err
	}
	var err error
	if o.j.chat {
		err = o.event(o.chatChunk(delta{}, &reason))
	} else {
		err = o.event(o.textChunk("", &reason))
	}
	if err != nil {
		return err
	}
	if o.j.includeUsage {
		if o.j.chat {
			err = o.event(chatChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.j.model,
				Choices: []chatChunkChoice{}, Usage: &u})
		} else {
			err = o.event(textCompletion{ID: o.id, Object: "text_completion", Created: o.created, Model: o.j.model,
				Choices: []textChoice{}, Usage: &u})
		}
		if err != nil {
			return err
		}
	}
	return o.raw([]byte("data: [DONE]\n\n"))
}

// fail reports an error: as the response before anything was sent, else as
// an error event that ends the stream (OpenAI's clients raise it).
func (o *output) fail(e *apiError) {
	if !o.started {
		writeError(o.w, e)
		return
	}
	o.event(e.body())
}
