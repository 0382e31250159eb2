package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Result is one line of `gemmac bench --json`; it mirrors BenchResult in
// cmd/gemmac/cli/bench.go. The roofline fields are zero when gemmac ran
// with --no-roofline.
type Result struct {
	Engine                 string  `json:"engine"`
	Threads                int     `json:"threads"`
	PromptTokens           int     `json:"prompt_tokens"`
	GenTokens              int     `json:"gen_tokens"`
	PrefillSeconds         float64 `json:"prefill_s"`
	DecodeSeconds          float64 `json:"decode_s"`
	PrefillTokS            float64 `json:"prefill_tok_s"`
	DecodeTokS             float64 `json:"decode_tok_s"`
	DecodeStepTokS         float64 `json:"decode_step_tok_s"`
	WeightBytesPerToken    int64   `json:"weight_bytes_per_token"`
	KVBytesPerToken        int64   `json:"kv_bytes_per_token"`
	KVCacheBytes           int64   `json:"kv_cache_bytes"`
	PrefillFLOPs           float64 `json:"prefill_flops"`
	PrefillGFLOP           float64 `json:"prefill_gflop_s"`
	ReadGBs                float64 `json:"read_gb_s"`
	FMAGFLOP               float64 `json:"fma_gflop_s"`
	DecodeRooflineTokS     float64 `json:"decode_roofline_tok_s"`
	DecodeRooflineFraction float64 `json:"decode_roofline_fraction"`
	DecodeRooflinePaired   float64 `json:"decode_roofline_fraction_paired"`
	PrefillPeakFraction    float64 `json:"prefill_peak_fraction"`
}

// ModelRun is one model's `bench --compare`: the compiled engine and the
// interpreter.
type ModelRun struct {
	Name string   `json:"name"`
	Dir  string   `json:"dir"`
	Argv []string `json:"command"`
	// Raw holds the two JSON lines exactly as gemmac printed them, so that
	// fields this tool does not know about are kept.
	Raw      []json.RawMessage `json:"results"`
	Compiled Result            `json:"-"`
	Interp   Result            `json:"-"`
}

// Machine is where the benchmarks ran.
type Machine struct {
	Arch    string `json:"arch"`          // uname -m
	CPU     string `json:"cpu,omitempty"` // model name from /proc/cpuinfo
	Threads int    `json:"threads"`
}

// Report is everything results.json, results.md and chart.svg show.
type Report struct {
	Date         time.Time  `json:"date"`
	Machine      Machine    `json:"machine"`
	Command      string     `json:"command"`
	PromptTokens int        `json:"prompt_tokens"`
	GenTokens    int        `json:"gen_tokens"`
	PrefillRuns  int        `json:"prefill_runs"`
	Models       []ModelRun `json:"models"`
}

// parseBench reads the output of `gemmac bench --json --compare`: two JSON
// objects, the compiled engine's then the interpreter's.
func parseBench(out []byte) (*ModelRun, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	var raws []json.RawMessage
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("output is not JSON lines (%v); it was:\n%s", err, excerpt(out))
		}
		raws = append(raws, raw)
	}
	if len(raws) != 2 {
		return nil, fmt.Errorf("want 2 JSON objects (compiled, then interpreter), got %d; the output was:\n%s", len(raws), excerpt(out))
	}
	run := &ModelRun{Raw: raws}
	for i, dst := range []*Result{&run.Compiled, &run.Interp} {
		if err := json.Unmarshal(raws[i], dst); err != nil {
			return nil, fmt.Errorf("result %d: %v: %s", i+1, err, excerpt(raws[i]))
		}
		if dst.Engine == "" || dst.PrefillTokS <= 0 || dst.DecodeTokS <= 0 {
			return nil, fmt.Errorf("result %d lacks engine, prefill_tok_s or decode_tok_s: %s", i+1, excerpt(raws[i]))
		}
	}
	if isInterp(run.Compiled.Engine) || !isInterp(run.Interp.Engine) {
		return nil, fmt.Errorf("want the compiled engine first and the interpreter second, got %q then %q", run.Compiled.Engine, run.Interp.Engine)
	}
	return run, nil
}

func isInterp(engine string) bool { return strings.HasPrefix(engine, "interp") }

