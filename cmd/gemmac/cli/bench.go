package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
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
		Usage:   "--model DIR [--interp] --prompt-tokens P --gen-tokens G [--prefill-runs N] [--streams N] [--json]",
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
	// PrefillRuns is how many times the prompt was prefilled (the session
	// reset in between); the prefill figures are the median run's, and
	// PrefillRunsTokS lists every run in order.
	PrefillRuns     int       `json:"prefill_runs"`
	PrefillRunsTokS []float64 `json:"prefill_tok_s_runs"`

	// DecodeStepTokS is the median over the decode steps of 1/step time;
	// DecodeStepsTokS lists every timed step in order.
	DecodeStepTokS  float64   `json:"decode_step_tok_s"`
	DecodeStepsTokS []float64 `json:"decode_steps_tok_s"`

	// The machine's ceilings, measured in the same run (absent with
	// --no-roofline), and the fractions of them reached. A bandwidth
	// sample (roofline.ReadSample) runs after every two decode steps,
	// untimed (the step after it too, where the context has room: it wakes
	// the engine's threads): ReadGBs is their median, ReadGBsBest the
	// fastest. The decode fraction
	// is the median step against the median sample, both taken over the
	// same seconds, so a neighbour that takes bandwidth for a while moves
	// both sides. FMAGFLOP, the machine's FMA peak, is the best of the FMA
	// runs before the first prefill and after each, and
	// PrefillPeakFraction is PrefillGFLOP (the median run's) against it.
	// (Set against the FMA runs just beside each prefill instead, the
	// fraction read 79–91% where the f32 GEMM reaches 71–78% of one thread's
	// peak in isolation: a short FMA run after the prefill often reads far
	// below the peak, and a fraction over a depressed peak says nothing.)
	ReadGBs                float64 `json:"read_gb_s,omitempty"`
	ReadGBsBest            float64 `json:"read_gb_s_best,omitempty"`
	ReadPasses             int     `json:"read_passes,omitempty"`
	FMAGFLOP               float64 `json:"fma_gflop_s,omitempty"`
	DecodeRooflineTokS     float64 `json:"decode_roofline_tok_s,omitempty"`
	DecodeRooflineFraction float64 `json:"decode_roofline_fraction,omitempty"`
	// DecodeRooflinePaired is the decode fraction taken step by step: the
	// median over the steps of each one against the roofline of the
	// bandwidth sample right after its pair of steps (milliseconds later,
	// where the medians above may come from minutes apart on a machine
	// whose bandwidth moves with its neighbours).
	DecodeRooflinePaired float64 `json:"decode_roofline_fraction_paired,omitempty"`
	PrefillPeakFraction  float64 `json:"prefill_peak_fraction,omitempty"`

	// Streams is the batched decoding measurement of --streams N.
	Streams *StreamsResult `json:"streams,omitempty"`
}

