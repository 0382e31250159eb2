package cli

import (
	"fmt"

	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"

	"github.com/spf13/pflag"

	"github.com/gemmac/gemmac/runtime/model"
)

// modelFlags are the flags of every command that loads a model.
type modelFlags struct {
	dir           string
	interp        bool
	maxSeq        int
	threads       int
	tokenizer     string
	template      string
	dtype         string
	embed         string
	kv            string
	weights       string
	llamaRounding bool
	// batch is the rows of the batched decode step to build (serve
	// --batch, bench --streams): model.Options.Batch.
	batch int
	// asStored keeps the interpreter on the checkpoint's own weights in a
	// binary built with --dtype (eval's reference).
	asStored bool
}

func (m *modelFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&m.dir, "model", "", "checkpoint directory (config.json, *.safetensors, tokenizer.json)")
	fs.BoolVar(&m.interp, "interp", false, "run on the pure-Go interpreter instead of compiled kernels")
	fs.IntVar(&m.maxSeq, "max-seq", 0, "context length in tokens (default min(max_position_embeddings, 4096))")
	fs.IntVar(&m.threads, "threads", 0, "CPU threads (default: one per CPU)")
	fs.StringVar(&m.tokenizer, "tokenizer", "", "tokenizer.json to use instead of the model directory's")
	fs.StringVar(&m.dtype, "dtype", "", "convert the layers' weights at load: f32, bf16, q8_0 or q4_0 (default: as stored)")
	fs.StringVar(&m.embed, "embed-dtype", "", "convert the embedding (the tied LM head) at load (default: q8_0 for quantised --dtype, else --dtype)")
	fs.BoolVar(&m.llamaRounding, "llama-rounding", false, "with --dtype q4_0: llama-quantize's rounding, byte for byte, instead of searching each block's scale for the least error")
	fs.StringVar(&m.kv, "kv-dtype", "", "KV cache element type: f32 or bf16 (half the memory; keys and values rounded to bfloat16); a built binary has its own")
	fs.StringVar(&m.weights, "weights", "", "the packed weights file of a binary built with --dtype (default: BIN.weights beside the binary)")
	fs.StringVar(&m.template, "chat-template", "", "gemma2, systemgemma2 or gemma3 (built-in renderers), or jinja (the checkpoint's own template); default: the built-in the checkpoint's template matches, else jinja")
}

func (m *modelFlags) load(fs *pflag.FlagSet, env *Env) (*model.Model, error) {
	if err := required(fs, "model"); err != nil {
		return nil, err
	}
	if m.maxSeq < 0 || m.threads < 0 {
		return nil, usageError("--max-seq and --threads must not be negative")
	}
	conv, err := frontend.ParseConversion(m.dtype, m.embed, m.llamaRounding)
	if err != nil {
		return nil, usageError("%v", err)
	}
	switch {
	case m.interp && conv.IsZero() && !m.asStored:
		conv = env.Convert // a built binary's weights, converted the same way
	case !m.interp && !env.Convert.IsZero() && !conv.IsZero():
		// The kernels read the weights file whatever the flags say.
		if conv.String() != env.Convert.String() {
			return nil, usageError("this binary's weights were converted at build time (%v): --dtype and --embed-dtype cannot change them (rebuild, or add --interp)", env.Convert)
		}
		conv = frontend.Conversion{}
	}
	kv, err := parseKVDType(m.kv)
	if err != nil {
		return nil, err
	}
	if m.weights != "" && (m.interp || env.Engine == nil) {
		return nil, usageError("--weights names the packed weights file of a binary built with gemmac build --dtype; it is for that binary's commands")
	}
	opts := model.Options{
		WeightsFile: m.weights,
		Convert:     conv,
		KVDType:     kv,
		Context:     m.maxSeq,
		Threads:     m.threads,
		Batch:       m.batch,
		Tokenizer:   m.tokenizer,
		Template:    m.template,
	}
	if opts.Context == 0 {
		opts.Context = env.Context
	}
	if !m.interp {
		opts.Engine = env.Engine
		if opts.Engine == nil {
			opts.Engine = cpucodegen.JITEngine
		}
	}
	return model.Load(m.dir, opts)
}

// samplingFlags are the generation settings.
type samplingFlags struct {
	opts      model.GenerateOptions
	seed      int64
	maxTokens int
}

func (s *samplingFlags) register(fs *pflag.FlagSet) {
	fs.Float32Var(&s.opts.Temperature, "temperature", 0, "sampling temperature; 0 is greedy")
	fs.IntVar(&s.opts.TopK, "top-k", 0, "sample from the k most likely tokens (0: off)")
	fs.Float32Var(&s.opts.TopP, "top-p", 1, "sample from the smallest set of tokens with this much probability (1: off)")
	fs.Float32Var(&s.opts.MinP, "min-p", 0, "drop tokens less likely than this fraction of the most likely one (0: off)")
	fs.Float32Var(&s.opts.RepetitionPenalty, "repetition-penalty", 1, "penalise tokens already in the context (1: off)")
	fs.Int64Var(&s.seed, "seed", 0, "random seed, for reproducible sampling")
	fs.IntVar(&s.maxTokens, "max-tokens", 256, "most tokens to generate")
}

func (s *samplingFlags) options() (model.GenerateOptions, error) {
	o := s.opts
	if s.seed < 0 {
		return o, usageError("--seed must not be negative")
	}
	if s.maxTokens <= 0 {
		return o, usageError("--max-tokens must be positive")
	}
	o.Seed = uint64(s.seed)
	o.MaxTokens = s.maxTokens
	if err := o.Options.Validate(); err != nil {
		return o, usageError("%v", err)
	}
	return o, nil
}

func tokensPerSecond(n int, seconds float64) string {
	if seconds <= 0 || n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(n)/seconds)
}

// parseKVDType reads --kv-dtype: "" (the default, f32), f32 or bf16.
func parseKVDType(s string) (ir.DType, error) {
	switch s {
	case "":
		return 0, nil
	case "f32":
		return ir.F32, nil
	case "bf16":
		return ir.BF16, nil
	}
	return 0, usageError("--kv-dtype %q: want f32 or bf16", s)
}