// excerpt is at most the first 2000 bytes of b, for error messages.
func excerpt(b []byte) string {
	const max = 2000
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return "(empty)"
	}
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// JSON is results.json.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ceilings returns the measured read GB/s and FMA GFLOP/s across the runs,
// as text ("17.0", or "16.8–17.2" when the runs measured different values).
func (r *Report) ceilings() (read, fma string) {
	span := func(get func(Result) float64, f func(float64) string) string {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, m := range r.Models {
			for _, res := range []Result{m.Compiled, m.Interp} {
				if v := get(res); v > 0 {
					lo, hi = min(lo, v), max(hi, v)
				}
			}
		}
		switch {
		case math.IsInf(lo, 1):
			return "n/a"
		case f(lo) == f(hi):
			return f(lo)
		}
		return f(lo) + "–" + f(hi)
	}
	read = span(func(x Result) float64 { return x.ReadGBs }, func(v float64) string { return fmt.Sprintf("%.1f", v) })
	fma = span(func(x Result) float64 { return x.FMAGFLOP }, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	return read, fma
}

// machineLine names the machine in one line.
func (r *Report) machineLine() string {
	s := r.Machine.CPU
	if s == "" {
		s = "unknown CPU"
	}
	s += " (" + r.Machine.Arch
	if r.Machine.Threads > 0 {
		s += fmt.Sprintf(", %d threads", r.Machine.Threads)
	}
	return s + ")"
}

// Row is one line of the markdown table.
type Row struct {
	Model, Engine                 string
	Threads                       int
	PrefillTokS, PrefillGFLOP     float64
	PrefillPeakPct                float64 // % of the FMA peak; 0 when not measured
	DecodeTokS, DecodeStepTokS    float64 // all steps' mean; the median step
	DecodeRooflineTok             float64
	DecodeRooflinePct             float64 // % of the bandwidth roofline
	DecodePairedPct               float64 // the same, step by step; 0 when not measured
	PrefillSpeedup, DecodeSpeedup float64 // compiled ÷ interpreter; 0 on interpreter rows
}

// Rows is the table's rows: per model, the compiled engine then the
// interpreter.
func (r *Report) Rows() []Row {
	var rows []Row
	for _, m := range r.Models {
		for _, res := range []Result{m.Compiled, m.Interp} {
			row := Row{
				Model: m.Name, Engine: res.Engine, Threads: res.Threads,
				PrefillTokS: res.PrefillTokS, PrefillGFLOP: res.PrefillGFLOP,
				PrefillPeakPct: 100 * res.PrefillPeakFraction,
				DecodeTokS:     res.DecodeTokS, DecodeStepTokS: res.DecodeStepTokS,
				DecodeRooflineTok: res.DecodeRooflineTokS,
				DecodeRooflinePct: 100 * res.DecodeRooflineFraction,
				DecodePairedPct:   100 * res.DecodeRooflinePaired,
			}
			if !isInterp(res.Engine) {
				row.PrefillSpeedup = ratio(res.PrefillTokS, m.Interp.PrefillTokS)
				row.DecodeSpeedup = ratio(res.DecodeTokS, m.Interp.DecodeTokS)
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// Markdown is results.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	read, fma := r.ceilings()
	fmt.Fprintf(&b, "# gemmac bench, %s\n\n", r.Date.Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %s; measured read %s GB/s, FMA %s GFLOP/s. Prompt %d tokens, %d generated tokens; %s.\n\n",
		r.machineLine(), read, fma, r.PromptTokens, r.GenTokens, r.Date.Format(time.RFC3339))
	b.WriteString("| model | engine | threads | prefill tok/s | prefill GFLOP/s | % of FMA peak | decode tok/s | median step tok/s | decode roofline tok/s | % of roofline | step by step | prefill speedup | decode speedup |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, row := range r.Rows() {
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			mdEscape(row.Model), mdEscape(row.Engine), row.Threads,
			fmtNum(row.PrefillTokS), fmtNum(row.PrefillGFLOP), fmtPct(row.PrefillPeakPct),
			fmtNum(row.DecodeTokS), fmtNum(row.DecodeStepTokS), fmtNum(row.DecodeRooflineTok), fmtPct(row.DecodeRooflinePct), fmtPct(row.DecodePairedPct),
			fmtSpeedup(row.PrefillSpeedup), fmtSpeedup(row.DecodeSpeedup))
	}
	b.WriteString("\nSpeedups are compiled ÷ interpreter on the same model, shown on the compiled row. " +
		"The decode roofline is read bandwidth ÷ (weight + KV bytes per token), the bandwidth being the median of samples taken between the decode steps (untimed); " +
		"the % of roofline compares the median step with it, so both sides are sampled over the same seconds of a shared machine; " +
		"step by step is the median over the steps of each against the sample taken right after its pair of steps, milliseconds apart. " +
		"The FMA peak is the machine's measured fused multiply-add rate: the best of the FMA runs before the first prefill and after each. " +
		r.prefillRunsNote() + "\n\n")
	b.WriteString("Command:\n\n```sh\n" + r.Command + "\n```\n\nwhich ran:\n\n```sh\n")
	for _, m := range r.Models {
		b.WriteString(shellJoin(m.Argv) + "\n")
	}
	b.WriteString("```\n")
	return b.String()
}

// prefillRunsNote says which prefill the compiled figures come from.
func (r *Report) prefillRunsNote() string {
	if r.PrefillRuns <= 1 {
		return "Each engine prefilled the prompt once."
	}
	return fmt.Sprintf("The compiled engine prefilled the prompt %d times and shows the median run, set against that peak; the interpreter prefilled once.", r.PrefillRuns)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// fmtNum prints v with about three significant digits, whole numbers from
// 100 up.
func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case v == 0 || math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func fmtPct(p float64) string {
	switch {
	case p == 0 || math.IsNaN(p) || math.IsInf(p, 0):
		return "—"
	case p < 0.995: // two decimals under 1%; 0.999 would print as "1.00%"
		return fmt.Sprintf("%.2f%%", p)
	}
	return fmt.Sprintf("%.1f%%", p)
}

func fmtSpeedup(s float64) string {
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return ""
	}
	if s < 10 {
		return fmt.Sprintf("%.2f×", s)
	}
	return fmt.Sprintf("%.1f×", s)
}
