package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/chat"
	"github.com/gemmac/gemmac/runtime/tokenizer"
)

// Options choose how a model is loaded.
type Options struct {
	// Context is the longest sequence a session holds (prompt and reply);
	// 0 means min(max_position_embeddings, 4096).
	Context int
	// Threads is the number of CPU threads; 0 means one per CPU.
	Threads int
	// Template names the built-in chat template ("gemma2", "systemgemma2",
	// "gemma3"), or "jinja" for the checkpoint's own chat_template rendered
	// by a Jinja engine. "" detects which built-in the checkpoint's template
	// is (the fast path), and renders it with Jinja when it is none of them.
	Template string
	// Tokenizer is a tokenizer.json to use instead of the one in the model
	// directory.
	Tokenizer string
	// Engine, when set, runs the forward pass instead of the interpreter;
	// compiled binaries pass their own.
	Engine func(*frontend.Checkpoint, Options) (Engine, error)
	// Convert re-encodes the weights at load (e.g. to q8_0) before the
	// engine sees them; the zero value keeps them as stored.
	Convert frontend.Conversion
	// KVDType is the KV cache's element type: f32 (0) or bf16, which
	// rounds keys and values to bfloat16 and halves the cache. A compiled
	// binary has its own and refuses another.
	KVDType ir.DType
	// Batch, above 1, asks for a batched decode step of up to Batch
	// sequences (a BatchEngine): the interpreter and the in-process
	// compiler build one; a built binary has the batch it was built with.
	Batch int
	// WeightsFile is the packed weights file of a program whose weights
	// were converted at build time (gemmac build --dtype); "" looks for it
	// beside the running executable.
	WeightsFile string
}

// Model is a loaded checkpoint with its engine, tokenizer and chat template.
type Model struct {
	Config    *frontend.Config
	Tokenizer *tokenizer.Tokenizer // nil when the directory has none
	// Template is the built-in chat template in use, or "jinja" when the
	// checkpoint's own chat_template is rendered (see Options.Template).
	Template   string
	jinja      *chat.Template
	EOS        []int // generation stops at any of these ids
	Engine     Engine
	checkpoint *frontend.Checkpoint
	// converted holds the weights the engine runs when they were converted
	// at load (Options.Convert); nil otherwise.
	converted *frontend.Checkpoint
	// weightBytes is what a decode step reads of the weights the engine was
	// given (converted, if asked).
	weightBytes int64
}

// Load opens the checkpoint in dir and prepares an engine for it.
func Load(dir string, opts Options) (*Model, error) {
	ckpt, err := frontend.Open(dir)
	if err != nil {
		return nil, err
	}
	m, err := load(dir, ckpt, opts)
	if err != nil {
		ckpt.Close()
		return nil, err
	}
	return m, nil
}

