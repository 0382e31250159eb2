package cli

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testdata = "../../../../shared/testdata"

// run executes a gemmac command in process.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut, Program: "gemmac"}
	code = Main(env, Commands(), args)
	return code, out.String(), errOut.String()
}

type logitsOutput struct {
	Tokens []int       `json:"tokens"`
	Logits [][]float64 `json:"logits"`
}

func runLogitsJSON(t *testing.T, args ...string) logitsOutput {
	t.Helper()
	code, stdout, stderr := run(t, "", append([]string{"logits"}, args...)...)
	if code != 0 {
		t.Fatalf("logits %v: exit %d: %s", args, code, stderr)
	}
	var out logitsOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("logits output is not JSON: %v", err)
	}
	return out
}

// TestLogitsPrefillAndDecodeAgree runs the reference sequence (5× the
// sliding window) with different prefill/decode splits, and checks each
// against the float64 reference and against each other.
func TestLogitsPrefillAndDecodeAgree(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdata, "models/refs/tiny-hot.hf-math.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref logitsOutput
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(ref.Tokens))
	for i, id := range ref.Tokens {
		ids[i] = fmtInt(id)
	}
	model := filepath.Join(testdata, "models/tiny-hot")
	full := runLogitsJSON(t, "--model", model, "--interp", "--tokens", strings.Join(ids, ","))
	for _, prefill := range []string{"0", "1", "9", "23"} {
		split := runLogitsJSON(t, "--model", model, "--interp", "--tokens", strings.Join(ids, ","), "--prefill", prefill)
		if d := maxDiff(t, split.Logits, full.Logits); d > 1e-4 {
			t.Errorf("--prefill %s differs from one prefill by %.3g", prefill, d)
		}
	}
	if d := maxDiff(t, full.Logits, ref.Logits); d > 1e-3 {
		t.Errorf("logits differ from the float64 reference by %.3g", d)
	}
}

func maxDiff(t *testing.T, a, b [][]float64) float64 {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d rows vs %d", len(a), len(b))
	}
	worst := 0.0
	for i := range a {
		if len(a[i]) != len(b[i]) {
			t.Fatalf("row %d: %d vs %d logits", i, len(a[i]), len(b[i]))
		}
		for j := range a[i] {
			worst = math.Max(worst, math.Abs(a[i][j]-b[i][j]))
		}
	}
	return worst
}