func runBench(env *Env, args []string) error {
	fs := newFlags(env, "bench")
	var mf modelFlags
	mf.register(fs)
	promptTokens := fs.Int("prompt-tokens", 128, "tokens in the prompt (one prefill)")
	prefillRuns := fs.Int("prefill-runs", 1, "prefill the prompt this many times (the session reset in between) and report the median run; --compare's interpreter prefills once")
	genTokens := fs.Int("gen-tokens", 32, "tokens to decode after it")
	asJSON := fs.Bool("json", false, "print one JSON object")
	profile := fs.Bool("profile", false, "print the time spent in each compiled kernel")
	compare := fs.Bool("compare", false, "also run the interpreter on the same model and print the speedup (in a binary built with --dtype, on the same converted weights)")
	noRoofline := fs.Bool("no-roofline", false, "skip measuring this machine's read bandwidth and FMA peak")
	streams := fs.Int("streams", 0, "also measure N concurrent streams decoded in batched steps against one stream, in turn (N ≥ 2; compiles the batched step, or needs a binary built with --batch N or more)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *promptTokens < 1 || *genTokens < 1 || *prefillRuns < 1 {
		return usageError("--prompt-tokens, --gen-tokens and --prefill-runs must be positive")
	}
	if *streams == 1 || *streams < 0 {
		return usageError("--streams must be 2 or more")
	}
	mf.batch = *streams
	if mf.maxSeq == 0 && env.Context == 0 {
		mf.maxSeq = *promptTokens + *genTokens
		if !*noRoofline {
			mf.maxSeq += warmSteps(*genTokens)
		}
		if *streams > 1 {
			mf.maxSeq++ // the streams' untimed first step
		}
	}
	m, err := mf.load(fs, env)
	if err != nil {
		return err
	}
	closeModel := sync.OnceValue(m.Close)
	defer closeModel()
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
	var probe *roofline.Probe
	if !*noRoofline {
		cache, err := cpucodegen.CacheDir()
		if err != nil {
			return err
		}
		if probe, err = roofline.Open(m.Engine.Threads(), cache); err != nil {
			return fmt.Errorf("compiling the roofline probes (--no-roofline skips them): %w", err)
		}
		defer probe.Close()
	}
	r, err := Bench(m, *promptTokens, *genTokens, *prefillRuns, probe)
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
	if *compare {
		if mf.interp {
			return usageError("--compare runs the interpreter itself; drop --interp")
		}
		mf.interp = true
		// The compiled engine's staged weights go first: the interpreter
		// maps the checkpoint again, and both at once need twice the
		// model's memory.
		if err := closeModel(); err != nil {
			return err
		}
		im, err := mf.load(fs, env)
		if err != nil {
			return err
		}
		defer im.Close()
		ir, err := Bench(im, *promptTokens, *genTokens, 1, probe)
		if err != nil {
			return err
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
	if probe != nil {
		fmt.Fprintf(env.Stdout, "machine (%d threads, %s): FMA %.0f GFLOP/s; read bandwidth sampled between the decode steps below\n", probe.Threads(), probe.Target(), r.FMAGFLOP)
	}
	for _, r := range results {
		fmt.Fprintf(env.Stdout, "%-24s %d threads: prefill %d tokens %8.1f tok/s, decode %d tokens %8.2f tok/s (median step %.2f; %.1f MB of weights per token)\n",
			r.Engine, r.Threads, r.PromptTokens, r.PrefillTokS, r.GenTokens, r.DecodeTokS, r.DecodeStepTokS, float64(r.WeightBytesPerToken)/1e6)
		if r.PrefillRuns > 1 {
			fmt.Fprintf(env.Stdout, "%24s prefill: median of %d runs (%s tok/s)\n", "", r.PrefillRuns, joinFloats(r.PrefillRunsTokS, "%.1f"))
		}
		if r.ResidentBytes > 0 {
			fmt.Fprintf(env.Stdout, "%24s resident set %.2f GiB (peak %.2f GiB), KV cache %.2f GiB\n",
				"", gib(r.ResidentBytes), gib(r.PeakResidentBytes), gib(r.KVCacheBytes))
		}
		if r.ReadPasses > 0 {
			fmt.Fprintf(env.Stdout, "%24s read %.1f GB/s (median of %d samples between the steps; best %.1f)\n", "", r.ReadGBs, r.ReadPasses, r.ReadGBsBest)
			fmt.Fprintf(env.Stdout, "%24s decode at %.0f%% of the bandwidth roofline (median step vs %.2f tok/s; %.0f%% step by step against the sample after each), prefill at %.0f%% of the FMA peak (%.1f GFLOP/s)\n",
				"", 100*r.DecodeRooflineFraction, r.DecodeRooflineTokS, 100*r.DecodeRooflinePaired, 100*r.PrefillPeakFraction, r.PrefillGFLOP)
			switch {
			case r.DecodeRooflineFraction <= 1:
			case r.WeightBytesPerToken < cacheResidentBytes:
				fmt.Fprintf(env.Stdout, "%24s (above 100%%: %.1f MB of weights fit in the CPU caches, so memory bandwidth does not bound this model)\n",
					"", float64(r.WeightBytesPerToken)/1e6)
			default:
				fmt.Fprintf(env.Stdout, "%24s (above 100%%: the bandwidth samples ran slower than the decode steps between them; another process took bandwidth during the run, so rerun it)\n", "")
			}
			if r.PrefillPeakFraction > 1 {
				fmt.Fprintf(env.Stdout, "%24s (prefill above 100%%: its matmuls multiply bytes, q4_0 weights by activations rounded to 8 bits, four products per lane and instruction where an f32 FMA makes one)\n", "")
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

// Bench times prefillRuns prefills of promptTokens random tokens (resetting
// the session in between) and genTokens decode steps after the last, on a
// fresh session. With a probe it also samples the machine's ceilings in the
// same run: FMA runs before the first prefill and after each, and a
// bandwidth sample after every sampleEvery decode steps (untimed). The
// resident set is read after the first decode step, before the probe's
// buffer exists.
func Bench(m *model.Model, promptTokens, genTokens, prefillRuns int, probe *roofline.Probe) (*BenchResult, error) {
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
	// fmaRuns is the best of three FMA runs, 0 without a probe.
	fmaRuns := func() (best float64) {
		if probe == nil {
			return 0
		}
		time.Sleep(2 * cpu.IdleSpin) // until the engine's threads stop polling
		for i := 0; i < 3; i++ {
			best = max(best, probe.FMA())
		}
		return best
	}
	// With a probe, the decode steps run in blocks of sampleEvery with a
	// bandwidth sample between blocks. The engine's threads sleep during a
	// sample, so the step after it, which would pay for waking them, runs
	// untimed where the context has room (warmSteps).
	warm := 0
	if probe != nil {
		warm = max(0, min(warmSteps(genTokens), m.Engine.Context()-promptTokens-genTokens))
	}
	// The decode steps feed fixed ids rather than sampled ones so a stop
	// token cannot end the measurement early.
	feed := make([]int, genTokens+warm)
	for i := range feed {
		feed[i] = 3 + rng.IntN(m.Config.VocabSize-3)
	}
	cfg := m.Config
	embed := int64(cfg.VocabSize) * int64(cfg.HiddenSize)
	flops := 2*float64(cfg.ParamCount()-embed)*float64(promptTokens) + 2*float64(embed)
	fma := fmaRuns()
	var runsTokS []float64
	for len(runsTokS) < prefillRuns {
		sess.Reset()
		start := time.Now()
		if _, err := sess.Prefill(prompt); err != nil {
			return nil, err
		}
		d := time.Since(start)
		runsTokS = append(runsTokS, float64(promptTokens)/d.Seconds())
		fma = max(fma, fmaRuns())
	}
	prefillTokS := median(runsTokS)
	var decode time.Duration
	var rss, peak int64
	var steps, reads []float64
	var after []float64 // per step: the bandwidth sample after its block
	var start time.Time
	sample := func() error {
		time.Sleep(2 * cpu.IdleSpin) // until the engine's threads stop polling
		gbs, err := probe.ReadSample()
		reads = append(reads, gbs)
		for len(after) < len(steps) {
			after = append(after, gbs)
		}
		return err
	}
	for len(steps) < genTokens {
		if probe != nil && len(steps) > 0 {
			if err := sample(); err != nil {
				return nil, err
			}
			if warm > 0 {
				if _, err := sess.Step(feed[0]); err != nil {
					return nil, err
				}
				feed, warm = feed[1:], warm-1
			}
		}
		for k := 0; k < sampleEvery && len(steps) < genTokens; k++ {
			start = time.Now()
			if _, err := sess.Step(feed[0]); err != nil {
				return nil, err
			}
			d := time.Since(start)
			feed = feed[1:]
			decode += d
			steps = append(steps, 1/d.Seconds())
			if len(steps) == 1 {
				rss, peak = residentBytes(), peakResidentBytes()
			}
		}
	}
	if probe != nil {
		if err := sample(); err != nil {
			return nil, err
		}
	}
	r := &BenchResult{
		PrefillFLOPs:        flops,
		PrefillGFLOP:        flops * prefillTokS / float64(promptTokens) / 1e9,
		PrefillRuns:         prefillRuns,
		PrefillRunsTokS:     runsTokS,
		KVBytesPerToken:     kvBytesPerStep(cfg, kvElemBytes(m.Engine), promptTokens, genTokens),
		Engine:              m.Engine.Name(),
		Threads:             m.Engine.Threads(),
		PromptTokens:        promptTokens,
		GenTokens:           genTokens,
		PrefillSeconds:      float64(promptTokens) / prefillTokS,
		DecodeSeconds:       decode.Seconds(),
		PrefillTokS:         prefillTokS,
		DecodeTokS:          float64(genTokens) / decode.Seconds(),
		DecodeStepTokS:      median(steps),
		DecodeStepsTokS:     steps,
		WeightBytesPerToken: m.WeightBytesPerToken(),
		KVCacheBytes:        sess.CacheBytes(),
		ResidentBytes:       rss,
		PeakResidentBytes:   peak,
	}
	if probe != nil {
		r.ReadGBs, r.ReadGBsBest, r.ReadPasses = median(reads), slices.Max(reads), len(reads)
		r.FMAGFLOP = fma
		perToken := r.WeightBytesPerToken + r.KVBytesPerToken
		r.DecodeRooflineTokS = r.ReadGBs * 1e9 / float64(perToken)
		r.DecodeRooflineFraction = r.DecodeStepTokS / r.DecodeRooflineTokS
		r.DecodeRooflinePaired = pairedFraction(steps, after, perToken)
		r.PrefillPeakFraction = r.PrefillGFLOP / fma
	}
	return r, nil
}

// pairedFraction is the median over decode steps (tok/s) of each against
// the roofline of its bandwidth sample (GB/s, after[i] for step i) for
// bytesPerToken.
func pairedFraction(steps, after []float64, bytesPerToken int64) float64 {
	f := make([]float64, len(steps))
	for i, s := range steps {
		f[i] = s * float64(bytesPerToken) / (after[i] * 1e9)
	}
	return median(f)
}

// sampleEvery is how many timed decode steps run between two bandwidth
// samples.
const sampleEvery = 2

// warmSteps is the number of untimed steps (one after each bandwidth sample
// but the last) that Bench adds to genTokens timed ones.
func warmSteps(genTokens int) int { return (genTokens+sampleEvery-1)/sampleEvery - 1 }

// joinFloats formats each of v with format, comma-separated.
func joinFloats(v []float64, format string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

// median of a non-empty sample (the mean of the middle two for an even
// count).
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// cacheResidentBytes: models with fewer weight bytes per token may be read
// from the CPU's caches rather than memory.
const cacheResidentBytes = 256 << 20

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
