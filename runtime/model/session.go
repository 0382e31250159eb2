package model

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/gemmac/gemmac/runtime/chat"
	"github.com/gemmac/gemmac/runtime/sample"
)

// Session is one conversation: a KV cache and the tokens it holds.
type Session struct {
	m     *Model
	state State
	// fed are the tokens whose keys and values are in the cache, in order.
	fed []int
	// last is the result of the latest generation.
	last *Result
	// batchLogits receives the session's logits from batched steps
	// (Model.StepBatch).
	batchLogits []float32
}

// Last reports how the latest generation ended, once its iterator is done.
func (s *Session) Last() *Result { return s.last }

// NewSession allocates a KV cache for one conversation.
func (m *Model) NewSession() (*Session, error) {
	st, err := m.Engine.NewState()
	if err != nil {
		return nil, err
	}
	return &Session{m: m, state: st}, nil
}

// Reset forgets the conversation; the cache is reused.
func (s *Session) Reset() { s.fed = s.fed[:0] }

// Position is the number of tokens in the cache.
func (s *Session) Position() int { return len(s.fed) }

// Logits runs tokens from an empty cache and returns one row of logits per
// token: the first prefill tokens as one prefill, the rest one at a time
// through the decode step, so both paths can be compared.
func (s *Session) Logits(tokens []int, prefill int) ([][]float32, error) {
	if err := s.check(tokens, 0); err != nil {
		return nil, err
	}
	prefill = max(0, min(prefill, len(tokens)))
	s.Reset()
	var rows [][]float32
	vocab := s.m.Config.VocabSize
	run := func(chunk []int) error {
		out, err := s.forward(chunk, true)
		for i := range chunk {
			if err == nil {
				rows = append(rows, out[i*vocab:(i+1)*vocab])
			}
		}
		return err
	}
	if prefill > 0 {
		if err := run(tokens[:prefill]); err != nil {
			return nil, err
		}
	}
	for i := prefill; i < len(tokens); i++ {
		if err := run(tokens[i : i+1]); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// check validates token ids and length before any engine sees them.
func (s *Session) check(tokens []int, pos int) error {
	if len(tokens) == 0 {
		return fmt.Errorf("no tokens")
	}
	if pos+len(tokens) > s.m.Engine.Context() {
		return &ContextError{Tokens: pos + len(tokens), Context: s.m.Engine.Context()}
	}
	for i, t := range tokens {
		if t < 0 || t >= s.m.Config.VocabSize {
			return fmt.Errorf("token id %d at index %d is outside the vocabulary of %d", t, i, s.m.Config.VocabSize)
		}
	}
	return nil
}

// ContextError says a sequence does not fit the KV cache.
type ContextError struct{ Tokens, Context int }

func (e *ContextError) Error() string {
	return fmt.Sprintf("%d tokens do not fit the context of %d tokens (raise --max-seq or shorten the prompt)", e.Tokens, e.Context)
}

// forward feeds tokens after those already in the cache.
func (s *Session) forward(tokens []int, all bool) ([]float32, error) {
	ids := make([]int32, len(tokens))
	for i, t := range tokens {
		ids[i] = int32(t)
	}
	out, err := s.state.Forward(ids, len(s.fed), all)
	if err != nil {
		return nil, err
	}
	s.fed = append(s.fed, tokens...)
	return out, nil
}

// prime brings the cache to hold prompt[:len(prompt)-1] and returns the
// logits after the last prompt token. A prompt that extends what the cache
// holds only runs the new tokens; any other prompt starts over, because
// rewinding a sliding-window ring by more than one slot would lose keys.
func (s *Session) prime(prompt []int) ([]float32, error) {
	if err := s.check(prompt, 0); err != nil {
		return nil, err
	}
	keep := 0
	for keep < len(s.fed) && keep < len(prompt)-1 && s.fed[keep] == prompt[keep] {
		keep++
	}
	if len(s.fed)-keep > 1 {
		keep = 0
	}
	s.fed = s.fed[:keep]
	return s.forward(prompt[keep:], false)
}

// GenerateOptions control one reply.
type GenerateOptions struct {
	sample.Options
	// MaxTokens caps the reply; 0 means until a stop token or the context
	// is full.
	MaxTokens int
	// Batcher, when set, runs the decode steps together with those of the
	// other generations that use the same batcher (a server's concurrent
	// requests). It must be the batcher of the session's model.
	Batcher *Batcher
}

// Result describes a finished generation.
type Result struct {
	PromptTokens, GeneratedTokens int
	// FinishReason is "stop" (a stop token) or "length" (MaxTokens or the
	// context ran out).
	FinishReason string
	Prefill      time.Duration // time to the first generated token
	Decode       time.Duration // time for the rest
	Tokens       []int
}

// Generate continues prompt (token ids, BOS included) and yields the text as
// it becomes complete UTF-8. After the loop, Last reports how it ended.
func (s *Session) Generate(ctx context.Context, prompt []int, opts GenerateOptions) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		tok, err := s.m.NeedTokenizer()
		if err != nil {
			yield("", err)
			return
		}
		dec := tok.NewDecoder(true)
		stopped := false // the caller left the loop: yield no more
		_, err = s.generate(ctx, prompt, opts, func(id int) bool {
			if text := dec.Add(id); text != "" {
				stopped = !yield(text, nil)
			}
			return !stopped
		})
		if stopped {
			return
		}
		if err != nil {
			yield("", err)
			return
		}
		if text := dec.Flush(); text != "" {
			yield(text, nil)
		}
	}
}

