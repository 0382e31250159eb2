package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Canned `gemmac bench --json --compare` output for two models.
const (
	benchA = `{"engine":"compiled cpu x86-64-v4","threads":4,"prompt_tokens":128,"gen_tokens":16,"prefill_s":0.5,"decode_s":0.4,"prefill_tok_s":256,"decode_tok_s":40,"decode_step_tok_s":41,"weight_bytes_per_token":1000000,"kv_bytes_per_token":0,"kv_cache_bytes":1,"prefill_flops":1e9,"prefill_gflop_s":60,"read_gb_s":50,"fma_gflop_s":100,"decode_roofline_tok_s":50,"decode_roofline_fraction":0.8,"decode_roofline_fraction_paired":0.85,"prefill_peak_fraction":0.6,"future_field":1}
{"engine":"interp","threads":4,"prompt_tokens":128,"gen_tokens":16,"prefill_s":5,"decode_s":4,"prefill_tok_s":25.6,"decode_tok_s":4,"decode_step_tok_s":4.1,"weight_bytes_per_token":1000000,"kv_bytes_per_token":0,"kv_cache_bytes":1,"prefill_flops":1e9,"prefill_gflop_s":6,"read_gb_s":50,"fma_gflop_s":100,"decode_roofline_tok_s":50,"decode_roofline_fraction":0.08,"prefill_peak_fraction":0.06}
`
	benchB = `{"engine":"compiled cpu x86-64-v4","threads":4,"prompt_tokens":128,"gen_tokens":16,"prefill_s":1,"decode_s":1,"prefill_tok_s":30,"decode_tok_s":9.5,"decode_step_tok_s":9.8,"weight_bytes_per_token":5000000,"kv_bytes_per_token":0,"kv_cache_bytes":1,"prefill_flops":1e10,"prefill_gflop_s":45,"read_gb_s":50,"fma_gflop_s":100,"decode_roofline_tok_s":10,"decode_roofline_fraction":0.95,"decode_roofline_fraction_paired":0.9,"prefill_peak_fraction":0.45}
{"engine":"interp","threads":4,"prompt_tokens":128,"gen_tokens":16,"prefill_s":10,"decode_s":8,"prefill_tok_s":2.5,"decode_tok_s":1.9,"decode_step_tok_s":2,"weight_bytes_per_token":5000000,"kv_bytes_per_token":0,"kv_cache_bytes":1,"prefill_flops":1e10,"prefill_gflop_s":3.75,"read_gb_s":50,"fma_gflop_s":100,"decode_roofline_tok_s":10,"decode_roofline_fraction":0.19,"prefill_peak_fraction":0.0375}
`
)

func cannedReport(t *testing.T) *Report {
	t.Helper()
	rep := &Report{
		Date:         time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Machine:      Machine{Arch: "x86_64", CPU: "Test CPU <9000> & co", Threads: 4},
		Command:      "go run ./bench/report --model a=x --model b=y",
		PromptTokens: 128, GenTokens: 16,
	}
	for _, c := range []struct{ name, out string }{{"alpha", benchA}, {"beta|b", benchB}} {
		run, err := parseBench([]byte(c.out))
		if err != nil {
			t.Fatalf("parseBench(%s): %v", c.name, err)
		}
		run.Name, run.Dir, run.Argv = c.name, "/m/"+c.name, []string{"bin/gemmac", "bench"}
		rep.Models = append(rep.Models, *run)
	}
	return rep
}

func TestParseBench(t *testing.T) {
	run, err := parseBench([]byte(benchA))
	if err != nil {
		t.Fatal(err)
	}
	if run.Compiled.Engine != "compiled cpu x86-64-v4" || run.Interp.Engine != "interp" {
		t.Errorf("engines %q, %q", run.Compiled.Engine, run.Interp.Engine)
	}
	if run.Compiled.DecodeRooflineFraction != 0.8 || run.Interp.PrefillTokS != 25.6 {
		t.Errorf("fields not read: %+v", run)
	}
	if !strings.Contains(string(run.Raw[0]), "future_field") {
		t.Errorf("raw result lost a field: %s", run.Raw[0])
	}
	lines := strings.SplitAfter(benchA, "\n")
	for name, bad := range map[string]string{
		"empty":     "",
		"one line":  lines[0],
		"three":     benchA + lines[0],
		"not JSON":  "error: oops\n",
		"truncated": benchA[:len(benchA)-40],
		"swapped":   lines[1] + lines[0],
		"no rates":  `{"engine":"compiled"}` + "\n" + `{"engine":"interp"}` + "\n",
	} {
		if _, err := parseBench([]byte(bad)); err == nil {
			t.Errorf("%s: parseBench accepted %q", name, bad)
		}
	}
}

