package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gemmac/gemmac/runtime/cpu"
	"github.com/gemmac/gemmac/runtime/model"
)

func benchCommand() Command {
	return Command{
		Name:    "bench",
		Usage:   "--model DIR [--interp] --prompt-tokens P --gen-tokens G [--json]",
		Summary: "measure prefill and decode tokens/s",
		Run:     runBench,
	}
}

// BenchResult is what bench --json prints.
type BenchResult struct {
	Engine              string  `json:"engine"`
	Threads             int     `json:"threads"`
	PromptTokens        int     `json:"prompt_tokens"`
	GenTokens           int     `json:"gen_tokens"`
	PrefillSeconds      float64 `json:"prefill_s"`
	DecodeSeconds       float64 `json:"decode_s"`
	PrefillTokS         float64 `json:"prefill_tok_s"`
	DecodeTokS          float64 `json:"decode_tok_s"`
	WeightBytesPerToken int64   `json:"weight_bytes_per_token"`
	KVCacheBytes        int64   `json:"kv_cache_bytes"`
}

func runBench(env *Env, args []string) error {
	fs := newFlags(env, "bench")
	var mf modelFlags
	mf.register(fs)
	promptTokens := fs.Int("prompt-tokens", 128, "tokens in the prompt (one prefill)")
	genTokens := fs.Int("gen-tokens", 32, "tokens to decode after it")
	asJSON := fs.Bool("json", false, "print one JSON object")
	profile := fs.Bool("profile", false, "print the time spent in each compiled kernel")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *promptTokens < 1 || *genTokens < 1 {
		return usageError("--prompt-tokens and --gen-tokens must be positive")
	}
	if mf.maxSeq == 0 {
		mf.maxSeq = *promptTokens + *genTokens
	}
	m, err := mf.load(fs, env)
	if err != nil {
		return err
	}
	defer m.Close()
	profiled, _ := m.Engine.(interface {
		EnableProfile()
		Profile() []cpu.KernelTime
	})
	if *profile {
		if profiled == nil {
			return usageError("--profile needs the compiled engine")
		}
		profiled.EnableProfile()
	}
	r, err := Bench(m, *promptTokens, *genTokens)
	if err != nil {
		return err
	}
	if *profile {
		for _, k := range profiled.Profile() {
			fmt.Fprintf(env.Stderr, "%10.3fs %6d calls  %s\n", k.Time.Seconds(), k.Calls, k.Kernel)
		}
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(r)
	}
	fmt.Fprintf(env.Stdout, "%s, %d threads: prefill %d tokens %.1f tok/s, decode %d tokens %.2f tok/s (%.1f MB of weights per token)\n",
		r.Engine, r.Threads, r.PromptTokens, r.PrefillTokS, r.GenTokens, r.DecodeTokS, float64(r.WeightBytesPerToken)/1e6)
	return nil
}

// Bench times one prefill of promptTokens random tokens and genTokens
// greedy decode steps after it, on a fresh session.
func Bench(m *model.Model, promptTokens, genTokens int) (*BenchResult, error) {
	if promptTokens+genTokens > m.Engine.Context() {
		return nil, &model.ContextError{Tokens: promptTokens + genTokens, Context: m.Engine.Context()}
	}
	sess, err := m.NewSession()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	prompt := make([]int, promptTokens)
	for i := range prompt {
		prompt[i] = 3 + rng.IntN(m.Config.VocabSize-3)
	}
	// The decode steps feed fixed ids rather than sampled ones so a stop
	// token cannot end the measurement early.
	feed := make([]int, genTokens)
	for i := range feed {
		feed[i] = 3 + rng.IntN(m.Config.VocabSize-3)
	}
	start := time.Now()
	if _, err := sess.Prefill(prompt); err != nil {
		return nil, err
	}
	prefill := time.Since(start)
	start = time.Now()
	for _, id := range feed {
		if _, err := sess.Step(id); err != nil {
			return nil, err
		}
	}
	decode := time.Since(start)
	return &BenchResult{
		Engine:              m.Engine.Name(),
		Threads:             m.Engine.Threads(),
		PromptTokens:        promptTokens,
		GenTokens:           genTokens,
		PrefillSeconds:      prefill.Seconds(),
		DecodeSeconds:       decode.Seconds(),
		PrefillTokS:         float64(promptTokens) / prefill.Seconds(),
		DecodeTokS:          float64(genTokens) / decode.Seconds(),
		WeightBytesPerToken: m.WeightBytesPerToken(),
		KVCacheBytes:        sess.CacheBytes(),
	}, nil
}
