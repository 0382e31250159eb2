// Command gemmac-gpu-bench checks and measures the CUDA target on one GPU:
//
//   - the test models (tiny, tiny-hot, tiny-bf16, gocoder) compiled for cuda
//     and their logits compared with the interpreter (prefill chunks, a
//     partial one included, then decode steps), plus greedy generation on
//     the GPU (with and without CUDA graphs) against the interpreter's;
//   - a random 2B bf16 checkpoint: 512-token prefill, batch-1 decode tok/s
//     with and without CUDA graphs, the device copy bandwidth and the
//     decode roofline fraction.
//
// With --prepare it only compiles every model's PTX into --ptx-cache (on a
// machine with LLVM 14 and no GPU), so a GPU machine without LLVM runs the
// same kernels. `combine A.json B.json` prints one table of this command's
// JSON and bench/gpu/hf_bench.py's.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gemmac/gemmac/codegen/ptx"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/cuda"
	"github.com/gemmac/gemmac/runtime/model"
)

var (
	modelsDir   = flag.String("models", "", "directory of the test models (default: the first of ../shared/testdata/models, shared/testdata/models, bin/gpu/models)")
	ptxCache    = flag.String("ptx-cache", "bin/gpu/ptx-cache", "directory of compiled PTX")
	prepare     = flag.Bool("prepare", false, "compile every model's PTX into --ptx-cache and copy the test models to bin/gpu/models, then exit (no GPU needed)")
	bigDir      = flag.String("model-dir", filepath.Join(os.TempDir(), "gemmac-2b-bf16"), "where the random 2B bf16 checkpoint is generated (reused when present)")
	skipBig     = flag.Bool("skip-2b", false, "only check the test models")
	context2b   = flag.Int("context", 2048, "context of the 2B engine")
	chunk2b     = flag.Int("chunk", 512, "prefill chunk of the 2B engine")
	prefillN    = flag.Int("prefill", 512, "prompt tokens for the prefill measurement")
	genN        = flag.Int("gen", 128, "generated tokens for the decode measurement")
	jsonOut     = flag.String("json", "", "also write the results here")
	keepPTX     = flag.String("keep", "", "write each model's .ll and .ptx under this directory")
	roundMMA    = flag.Bool("round-mma", false, "compile the 2B with bf16-rounded activations at the tensor-core matmuls (ptx.Options.RoundMMA)")
	otherMMA    = flag.Bool("both-mma", true, "also measure the 2B prefill compiled with the other --round-mma setting")
	skipKern    = flag.Bool("skip-kernels", false, "skip the single-kernel checks")
	sweep       = flag.Bool("sweep", false, "time the decode matvecs alone in every launch shape of the sweep")
	sampleDraws = flag.Int("sample-draws", 400, "draws per case in the on-GPU sampler check")
	targetArg   = flag.String("target", "cuda:sm_90", "GPU target of the 2B engine; the test models are checked for it and for the default target")
)