func TestRowsAndMarkdown(t *testing.T) {
	rep := cannedReport(t)
	rows := rep.Rows()
	want := []struct {
		model, engine                string
		prefillPct, decodePct        float64
		prefillSpeedup, decodeSpeedu float64
	}{
		{"alpha", "compiled cpu x86-64-v4", 60, 80, 10, 10},
		{"alpha", "interp", 6, 8, 0, 0},
		{"beta|b", "compiled cpu x86-64-v4", 45, 95, 12, 5},
		{"beta|b", "interp", 3.75, 19, 0, 0},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	for i, w := range want {
		r := rows[i]
		if r.Model != w.model || r.Engine != w.engine || r.Threads != 4 ||
			!near(r.PrefillPeakPct, w.prefillPct) || !near(r.DecodeRooflinePct, w.decodePct) ||
			!near(r.PrefillSpeedup, w.prefillSpeedup) || !near(r.DecodeSpeedup, w.decodeSpeedu) {
			t.Errorf("row %d = %+v, want %+v", i, r, w)
		}
	}

	md := rep.Markdown()
	var tableRows []string
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| model ") {
			tableRows = append(tableRows, line)
		}
	}
	wantRows := []string{
		`| alpha | compiled cpu x86-64-v4 | 4 | 256 | 60.0 | 60.0% | 40.0 | 41.0 | 50.0 | 80.0% | 85.0% | 10.0× | 10.0× |`,
		`| alpha | interp | 4 | 25.6 | 6.00 | 6.0% | 4.00 | 4.10 | 50.0 | 8.0% | — |  |  |`,
		`| beta\|b | compiled cpu x86-64-v4 | 4 | 30.0 | 45.0 | 45.0% | 9.50 | 9.80 | 10.0 | 95.0% | 90.0% | 12.0× | 5.00× |`,
		`| beta\|b | interp | 4 | 2.50 | 3.75 | 3.8% | 1.90 | 2.00 | 10.0 | 19.0% | — |  |  |`,
	}
	if strings.Join(tableRows, "\n") != strings.Join(wantRows, "\n") {
		t.Errorf("table rows:\n%s\nwant:\n%s", strings.Join(tableRows, "\n"), strings.Join(wantRows, "\n"))
	}
	for _, s := range []string{
		"Test CPU <9000> & co (x86_64, 4 threads)",
		"read 50.0 GB/s, FMA 100 GFLOP/s",
		rep.Command,
		"bin/gemmac bench",
		"Each engine prefilled the prompt once.",
	} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

func TestSVG(t *testing.T) {
	rep := cannedReport(t)
	svg := rep.SVG()

	// Well-formed XML, read to the end.
	type elem struct {
		name  string
		attrs map[string]string
		text  string
	}
	var elems []elem
	dec := xml.NewDecoder(strings.NewReader(svg))
	var stack []int
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, svg)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := elem{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			elems = append(elems, e)
			stack = append(stack, len(elems)-1)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			for _, i := range stack { // a <title> child counts as its parent's text too
				elems[i].text += string(tok)
			}
		}
	}
	if len(elems) == 0 || elems[0].name != "svg" || elems[0].attrs["xmlns"] == "" && !strings.Contains(svg, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Fatalf("root is not an svg element")
	}
	if strings.Contains(svg, "<script") || strings.Contains(svg, "@import") || strings.Contains(svg, "href=") {
		t.Errorf("SVG is not self-contained")
	}

	// One bar per value: 2 models × 2 engines × 2 metrics × 2 panels.
	bars := map[string]int{}
	var targets []string
	texts := map[string]bool{}
	for _, e := range elems {
		class := e.attrs["class"]
		switch {
		case e.name == "rect" && strings.HasPrefix(class, "bar "):
			bars[class]++
			h := e.attrs["height"]
			var v float64
			if _, err := fmt.Sscan(h, &v); err != nil || v <= 0 {
				t.Errorf("bar %q has height %q", e.text, h)
			}
		case e.name == "line" && class == "target":
			targets = append(targets, e.text)
		case e.name == "text":
			texts[e.text] = true
		}
	}
	if bars["bar compiled"] != 8 || bars["bar interpreter"] != 8 {
		t.Errorf("bars: %v, want 8 compiled and 8 interpreter", bars)
	}
	if strings.Join(targets, ",") != "target 90%,target 60%" {
		t.Errorf("target lines %q, want target 90%% and 60%%", targets)
	}
	for _, s := range []string{
		"Test CPU <9000> & co (x86_64, 4 threads)", // the machine, unescaped back
		"tokens/s (log scale)", "% of ceiling",
		"compiled", "interpreter", "target 90%", "target 60%",
		"alpha", "beta|b", "95.0%", "256",
	} {
		if !texts[s] {
			t.Errorf("SVG has no text %q", s)
		}
	}
}

