package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gemmac/gemmac/bench/roofline"
	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/cpu"
	"github.com/gemmac/gemmac/runtime/model"
)

func benchCommand() Command {
	return Command{
		Name:    "bench",
		Usage:   "--model DIR [--interp] --prompt-tokens P --gen-tokens G [--streams N] [--json]",
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
	// KVBytesPerToken is the mean bytes of keys and values one decode step
	// of this run reads.
	KVBytesPerToken int64 `json:"kv_bytes_per_token"`
	KVCacheBytes    int64 `json:"kv_cache_bytes"`
	// ResidentBytes is the process's resident set after the decode steps,
	// PeakResidentBytes the largest it had been (loading included).
	ResidentBytes     int64 `json:"rss_bytes,omitempty"`
	PeakResidentBytes int64 `json:"peak_rss_bytes,omitempty"`
	// PrefillFLOPs counts 2 FLOPs per non-embedding weight per prompt token
	// and the LM head once (prefill only needs the last token's logits).
	PrefillFLOPs float64 `json:"prefill_flops"`
	PrefillGFLOP float64 `json:"prefill_gflop_s"`

	// The machine's ceilings, measured in the same run (absent with
	// --no-roofline), and the fractions of them reached.
	ReadGBs                float64 `json:"read_gb_s,omitempty"`
	FMAGFLOP               float64 `json:"fma_gflop_s,omitempty"`
	DecodeRooflineTokS     float64 `json:"decode_roofline_tok_s,omitempty"`
	DecodeRooflineFraction float64 `json:"decode_roofline_fraction,omitempty"`
	PrefillPeakFraction    float64 `json:"prefill_peak_fraction,omitempty"`

	// Streams is the batched decoding measurement of --streams N.
	Streams *StreamsResult `json:"streams,omitempty"`
}

// addRoofline fills the ceilings and fractions from a measurement.
func (r *BenchResult) addRoofline(m *roofline.Machine) {
	r.ReadGBs, r.FMAGFLOP = m.ReadGBs, m.FMAGFLOP
	r.DecodeRooflineTokS = m.ReadGBs * 1e9 / float64(r.WeightBytesPerToken+r.KVBytesPerToken)
	r.DecodeRooflineFraction = r.DecodeTokS / r.DecodeRooflineTokS
	r.PrefillPeakFraction = r.PrefillGFLOP / m.FMAGFLOP
}

func runBench(env *Env, args []string) error {
	fs := newFlags(env, "bench")
	var mf modelFlags
	mf.register(fs)
	promptTokens := fs.Int("prompt-tokens", 128, "tokens in the prompt (one prefill)")
	genTokens := fs.Int("gen-tokens", 32, "tokens to decode after it")
	asJSON := fs.Bool("json", false, "print one JSON object")
	profile := fs.Bool("profile", false, "print the time spent in each compiled kernel")
	compare := fs.Bool("compare", false, "also run the interpreter on the same model and print the speedup")
	noRoofline := fs.Bool("no-roofline", false, "skip measuring this machine's read bandwidth and FMA peak")
	streams := fs.Int("streams", 0, "also measure N concurrent streams decoded in batched steps against one stream, in turn (N ≥ 2; compiles the batched step, or needs a binary built with --batch N or more)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *promptTokens < 1 || *genTokens < 1 {
		return usageError("--prompt-tokens and --gen-tokens must be positive")
	}
	if *streams == 1 || *streams < 0 {
		return usageError("--streams must be 2 or more")
	}
	mf.batch = *streams
	if mf.maxSeq == 0 && env.Context == 0 {
		mf.maxSeq = *promptTokens + *genTokens
		if *streams > 1 {
			mf.maxSeq++ // the streams' untimed first step
		}
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
	if *streams > 1 {
		if r.Streams, err = BenchStreams(m, *promptTokens, *genTokens, *streams); err != nil {
			return err
		}
	}
	if *profile {
		for _, k := range profiled.Profile() {
			fmt.Fprintf(env.Stderr, "%10.3fs %6d calls  %s\n", k.Time.Seconds(), k.Calls, k.Kernel)
		}
	}
	results := []*BenchResult{r}
	var machine *roofline.Machine
	if !*noRoofline {
		cache, err := cpucodegen.CacheDir()
		if err != nil {
			return err
		}
		if machine, err = roofline.Measure(r.Threads, cache); err != nil {
			return fmt.Errorf("measuring the roofline (--no-roofline skips it): %w", err)
		}
		r.addRoofline(machine)
	}
	if *compare {
		if mf.interp {
			return usageError("--compare runs the interpreter itself; drop --interp")
		}
		mf.interp = true
		im, err := mf.load(fs, env)
		if err != nil {
			return err
		}
		defer im.Close()
		ir, err := Bench(im, *promptTokens, *genTokens)
		if err != nil {
			return err
		}
		if machine != nil {
			ir.addRoofline(machine)
		}
		results = append(results, ir)
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	if machine != nil {
		fmt.Fprintf(env.Stdout, "machine (%d threads, %s): read %.1f GB/s, FMA %.0f GFLOP/s\n", machine.Threads, machine.Target, machine.ReadGBs, machine.FMAGFLOP)
	}
	for _, r := range results {
		fmt.Fprintf(env.Stdout, "%-24s %d threads: prefill %d tokens %8.1f tok/s, decode %d tokens %8.2f tok/s (%.1f MB of weights per token)\n",
			r.Engine, r.Threads, r.PromptTokens, r.PrefillTokS, r.GenTokens, r.DecodeTokS, float64(r.WeightBytesPerToken)/1e6)
		if r.ResidentBytes > 0 {
			fmt.Fprintf(env.Stdout, "%24s resident set %.2f GiB (peak %.2f GiB), KV cache %.2f GiB\n",
				"", gib(r.ResidentBytes), gib(r.PeakResidentBytes), gib(r.KVCacheBytes))
		}
		if machine != nil {
			fmt.Fprintf(env.Stdout, "%24s decode at %.0f%% of the bandwidth roofline (%.2f tok/s), prefill at %.0f%% of the FMA peak (%.1f GFLOP/s)\n",
				"", 100*r.DecodeRooflineFraction, r.DecodeRooflineTokS, 100*r.PrefillPeakFraction, r.PrefillGFLOP)
			if r.DecodeRooflineFraction > 1 {
				fmt.Fprintf(env.Stdout, "%24s (above 100%%: %.1f MB of weights fit in the CPU caches, so memory bandwidth does not bound this model)\n",
					"", float64(r.WeightBytesPerToken)/1e6)
			}
		}
	}
	if sr := results[0].Streams; sr != nil {
		fmt.Fprintf(env.Stdout, "%-24s %d streams in batched steps: %.2f tok/s together, one stream %.2f tok/s in turn with them: %.2f× (%d steps each)\n",
			"", sr.Streams, sr.AggregateTokS, sr.OneTokS, sr.Speedup, sr.Steps)
	}
	if len(results) == 2 {
		fmt.Fprintf(env.Stdout, "compiled vs interpreter: prefill %.1f×, decode %.1f×\n",
			results[0].PrefillTokS/results[1].PrefillTokS, results[0].DecodeTokS/results[1].DecodeTokS)
	}
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
	cfg := m.Config
	embed := int64(cfg.VocabSize) * int64(cfg.HiddenSize)
	flops := 2*float64(cfg.ParamCount()-embed)*float64(promptTokens) + 2*float64(embed)
	return &BenchResult{
		PrefillFLOPs:        flops,
		PrefillGFLOP:        flops / prefill.Seconds() / 1e9,
		KVBytesPerToken:     kvBytesPerStep(cfg, kvElemBytes(m.Engine), promptTokens, genTokens),
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
		ResidentBytes:       residentBytes(),
		PeakResidentBytes:   peakResidentBytes(),
	}, nil
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

// kvElemBytes is the size of one cached key or value element of the engine.
func kvElemBytes(e model.Engine) int {
	if k, ok := e.(interface{ KVDType() ir.DType }); ok {
		return k.KVDType().Size()
	}
	return 4
}

// kvBytesPerStep is the mean bytes of keys and values (elem bytes each) a
// decode step reads over positions prompt..prompt+gen-1: global layers read
// every position so far, sliding layers at most a window.
func kvBytesPerStep(cfg *frontend.Config, elem, prompt, gen int) int64 {
	perPosition := int64(2 * cfg.NumKeyValueHeads * cfg.HeadDim * elem)
	var total int64
	for pos := prompt; pos < prompt+gen; pos++ {
		for l := 0; l < cfg.NumHiddenLayers; l++ {
			seen := pos + 1
			if cfg.IsSliding(l) {
				seen = min(seen, cfg.SlidingWindow)
			}
			total += int64(seen) * perPosition
		}
	}
	return total / int64(gen)
}