// GenerateTokens is Generate without text: emit receives each generated id
// (stop tokens excluded) and may return false to stop early.
func (s *Session) GenerateTokens(ctx context.Context, prompt []int, opts GenerateOptions, emit func(id int) bool) (*Result, error) {
	return s.generate(ctx, prompt, opts, emit)
}

func (s *Session) generate(ctx context.Context, prompt []int, opts GenerateOptions, emit func(int) bool) (*Result, error) {
	sampler, err := sample.New(opts.Options)
	if err != nil {
		return nil, err
	}
	if opts.MaxTokens < 0 {
		return nil, fmt.Errorf("max tokens %d is negative", opts.MaxTokens)
	}
	if opts.Batcher != nil && opts.Batcher.m != s.m {
		return nil, fmt.Errorf("the batcher belongs to another model")
	}
	start := time.Now()
	logits, err := s.prime(prompt)
	if err != nil {
		return nil, err
	}
	step := func(id int) ([]float32, error) { return s.forward([]int{id}, false) }
	if b := opts.Batcher; b != nil {
		defer b.join()()
		step = func(id int) ([]float32, error) { return b.step(ctx, s, id) }
	}
	res := &Result{PromptTokens: len(prompt), FinishReason: "length"}
	s.last = res
	history := slices.Clone(prompt)
	first := time.Time{}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		id := sampler.Sample(logits, history)
		if first.IsZero() {
			first = time.Now()
			res.Prefill = first.Sub(start)
		}
		if slices.Contains(s.m.EOS, id) {
			res.FinishReason = "stop"
			break
		}
		res.Tokens = append(res.Tokens, id)
		res.GeneratedTokens++
		history = append(history, id)
		if !emit(id) {
			break
		}
		if res.GeneratedTokens == opts.MaxTokens || len(s.fed)+1 >= s.m.Engine.Context() {
			break
		}
		if logits, err = step(id); err != nil {
			return res, err
		}
	}
	res.Decode = time.Since(first)
	return res, nil
}

// Chat renders the conversation with the model's chat template (with the
// turn opener for the model's reply), and generates the reply.
func (s *Session) Chat(ctx context.Context, msgs []chat.Message, opts GenerateOptions) iter.Seq2[string, error] {
	prompt, err := s.m.ChatPrompt(msgs)
	if err != nil {
		return func(yield func(string, error) bool) { yield("", err) }
	}
	return s.Generate(ctx, prompt, opts)
}

// ChatPrompt renders msgs with the model's template and tokenizes the text.
// The template writes <bos> itself, so no BOS is added.
func (m *Model) ChatPrompt(msgs []chat.Message) ([]int, error) {
	tok, err := m.NeedTokenizer()
	if err != nil {
		return nil, err
	}
	var text string
	if m.jinja != nil {
		text, err = m.jinja.Render(msgs, true, nil)
	} else {
		text, err = chat.Render(m.Template, msgs, true)
	}
	if err != nil {
		return nil, err
	}
	return tok.Encode(text, false), nil
}

// Prefill runs prompt from an empty cache and returns the last token's logits.
func (s *Session) Prefill(prompt []int) ([]float32, error) {
	if err := s.check(prompt, 0); err != nil {
		return nil, err
	}
	s.Reset()
	return s.forward(prompt, false)
}

// Step feeds one token after those in the cache and returns its logits.
func (s *Session) Step(id int) ([]float32, error) {
	if err := s.check([]int{id}, len(s.fed)); err != nil {
		return nil, err
	}
	return s.forward([]int{id}, false)
}

// CacheBytes is the memory the session's KV cache holds.
func (s *Session) CacheBytes() int64 { return s.state.Bytes() }