func fmtInt(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestTokenizeMatchesHuggingFace(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdata, "models/refs/gocoder.greedy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Prompt    string `json:"prompt"`
		PromptIDs []int  `json:"prompt_ids"`
	}
	json.Unmarshal(data, &ref)
	in, _ := json.Marshal(map[string]string{"text": ref.Prompt})
	code, stdout, stderr := run(t, string(in)+"\n", "tokenize", "--tokenizer", filepath.Join(testdata, "models/gocoder/tokenizer.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		IDs     []int  `json:"ids"`
		Decoded string `json:"decoded"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if !equal(got.IDs, ref.PromptIDs) {
		t.Errorf("ids %v, want %v", got.IDs, ref.PromptIDs)
	}
	if got.Decoded != "<bos>"+ref.Prompt {
		t.Errorf("decoded %q, want %q", got.Decoded, "<bos>"+ref.Prompt)
	}
	code, stdout, _ = run(t, string(in)+"\n", "tokenize", "--no-special", "--tokenizer", filepath.Join(testdata, "models/gocoder/tokenizer.json"))
	json.Unmarshal([]byte(stdout), &got)
	if code != 0 || !equal(got.IDs, ref.PromptIDs[1:]) {
		t.Errorf("--no-special: exit %d, ids %v, want %v", code, got.IDs, ref.PromptIDs[1:])
	}
	code, _, stderr = run(t, "not json\n", "tokenize", "--tokenizer", filepath.Join(testdata, "models/gocoder/tokenizer.json"))
	if code != 1 || !strings.Contains(stderr, "line 1") {
		t.Errorf("bad input: exit %d, stderr %q; want exit 1 naming line 1", code, stderr)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTemplateCommand(t *testing.T) {
	conv := `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}`
	code, stdout, stderr := run(t, conv, "template", "--template", "systemgemma2", "--add-generation-prompt")
	want := "<bos>Be brief.\n<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
	if code != 0 || stdout != want {
		t.Fatalf("exit %d, output %q (stderr %q); want %q", code, stdout, stderr, want)
	}
	code, stdout, stderr = run(t, conv, "template", "--template", "gemma2")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "ystem") {
		t.Errorf("gemma2 with a system message: exit %d, stdout %q, stderr %q; want exit 1 and the reason", code, stdout, stderr)
	}
	code, _, stderr = run(t, conv, "template", "--template", "llama3")
	if code == 0 || !strings.Contains(stderr, "llama3") {
		t.Errorf("unknown template: exit %d, stderr %q", code, stderr)
	}
}

func TestGenRandomWithTokenizerRunsAChatTurn(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := run(t, "", "gen-random", "--preset", "tiny", "--seed", "3", "--dtype", "bf16",
		"--tokenizer", filepath.Join(testdata, "models/gocoder/tokenizer.json"), "--chat-template", "systemgemma2", "-o", dir)
	if code != 0 {
		t.Fatalf("gen-random: exit %d: %s", code, stderr)
	}
	var cfg struct {
		VocabSize  int    `json:"vocab_size"`
		TorchDType string `json:"torch_dtype"`
	}
	data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(data, &cfg)
	if cfg.VocabSize != 4096 || cfg.TorchDType != "bfloat16" {
		t.Errorf("config vocab_size %d torch_dtype %q, want 4096 (the tokenizer's) and bfloat16", cfg.VocabSize, cfg.TorchDType)
	}
	code, stdout, stderr := run(t, "", "run", "--model", dir, "--interp", "--system", "Be brief.", "--prompt", "Hello",
		"--max-tokens", "5", "--temperature", "0.7", "--seed", "1")
	if code != 0 {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "generated") || !strings.Contains(stderr, "tok/s") {
		t.Errorf("run printed no statistics: %q", stderr)
	}
	_ = stdout
	// The same seed gives the same text.
	_, again, _ := run(t, "", "run", "--model", dir, "--interp", "--system", "Be brief.", "--prompt", "Hello",
		"--max-tokens", "5", "--temperature", "0.7", "--seed", "1")
	if again != stdout {
		t.Errorf("seeded runs differ: %q vs %q", stdout, again)
	}
}

func TestUserErrors(t *testing.T) {
	tiny := filepath.Join(testdata, "models/tiny")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no model", []string{"logits", "--tokens", "1"}, 2, "--model is required"},
		{"missing dir", []string{"logits", "--model", "/nonexistent", "--tokens", "1"}, 1, "/nonexistent"},
		{"token out of vocab", []string{"logits", "--model", tiny, "--tokens", "2,600"}, 1, "600"},
		{"bad token list", []string{"logits", "--model", tiny, "--tokens", "2,x"}, 2, "not a token id"},
		{"past context", []string{"logits", "--model", tiny, "--max-seq", "2", "--tokens", "2,3,4"}, 1, "context of 2"},
		{"prefill too long", []string{"logits", "--model", tiny, "--tokens", "2,3", "--prefill", "5"}, 2, "--prefill"},
		{"no tokenizer", []string{"run", "--model", tiny, "--prompt", "hi"}, 1, "tokenizer"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"unknown flag", []string{"bench", "--model", tiny, "--wat"}, 2, "wat"},
		{"bad preset", []string{"gen-random", "--preset", "7b", "-o", "x"}, 2, "7b"},
		{"bad sampling", []string{"run", "--model", tiny, "--prompt", "x", "--top-p", "2"}, 2, "TopP is 2"},
		{"zero prefill runs", []string{"bench", "--model", tiny, "--interp", "--prefill-runs", "0"}, 2, "--prefill-runs must be positive"},
		{"zero chunk", []string{"build", "--model", tiny, "--chunk", "0", "-o", filepath.Join(t.TempDir(), "bin")}, 2, "--chunk must be positive"},
		{"weights without a binary", []string{"logits", "--model", tiny, "--tokens", "2", "--weights", "x.weights"}, 2, "--weights"},
		{"package name", []string{"build", "--model", tiny, "--emit-package", filepath.Join(t.TempDir(), "my-model")}, 2, `"my-model" is not a Go identifier`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := run(t, "", c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, c.code, c.want)
			}
		})
	}
}

// TestPairedFraction: each step is set against the sample after it. The
// machine halves its bandwidth halfway and the steps slow down with it, at
// 80% of the roofline throughout; the medians of steps and samples come
// from different halves and say otherwise.
func TestPairedFraction(t *testing.T) {
	const bytes = 1e9 // 1 GB per token: a roofline of one token per GB/s
	steps := []float64{40, 40, 40, 40, 20, 20, 20}
	reads := []float64{50, 50, 25, 25} // one after every two steps
	after := []float64{50, 50, 50, 50, 25, 25, 25}
	if got := pairedFraction(steps, after, bytes); math.Abs(got-0.8) > 1e-12 {
		t.Errorf("paired fraction = %v, want 0.8", got)
	}
	if got := median(steps) / median(reads); math.Abs(got-0.8) < 0.1 {
		t.Errorf("ratio of medians = %v: the test no longer tells the two apart", got)
	}
}

func TestBenchJSON(t *testing.T) {
	code, stdout, stderr := run(t, "", "bench", "--model", filepath.Join(testdata, "models/tiny"), "--interp",
		"--prompt-tokens", "20", "--gen-tokens", "5", "--prefill-runs", "3", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	for _, k := range []string{"prefill_tok_s", "decode_tok_s", "threads", "weight_bytes_per_token",
		"decode_step_tok_s", "read_gb_s", "fma_gflop_s", "decode_roofline_fraction", "decode_roofline_fraction_paired",
		"prefill_peak_fraction"} {
		if v, _ := r[k].(float64); v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, r[k])
		}
	}
	// Three prefills; the figure is the median run.
	var runs []float64
	if v, ok := r["prefill_tok_s_runs"].([]any); ok {
		for _, x := range v {
			runs = append(runs, x.(float64))
		}
	}
	if r["prefill_runs"] != 3.0 || len(runs) != 3 {
		t.Fatalf("prefill_runs = %v, prefill_tok_s_runs = %v: want 3 runs", r["prefill_runs"], r["prefill_tok_s_runs"])
	}
	if got, want := r["prefill_tok_s"], median(runs); got != want {
		t.Errorf("prefill_tok_s = %v, want the median of %v (%v)", got, runs, want)
	}
	if got, want := r["prefill_s"].(float64), 20/median(runs); math.Abs(got-want) > 1e-9*want {
		t.Errorf("prefill_s = %v, want %v", got, want)
	}
	// The prefill fraction is the median run's rate against the best FMA
	// run of the bench, the machine's peak.
	if got, want := r["prefill_peak_fraction"].(float64), r["prefill_gflop_s"].(float64)/r["fma_gflop_s"].(float64); math.Abs(got-want) > 1e-9*want {
		t.Errorf("prefill_peak_fraction = %v, want prefill_gflop_s / fma_gflop_s = %v", got, want)
	}
	// Five timed decode steps: their median is the median step, and the
	// decode time is the sum of theirs.
	var steps []float64
	if v, ok := r["decode_steps_tok_s"].([]any); ok {
		for _, x := range v {
			steps = append(steps, x.(float64))
		}
	}
	if len(steps) != 5 {
		t.Fatalf("decode_steps_tok_s = %v: want 5 steps", r["decode_steps_tok_s"])
	}
	if got, want := r["decode_step_tok_s"], median(steps); got != want {
		t.Errorf("decode_step_tok_s = %v, want the median of %v (%v)", got, steps, want)
	}
	var sum float64
	for _, s := range steps {
		sum += 1 / s
	}
	if got := r["decode_s"].(float64); math.Abs(got-sum) > 1e-6*sum {
		t.Errorf("decode_s = %v, the steps' times add up to %v", got, sum)
	}
	// One bandwidth sample after every two decode steps; the median is not
	// above the best.
	if r["read_passes"] != 3.0 {
		t.Errorf("read_passes = %v, want 3 (one per two decode steps)", r["read_passes"])
	}
	if best, med := r["read_gb_s_best"].(float64), r["read_gb_s"].(float64); best < med {
		t.Errorf("read_gb_s_best %v < read_gb_s %v", best, med)
	}
	// tiny, f32: the 512×64 embedding (read whole as the tied LM head), 4
	// layers of 37120 weights (attention 12288, MLP 24576, four norms 256)
	// and the final norm: 181312 weights of 4 bytes.
	if want := 4 * 181312.0; r["weight_bytes_per_token"] != want {
		t.Errorf("weight_bytes_per_token = %v, want %v", r["weight_bytes_per_token"], want)
	}
}