func load(dir string, ckpt *frontend.Checkpoint, opts Options) (*Model, error) {
	cfg := ckpt.Config
	if opts.Context == 0 {
		opts.Context = min(cfg.MaxPositionEmbeddings, 4096)
	}
	if opts.Batch < 0 {
		return nil, fmt.Errorf("batch of %d sequences is negative", opts.Batch)
	}
	if opts.Context < 1 || opts.Context > cfg.MaxPositionEmbeddings {
		return nil, fmt.Errorf("context of %d tokens is outside 1..%d (max_position_embeddings)", opts.Context, cfg.MaxPositionEmbeddings)
	}
	m := &Model{Config: cfg, checkpoint: ckpt}
	var err error

	// Side files live beside the weights: in the directory, or beside a
	// .gguf file, which also carries its own tokenizer and template.
	dir = ckpt.Dir
	tokPath := opts.Tokenizer
	if tokPath == "" {
		tokPath = filepath.Join(dir, "tokenizer.json")
	}
	switch tok, err := tokenizer.Load(tokPath); {
	case err == nil:
		m.Tokenizer = tok
	case opts.Tokenizer != "" || !errors.Is(err, fs.ErrNotExist):
		return nil, err
	default:
		m.Tokenizer = ckpt.Tokenizer
	}
	if m.Tokenizer != nil && m.Tokenizer.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("tokenizer %s has %d tokens, more than the model's vocab_size %d", tokPath, m.Tokenizer.VocabSize(), cfg.VocabSize)
	}

	if err := m.chooseTemplate(opts.Template, dir, ckpt.ChatTemplate); err != nil {
		return nil, err
	}
	if m.EOS, err = stopIDs(dir, cfg, m.Tokenizer); err != nil {
		return nil, err
	}

	if !opts.Convert.IsZero() {
		// The converted checkpoint owns its copy of every tensor, which
		// the engine reads (the compiled one in place): it closes after
		// the engine, before m.checkpoint.
		if ckpt, err = frontend.Convert(ckpt, opts.Convert); err != nil {
			return nil, err
		}
		m.converted = ckpt
	}
	m.weightBytes = weightBytesPerToken(cfg, ckpt.Weights)
	newEngine := opts.Engine
	if newEngine == nil {
		newEngine = func(c *frontend.Checkpoint, o Options) (Engine, error) {
			e, err := newInterpEngine(c, o.Context, o.Threads, o.KVDType)
			if err != nil || o.Batch < 2 {
				return e, err
			}
			return e, e.EnableBatch(o.Batch)
		}
	}
	m.Engine, err = newEngine(ckpt, opts)
	if c, ok := m.Engine.(WeightCopier); m.converted != nil && (err != nil || ok && c.CopiesWeights()) {
		m.converted.Close()
		m.converted = nil
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// stopIDs gathers every end-of-sequence id: config.json's and
// generation_config.json's eos_token_id, and the tokenizer's <eos> and
// <end_of_turn> (Gemma-2 instruction models end a turn with the latter: 107).
func stopIDs(dir string, cfg *frontend.Config, tok *tokenizer.Tokenizer) ([]int, error) {
	ids := append([]int(nil), cfg.EOSTokenID...)
	data, err := os.ReadFile(filepath.Join(dir, "generation_config.json"))
	switch {
	case err == nil:
		var gen struct {
			EOS frontend.TokenIDs `json:"eos_token_id"`
		}
		if err := json.Unmarshal(data, &gen); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "generation_config.json"), err)
		}
		ids = append(ids, gen.EOS...)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if tok != nil {
		for _, piece := range []string{"<eos>", "<end_of_turn>"} {
			if id, ok := tok.TokenID(piece); ok {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// Close releases the engine and unmaps the weights.
func (m *Model) Close() error {
	errs := []error{m.Engine.Close()}
	if m.converted != nil {
		errs = append(errs, m.converted.Close())
	}
	return errors.Join(append(errs, m.checkpoint.Close())...)
}

// Checkpoint is the opened checkpoint the model runs.
func (m *Model) Checkpoint() *frontend.Checkpoint { return m.checkpoint }

// NeedTokenizer returns the tokenizer or an error saying how to supply one.
func (m *Model) NeedTokenizer() (*tokenizer.Tokenizer, error) {
	if m.Tokenizer == nil {
		return nil, fmt.Errorf("%s has no tokenizer.json: pass one with --tokenizer", m.checkpoint.Dir)
	}
	return m.Tokenizer, nil
}

// WeightBytesPerToken is the bytes of weights one decode step reads: every
// tensor once, except an untied embedding table, of which it reads one row.
// An engine that reads other weights than the checkpoint's (a build with a
// packed weights file) says so itself.
func (m *Model) WeightBytesPerToken() int64 {
	if e, ok := m.Engine.(interface{ WeightBytesPerToken() int64 }); ok {
		return e.WeightBytesPerToken()
	}
	return m.weightBytes
}

func weightBytesPerToken(cfg *frontend.Config, weights map[string]ir.Tensor) int64 {
	var n int64
	for name, t := range weights {
		if name == frontend.EmbedName && !cfg.TieWordEmbeddings {
			n += int64(len(t.Data) / cfg.VocabSize)
			continue
		}
		n += int64(len(t.Data))
	}
	return n
}

// chooseTemplate settles how conversations are rendered: a built-in by name
// or detected from the checkpoint's template, else that template in Jinja.
func (m *Model) chooseTemplate(name, dir, ggufTemplate string) error {
	configPath := filepath.Join(dir, "tokenizer_config.json")
	source := func() (*chat.Template, error) {
		if ggufTemplate != "" {
			if _, err := os.Stat(configPath); errors.Is(err, fs.ErrNotExist) {
				return chat.ParseTemplate(ggufTemplate)
			}
		}
		return chat.TemplateFromTokenizerConfig(configPath)
	}
	switch {
	case name == "jinja":
		t, err := source()
		if err != nil {
			return fmt.Errorf("--chat-template jinja: %w", err)
		}
		m.Template, m.jinja = "jinja", t
		return nil
	case name != "":
		if !slices.Contains(chat.Names(), name) {
			return fmt.Errorf("unknown chat template %q (want jinja or one of %v)", name, chat.Names())
		}
		m.Template = name
		return nil
	}
	detected, err := chat.FromTokenizerConfig(configPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		m.Template = "gemma2"
		if ggufTemplate == "" {
			return nil
		}
		if name, ok := chat.Detect(ggufTemplate); ok {
			m.Template = name
			return nil
		}
	case err == nil:
		m.Template = detected
		return nil
	}
	// Not a template gemmac knows: render the checkpoint's own.
	t, jerr := source()
	if jerr != nil {
		return errors.Join(err, jerr)
	}
	m.Template, m.jinja = "jinja", t
	return nil
}