func TestLogAxis(t *testing.T) {
	a := newLogAxis([]float64{1.9, 256})
	if a.lo != 1 || a.hi != 1000 {
		t.Errorf("axis %+v, want 1..1000", a)
	}
	if h := a.height(10); math.Abs(h-plotHeight/3.0) > 1e-9 {
		t.Errorf("height(10) = %v", h)
	}
	if b := newLogAxis([]float64{10, 40}); b.lo != 1 {
		t.Errorf("a bar at the axis' bottom would vanish: %+v", b)
	}
}

func TestCPUModel(t *testing.T) {
	if got := cpuModel("processor\t: 0\nmodel name\t: AMD  EPYC 9654\nflags\t: x\n"); got != "AMD EPYC 9654" {
		t.Errorf("got %q", got)
	}
	if got := cpuModel("processor\t: 0\nBogoMIPS : 50\n"); got != "" {
		t.Errorf("got %q", got)
	}
}

func TestModelFlag(t *testing.T) {
	var m modelFlag
	for _, bad := range []string{"", "x", "=dir", "name=", "a b"} {
		if err := m.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	if err := m.Set("a=dir/x"); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("a=other"); err == nil {
		t.Error("a repeated name was accepted")
	}
	if err := m.Set("b=dir/y:q4_0"); err != nil || m[1] != (modelSpec{"b", "dir/y", "q4_0"}) {
		t.Errorf("b=dir/y:q4_0: %v, %+v", err, m)
	}
	if err := m.Set("c=dir:z"); err != nil || m[2] != (modelSpec{"c", "dir:z", ""}) {
		t.Errorf("c=dir:z (not a dtype): %v, %+v", err, m)
	}
}

// TestMain lets the test binary stand in for gemmac: with FAKE_GEMMAC set it
// prints that file's contents (or fails) as `gemmac bench` would.
func TestMain(m *testing.M) {
	if out, ok := os.LookupEnv("FAKE_GEMMAC"); ok {
		if out == "fail" {
			fmt.Fprintln(os.Stderr, "gemmac: model not found")
			os.Exit(1)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			panic(err)
		}
		os.Stdout.Write(b)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRunEndToEnd(t *testing.T) {
	dir := t.TempDir()
	canned := filepath.Join(dir, "bench.out")
	if err := os.WriteFile(canned, []byte(benchA), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	args := []string{"--gemmac", self, "--model", "a=" + dir, "--model", "b=" + dir, "--threads", "3", "--out", out}

	t.Setenv("FAKE_GEMMAC", canned)
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run = %d, stderr:\n%s", code, stderr.String())
	}
	for _, f := range []string{"results.json", "results.md", "chart.svg"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Machine Machine `json:"machine"`
		Models  []struct {
			Name    string            `json:"name"`
			Command []string          `json:"command"`
			Results []json.RawMessage `json:"results"`
		} `json:"models"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Machine.Threads != 3 || len(got.Models) != 2 || got.Models[1].Name != "b" || len(got.Models[0].Results) != 2 {
		t.Errorf("results.json: %s", b)
	}
	if cmd := strings.Join(got.Models[0].Command, " "); !strings.HasSuffix(cmd, "--prefill-runs 3 --json --compare --threads 3") {
		t.Errorf("gemmac command %q", cmd)
	}
	if md, err := os.ReadFile(filepath.Join(out, "results.md")); err != nil || !strings.Contains(string(md), "prefilled the prompt 3 times and shows the median run") {
		t.Errorf("results.md does not say how the prefill was measured (%v):\n%s", err, md)
	}

	// A failing gemmac: its command and stderr are shown, exit status 1.
	t.Setenv("FAKE_GEMMAC", "fail")
	stderr.Reset()
	if code := run(args, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "gemmac: model not found") ||
		!strings.Contains(stderr.String(), "bench --model") {
		t.Errorf("failing gemmac: code %d, stderr:\n%s", code, stderr.String())
	}

	// Unreadable output.
	if err := os.WriteFile(canned, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_GEMMAC", canned)
	stderr.Reset()
	if code := run(args, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "cannot read the output") {
		t.Errorf("bad output: code %d, stderr:\n%s", code, stderr.String())
	}

	// Usage errors.
	for _, bad := range [][]string{
		{"--gemmac", filepath.Join(dir, "nope"), "--model", "a=" + dir},
		{"--gemmac", self, "--model", "a"},
		{"--gemmac", self, "--model", "a=" + filepath.Join(dir, "missing")},
		{"--gemmac", self},
	} {
		stderr.Reset()
		if code := run(bad, io.Discard, &stderr); code == 0 || stderr.Len() == 0 {
			t.Errorf("run(%q) = %d, stderr %q", bad, code, stderr.String())
		}
	}
}