// target is --target parsed.
func target() ptx.Target {
	t, err := ptx.ParseTarget(*targetArg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return t
}

// checkTargets are the targets the test models are checked for: the
// default and --target (which, for sm_90, adds programmatic dependent
// launch).
func checkTargets() []ptx.Target {
	ts := []ptx.Target{ptx.DefaultTarget}
	if t := target(); t != ptx.DefaultTarget {
		ts = append(ts, t)
	}
	return ts
}

var testModels = []string{"tiny", "tiny-hot", "tiny-bf16", "gocoder"}

const (
	tinyContext = 64
	tinyChunk   = 16
)

func main() {
	flag.Parse()
	if flag.Arg(0) == "combine" {
		if err := combine(flag.Args()[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if *modelsDir == "" {
		for _, d := range []string{"../shared/testdata/models", "shared/testdata/models", "bin/gpu/models"} {
			if _, err := os.Stat(filepath.Join(d, "tiny", "config.json")); err == nil {
				*modelsDir = d
				break
			}
		}
	}
	if *prepare {
		if err := doPrepare(); err != nil {
			fmt.Fprintln(os.Stderr, "prepare:", err)
			os.Exit(1)
		}
		return
	}
	res := &Results{}
	err := run(res)
	if res.Failures > 0 && err == nil {
		err = fmt.Errorf("%d check(s) failed", res.Failures)
	}
	if err != nil {
		res.Error = err.Error()
	}
	data, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println("```json")
	fmt.Println(string(data))
	fmt.Println("```")
	if *jsonOut != "" {
		os.WriteFile(*jsonOut, data, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

// Results is what the command reports.
type Results struct {
	Device    string        `json:"device"`
	Checks    []Check       `json:"checks"`
	Kernels   []KernelCheck `json:"kernels,omitempty"`
	GEMV      []GEMVTime    `json:"gemv_sweep,omitempty"`
	Failures  int           `json:"failures"`
	Bench     *Bench        `json:"bench,omitempty"`
	Error     string        `json:"error,omitempty"`
	Timings   []Timing      `json:"timings,omitempty"`
	GraphNote string        `json:"graph_note,omitempty"`
	started   time.Time
}

// Check is one model's comparison with the interpreter.
type Check struct {
	Model      string  `json:"model"`
	Target     string  `json:"target"`
	DType      string  `json:"dtype"`
	RelErr     float64 `json:"rel_err"`
	Tolerance  float64 `json:"tolerance"`
	GreedyOK   bool    `json:"greedy_ok"`
	GreedyNote string  `json:"greedy_note,omitempty"`
	Pass       bool    `json:"pass"`
	Error      string  `json:"error,omitempty"`
}

// Bench is the 2B measurement.
type Bench struct {
	Model              string            `json:"model"`
	Context            int               `json:"context"`
	PrefillTokens      int               `json:"prefill_tokens"`
	PrefillSeconds     float64           `json:"prefill_s"`
	PrefillTokS        float64           `json:"prefill_tok_s"`
	DecodeTokens       int               `json:"decode_tokens"`
	DecodeTokS         float64           `json:"decode_tok_s"`
	DecodeTokSNoGraphs float64           `json:"decode_tok_s_no_graphs"`
	DecodeTokSNoPDL    float64           `json:"decode_tok_s_no_pdl,omitempty"`
	Target             string            `json:"target"`
	PDL                bool              `json:"pdl"`
	DecodeLogitsTokS   float64           `json:"decode_logits_tok_s"`
	DecodeProfile      []cuda.KernelTime `json:"decode_profile,omitempty"`
	PrefillProfile     []cuda.KernelTime `json:"prefill_profile,omitempty"`
	RoundMMA           bool              `json:"round_mma"`
	OtherPrefillTokS   float64           `json:"other_mma_prefill_tok_s,omitempty"`
	PrefillTokSPDL     float64           `json:"prefill_tok_s_pdl,omitempty"`
	WeightBytes        int64             `json:"weight_bytes_per_token"`
	CopyBandwidth      float64           `json:"copy_bandwidth_bytes_s"`
	Roofline           float64           `json:"decode_roofline_fraction"`
	GraphsUsed         bool              `json:"graphs_used"`
	Sampling           string            `json:"sampling,omitempty"`
	SamplingOK         bool              `json:"sampling_ok"`
}

// Timing is how long a phase took.
type Timing struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
}

func (r *Results) phase(name string, start time.Time) {
	r.Timings = append(r.Timings, Timing{name, time.Since(start).Seconds()})
	fmt.Printf("[%6.1fs] %s done in %.1fs\n", time.Since(r.started).Seconds(), name, time.Since(start).Seconds())
}

func run(res *Results) error {
	res.started = time.Now()
	dev, err := cuda.Open(0)
	if err != nil {
		return err
	}
	res.Device = dev.String()
	fmt.Println("device:", res.Device)
	if !*skipKern {
		t := time.Now()
		fmt.Println("\n| kernel (alone, random inputs) | rel err | tolerance | ms | TFLOP/s | pass |")
		fmt.Println("| --- | --- | --- | --- | --- | --- |")
		ks, err := checkKernels(dev)
		if err != nil {
			fmt.Println("kernel checks:", err)
			res.Failures++
		}
		for _, k := range ks {
			if !k.Pass {
				res.Failures++
			}
		}
		res.Kernels = ks
		res.phase("kernel checks", t)
	}
	if *sweep {
		t := time.Now()
		gs, err := sweepGEMV(dev)
		if err != nil {
			fmt.Println("matvec sweep:", err)
		}
		for _, g := range gs {
			if g.Error != "" {
				res.Failures++
			}
		}
		res.GEMV = gs
		res.phase("matvec sweep", t)
	}
	dev.Close()

	fmt.Println("\n| model | target | dtype | max rel err | tolerance | greedy (graphs, no graphs) | result |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, tg := range checkTargets() {
		for _, m := range testModels {
			t := time.Now()
			c := checkModel(m, tg)
			res.phase("check "+m+" "+tg.SM, t)
			if !c.Pass {
				res.Failures++
			}
			res.Checks = append(res.Checks, c)
			verdict := "PASS"
			if !c.Pass {
				verdict = "FAIL " + c.Error
			}
			fmt.Printf("| %s | %s | %s | %.3g | %.0e | %v %s | %s |\n", c.Model, c.Target, c.DType, c.RelErr, c.Tolerance, c.GreedyOK, c.GreedyNote, verdict)
		}
	}
	if *skipBig {
		return nil
	}
	b, err := bench2B(res)
	res.Bench = b
	if b != nil {
		printBench(b)
	}
	return err
}

// sequence is 40 tokens: five sliding windows of tiny.
func sequence(vocab int) []int32 {
	s := make([]int32, 40)
	for i := range s {
		s[i] = int32((i*37 + 2) % vocab)
	}
	return s
}

func checkModel(name string, tg ptx.Target) (c Check) {
	c.Model, c.Target = name, tg.SM
	defer func() {
		if r := recover(); r != nil {
			c.Error = fmt.Sprint("panic: ", r)
			c.Pass = false
		}
	}()
	dir := filepath.Join(*modelsDir, name)
	ckpt, err := frontend.Open(dir)
	if err != nil {
		c.Error = err.Error()
		return
	}
	defer ckpt.Close()
	c.DType = ckpt.Config.ActivationDType().String()
	c.Tolerance = 1e-4
	for _, dt := range ckpt.WeightDTypes() {
		if dt != ir.F32 {
			c.Tolerance = 1e-2
		}
	}
	comp, err := cuda.Compile(ckpt, tinyContext, cuda.Options{Chunk: tinyChunk, PTXCache: *ptxCache, Target: tg})
	if err != nil {
		c.Error = err.Error()
		return
	}
	eng, err := cuda.New(comp, ckpt, cuda.Options{})
	if err != nil {
		c.Error = err.Error()
		return
	}
	defer eng.Close()
	ref, err := model.NewInterpEngine(ckpt, tinyContext, 0)
	if err != nil {
		c.Error = err.Error()
		return
	}
	seq := sequence(ckpt.Config.VocabSize)
	const prefill = 24
	forward := func(e model.Engine) ([]float32, model.State, error) {
		st, err := e.NewState()
		if err != nil {
			return nil, nil, err
		}
		out, err := st.Forward(seq[:prefill], 0, true)
		if err != nil {
			return nil, nil, err
		}
		for p := prefill; p < len(seq); p++ {
			row, err := st.Forward(seq[p:p+1], p, true)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, row...)
		}
		return out, st, nil
	}
	got, gst, err := forward(eng)
	if err != nil {
		c.Error = "gpu: " + err.Error()
		return
	}
	want, rst, err := forward(ref)
	if err != nil {
		c.Error = "interp: " + err.Error()
		return
	}
	c.RelErr = relErr(got, want)
	c.Pass = c.RelErr < c.Tolerance
	if !c.Pass {
		c.Error = fmt.Sprintf("relative error %.3g ≥ %.0e", c.RelErr, c.Tolerance)
	}
	// Greedy generation on the GPU, graphs on and off, against the
	// interpreter's argmax chain.
	vocab := ckpt.Config.VocabSize
	const steps = 8
	pos := len(seq)
	last := want[len(want)-vocab:]
	wantIDs := make([]int32, 0, steps)
	tok := argmax(last)
	for i := 0; i < steps; i++ {
		wantIDs = append(wantIDs, tok)
		row, err := rst.Forward([]int32{tok}, pos+i, false)
		if err != nil {
			c.Error = "interp greedy: " + err.Error()
			c.Pass = false
			return
		}
		tok = argmax(row)
	}
	first := argmax(got[len(got)-vocab:])
	c.GreedyOK = true
	for _, graphs := range []bool{true, false} {
		eng.SetGraphs(graphs)
		// Each setting runs on a freshly filled cache: generating from
		// the same position twice would rewind the sliding-window rings
		// by more than one slot, which loses keys (it is not a use the
		// engine supports).
		if !graphs {
			if _, gst, err = forward(eng); err != nil {
				c.GreedyOK = false
				c.GreedyNote += " refill: " + err.Error()
				continue
			}
		}
		gs := gst.(*cuda.State)
		ids, err := gs.Greedy(first, pos, steps-1)
		if err != nil {
			c.GreedyOK = false
			c.GreedyNote += fmt.Sprintf(" graphs=%v: %v", graphs, err)
			continue
		}
		ids = append([]int32{first}, ids...)
		agree := 0
		for agree < len(ids) && ids[agree] == wantIDs[agree] {
			agree++
		}
		if agree < len(ids) {
			// Near-ties may flip after bf16-level differences: report, and
			// fail only for f32 models.
			c.GreedyNote += fmt.Sprintf(" graphs=%v: %d/%d agree (%v vs %v)", graphs, agree, len(ids), ids, wantIDs)
			if c.Tolerance < 1e-3 {
				c.GreedyOK = false
			}
		}
	}
	if eng.GraphErr != nil {
		c.GreedyNote += " graph capture failed: " + eng.GraphErr.Error()
		c.GreedyOK = false
	}
	if !c.GreedyOK {
		c.Pass = false
		if c.Error == "" {
			c.Error = "greedy generation differs"
		}
	}
	return
}

func argmax(x []float32) int32 {
	best, bv := 0, x[0]
	for i, v := range x {
		if v > bv || bv != bv && v == v {
			best, bv = i, v
		}
	}
	return int32(best)
}

// relErr is max|a−b| / max|b|, NaN-aware.
func relErr(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d, m float64
	for i := range a {
		x := math.Abs(float64(a[i] - b[i]))
		if x > d || x != x {
			d = x
		}
		m = max(m, math.Abs(float64(b[i])))
	}
	if m == 0 {
		return d
	}
	return d / m
}

func preset2B() (*frontend.Config, map[string]ir.DType, error) {
	cfg, err := frontend.Preset("2b")
	if err != nil {
		return nil, nil, err
	}
	cfg.TorchDType = "bfloat16"
	dt := map[string]ir.DType{}
	for _, s := range cfg.WeightSpecs() {
		dt[s.Name] = ir.BF16
	}
	return cfg, dt, nil
}

// compile2B compiles the 2B with the command's options, changed by mod
// when it is not nil.
func compile2B(mod func(*ptx.Options)) (*ptx.Compiled, error) {
	cfg, dt, err := preset2B()
	if err != nil {
		return nil, err
	}
	opts := ptx.Options{Target: target(), Context: *context2b, Chunk: *chunk2b, RoundMMA: *roundMMA}
	if mod != nil {
		mod(&opts)
	}
	c, err := ptx.Build(cfg, dt, opts)
	if err != nil {
		return nil, err
	}
	keep := ""
	if *keepPTX != "" {
		keep = filepath.Join(*keepPTX, fmt.Sprintf("2b-bf16-round%v", opts.RoundMMA))
	}
	return c, c.EmitPTX(*ptxCache, keep)
}

func bench2B(res *Results) (*Bench, error) {
	t := time.Now()
	if _, err := os.Stat(filepath.Join(*bigDir, "model.safetensors")); err != nil {
		cfg, _, err := preset2B()
		if err != nil {
			return nil, err
		}
		fmt.Println("generating the random 2B bf16 checkpoint in", *bigDir)
		if err := frontend.WriteRandom(*bigDir, cfg, ir.BF16, 1); err != nil {
			return nil, err
		}
		res.phase("generate 2B", t)
	}
	t = time.Now()
	comp, err := compile2B(nil)
	if err != nil {
		return nil, err
	}
	res.phase("compile 2B", t)
	t = time.Now()
	ckpt, err := frontend.Open(*bigDir)
	if err != nil {
		return nil, err
	}
	defer ckpt.Close()
	eng, err := cuda.New(comp, ckpt, cuda.Options{})
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	res.phase("load 2B (JIT + upload)", t)
	b := &Bench{Model: "2b bf16 (random)", Context: *context2b, PrefillTokens: *prefillN, DecodeTokens: *genN, RoundMMA: *roundMMA,
		Target: target().SM, PDL: eng.PDL()}
	for _, w := range comp.Artifact.Weights {
		if w.Derived != nil {
			b.WeightBytes += int64(ir.Shape(w.Shape).Elems() * 4)
			continue
		}
		dt, err := ir.ParseDType(w.DType)
		if err != nil {
			return nil, err
		}
		n, err := dt.TensorBytes(w.Shape)
		if err != nil {
			return nil, fmt.Errorf("weight %s: %w", w.Name, err)
		}
		b.WeightBytes += int64(n)
	}
	st, err := eng.NewGPUState()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	prompt := make([]int32, *prefillN)
	for i := range prompt {
		prompt[i] = int32(rng.IntN(ckpt.Config.VocabSize))
	}
	t = time.Now()
	logits, best, err := timePrefill(st, prompt)
	if err != nil {
		return b, err
	}
	b.PrefillSeconds = best
	b.PrefillTokS = float64(*prefillN) / best
	if eng.PDL() {
		eng.SetPDL(true, true)
		if _, pdlBest, err := timePrefill(st, prompt); err == nil {
			b.PrefillTokSPDL = float64(*prefillN) / pdlBest
		}
		eng.SetPDL(true, false)
	}
	res.phase("prefill", t)
	if prof, err := st.Profile("prefill", prompt[:min(len(prompt), comp.Artifact.Programs["prefill"].Tokens)], 0); err == nil {
		b.PrefillProfile = prof
		printProfile("prefill kernel (one chunk)", prof)
	} else {
		fmt.Println("prefill profile:", err)
	}
	if *otherMMA {
		t = time.Now()
		if tps, err := variantPrefill(ckpt, prompt, func(o *ptx.Options) { o.RoundMMA = !o.RoundMMA }); err == nil {
			b.OtherPrefillTokS = tps
		} else {
			fmt.Println("prefill with the other MMA rounding:", err)
		}
		res.phase(fmt.Sprintf("prefill (round-mma=%v)", !*roundMMA), t)
	}
	first := argmax(logits)
	decode := func(graphs, pdl bool) (float64, error) {
		t := time.Now()
		eng.SetGraphs(graphs)
		eng.SetPDL(pdl, false)
		if _, err := st.Greedy(first, *prefillN, 8); err != nil { // warm-up (captures the graph)
			return 0, fmt.Errorf("decode warm-up: %w", err)
		}
		s := time.Now()
		if _, err := st.Greedy(first, *prefillN, *genN); err != nil {
			return 0, fmt.Errorf("decode: %w", err)
		}
		tps := float64(*genN) / time.Since(s).Seconds()
		res.phase(fmt.Sprintf("decode (graphs=%v, pdl=%v)", graphs, eng.PDL()), t)
		return tps, nil
	}
	if b.DecodeTokS, err = decode(true, true); err != nil {
		return b, err
	}
	b.GraphsUsed = eng.Graphs()
	if eng.GraphErr != nil {
		res.GraphNote = eng.GraphErr.Error()
	}
	if b.PDL {
		if b.DecodeTokSNoPDL, err = decode(true, false); err != nil {
			return b, err
		}
	}
	if b.DecodeTokSNoGraphs, err = decode(false, true); err != nil {
		return b, err
	}
	eng.SetGraphs(true)
	eng.SetPDL(true, false)
	t = time.Now()
	b.Sampling, b.SamplingOK = checkSampling(eng, st, logits, ckpt.Config.VocabSize, *sampleDraws, *prefillN)
	fmt.Println()
	fmt.Print(b.Sampling)
	if !b.SamplingOK {
		res.Failures++
	}
	res.phase("sampling check", t)
	t = time.Now()
	s := time.Now()
	n := 32
	for i := 0; i < n; i++ {
		if _, err := st.Forward([]int32{first}, *prefillN+i, false); err != nil {
			return b, err
		}
	}
	b.DecodeLogitsTokS = float64(n) / time.Since(s).Seconds()
	res.phase("decode with logits to host", t)
	// Where one decode step's time goes, kernel by kernel (events between
	// launches; the figures for the next round of tuning).
	if prof, err := st.ProfileDecode(first, *prefillN); err == nil {
		b.DecodeProfile = prof
		printProfile("decode kernel (one step)", prof)
	} else {
		fmt.Println("decode profile:", err)
	}
	t = time.Now()
	if bw, err := eng.Device().Bandwidth(1<<30, 20); err == nil {
		b.CopyBandwidth = bw
		b.Roofline = b.DecodeTokS * float64(b.WeightBytes) / bw
	} else {
		fmt.Println("bandwidth:", err)
	}
	res.phase("bandwidth", t)
	return b, nil
}

// timePrefill returns the last chunk's logits and the best of three timed
// prefills after an untimed one (which includes one-off costs).
func timePrefill(st *cuda.State, prompt []int32) ([]float32, float64, error) {
	best := math.Inf(1)
	var logits []float32
	for i := 0; i < 4; i++ {
		s := time.Now()
		var err error
		if logits, err = st.Forward(prompt, 0, false); err != nil {
			return nil, 0, fmt.Errorf("prefill: %w", err)
		}
		if i > 0 {
			best = min(best, time.Since(s).Seconds())
		}
	}
	return logits, best, nil
}

// variantPrefill measures the prefill of the 2B compiled with other
// options, on a second engine.
func variantPrefill(ckpt *frontend.Checkpoint, prompt []int32, mod func(*ptx.Options)) (float64, error) {
	comp, err := compile2B(mod)
	if err != nil {
		return 0, err
	}
	eng, err := cuda.New(comp, ckpt, cuda.Options{})
	if err != nil {
		return 0, err
	}
	defer eng.Close()
	st, err := eng.NewGPUState()
	if err != nil {
		return 0, err
	}
	_, best, err := timePrefill(st, prompt)
	if err != nil {
		return 0, err
	}
	return float64(len(prompt)) / best, nil
}

func printProfile(title string, prof []cuda.KernelTime) {
	fmt.Printf("\n| %s | calls | ms |\n| --- | --- | --- |\n", title)
	var total float64
	for _, k := range prof {
		fmt.Printf("| %s | %d | %.3f |\n", k.Kernel, k.Calls, k.Ms)
		total += k.Ms
	}
	fmt.Printf("| total | | %.3f |\n", total)
}

func printBench(b *Bench) {
	fmt.Println()
	fmt.Println("| metric | gemmac cuda |")
	fmt.Println("| --- | --- |")
	fmt.Printf("| prefill %d tokens (round-mma=%v) | %.1f ms (%.0f tok/s) |\n", b.PrefillTokens, b.RoundMMA, b.PrefillSeconds*1e3, b.PrefillTokS)
	if b.OtherPrefillTokS > 0 {
		fmt.Printf("| prefill %d tokens (round-mma=%v) | %.0f tok/s |\n", b.PrefillTokens, !b.RoundMMA, b.OtherPrefillTokS)
	}
	if b.PrefillTokSPDL > 0 {
		fmt.Printf("| prefill %d tokens, kernels launched early (PDL) | %.0f tok/s |\n", b.PrefillTokens, b.PrefillTokSPDL)
	}
	fmt.Printf("| target | %s (programmatic dependent launch: %v) |\n", b.Target, b.PDL)
	fmt.Printf("| decode, CUDA graphs (greedy on GPU) | %.1f tok/s |\n", b.DecodeTokS)
	if b.DecodeTokSNoPDL > 0 {
		fmt.Printf("| decode, CUDA graphs, no PDL | %.1f tok/s |\n", b.DecodeTokSNoPDL)
	}
	fmt.Printf("| decode, no graphs | %.1f tok/s |\n", b.DecodeTokSNoGraphs)
	fmt.Printf("| decode, logits to host | %.1f tok/s |\n", b.DecodeLogitsTokS)
	fmt.Printf("| weights read per token | %.2f GB |\n", float64(b.WeightBytes)/1e9)
	fmt.Printf("| device copy bandwidth | %.0f GB/s |\n", b.CopyBandwidth/1e9)
	fmt.Printf("| decode roofline fraction | %.1f%% |\n", 100*b.Roofline)
}

func doPrepare() error {
	if *modelsDir == "" {
		return errors.New("no test models found (pass --models)")
	}
	for _, m := range testModels {
		ckpt, err := frontend.Open(filepath.Join(*modelsDir, m))
		if err != nil {
			return err
		}
		for _, tg := range checkTargets() {
			comp, err := ptx.Build(ckpt.Config, ckpt.WeightDTypes(), ptx.Options{Target: tg, Context: tinyContext, Chunk: tinyChunk})
			if err != nil {
				ckpt.Close()
				return err
			}
			keep := ""
			if *keepPTX != "" {
				keep = filepath.Join(*keepPTX, m+"-"+tg.SM)
			}
			if err := comp.EmitPTX(*ptxCache, keep); err != nil {
				ckpt.Close()
				return err
			}
			fmt.Printf("%s (%s): %d kernels, %d bytes of PTX\n", m, tg.SM, len(comp.Entries), len(comp.PTX))
		}
		ckpt.Close()
		if err := copyDir(filepath.Join(*modelsDir, m), filepath.Join("bin/gpu/models", m)); err != nil {
			return err
		}
	}
	for name, mod := range map[string]func(*ptx.Options){
		"as given":  nil,
		"other mma": func(o *ptx.Options) { o.RoundMMA = !o.RoundMMA },
	} {
		comp, err := compile2B(mod)
		if err != nil {
			return err
		}
		fmt.Printf("2b bf16 (%s): %d kernels, %d bytes of PTX\n", name, len(comp.Entries), len(comp.PTX))
	}
	for _, module := range []func() (*ptx.Module, error){mmaModule, gemvModule} {
		m, err := module()
		if err != nil {
			return err
		}
		if _, err := m.PTX(*ptxCache); err != nil {
			return err
		}
	}
	return nil
}

func copyDir(src, dst string) error {
	if abs1, _ := filepath.Abs(src); abs1 == func() string { a, _ := filepath.Abs(dst); return a }() {
		return nil
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".txt") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// combine prints one table from this command's JSON and hf_bench.py's.
func combine(files []string) error {
	type row struct{ name, prefill, decode string }
	var rows []row
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "combine:", err)
			continue
		}
		var g Results
		if json.Unmarshal(data, &g) == nil && g.Bench != nil {
			b := g.Bench
			rows = append(rows,
				row{fmt.Sprintf("gemmac cuda:%s (graphs, PDL %v, greedy on GPU)", b.Target, b.PDL), fmt.Sprintf("%.0f", b.PrefillTokS), fmt.Sprintf("%.1f", b.DecodeTokS)})
			if b.DecodeTokSNoPDL > 0 {
				rows = append(rows, row{"gemmac (graphs, no PDL)", "", fmt.Sprintf("%.1f", b.DecodeTokSNoPDL)})
			}
			rows = append(rows, row{"gemmac (no graphs)", "", fmt.Sprintf("%.1f", b.DecodeTokSNoGraphs)})
			if b.OtherPrefillTokS > 0 {
				rows = append(rows, row{fmt.Sprintf("gemmac (round-mma=%v)", !b.RoundMMA), fmt.Sprintf("%.0f", b.OtherPrefillTokS), ""})
			}
			continue
		}
		var hf map[string]map[string]float64
		if json.Unmarshal(data, &hf) == nil {
			names := make([]string, 0, len(hf))
			for k := range hf {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				v := hf[k]
				rows = append(rows, row{k, fmtOpt(v["prefill_tok_s"], "%.0f"), fmtOpt(v["decode_tok_s"], "%.1f")})
			}
		}
	}
	fmt.Println("\n| engine (2B bf16, batch 1) | prefill 512 tok/s | decode tok/s |")
	fmt.Println("| --- | --- | --- |")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.name, r.prefill, r.decode)
	}
	return nil
}

func fmtOpt(v float64, f string) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf(f, v)
}
