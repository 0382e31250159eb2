// Command report runs `gemmac bench --json --compare` on one or more models
// and writes the results as JSON, a markdown table and an SVG chart.
//
//	go run ./bench/report --gemmac bin/gemmac --model NAME=DIR[:DTYPE] [--model ...] \
//		[--prompt-tokens 128] [--gen-tokens 16] [--prefill-runs 3] [--threads N] --out bench/results
//
// It writes OUT/results.json (every raw result, with the machine and the
// command line), OUT/results.md (one table row per model and engine) and
// OUT/chart.svg (throughput and fractions of the machine's ceilings).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gemmac/gemmac/codegen"
)

// modelSpec is one --model NAME=DIR[:DTYPE].
type modelSpec struct{ Name, Dir, DType string }

// weightDTypes are the DTYPE suffixes --model accepts: gemmac bench
// converts the checkpoint's layers to it at load (--dtype).
var weightDTypes = []string{"f32", "bf16", "q8_0", "q4_0"}

// modelFlag collects repeated --model flags.
type modelFlag []modelSpec

func (m *modelFlag) String() string {
	var parts []string
	for _, s := range *m {
		p := s.Name + "=" + s.Dir
		if s.DType != "" {
			p += ":" + s.DType
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func (m *modelFlag) Set(v string) error {
	name, dir, ok := strings.Cut(v, "=")
	name, dir = strings.TrimSpace(name), strings.TrimSpace(dir)
	if !ok || name == "" || dir == "" {
		return fmt.Errorf("want NAME=DIR (for example gocoder=examples/gocoder), got %q", v)
	}
	for _, s := range *m {
		if s.Name == name {
			return fmt.Errorf("model name %q given twice", name)
		}
	}
	var dtype string
	if i := strings.LastIndex(dir, ":"); i >= 0 && slices.Contains(weightDTypes, dir[i+1:]) {
		dir, dtype = dir[:i], dir[i+1:]
	}
	*m = append(*m, modelSpec{name, dir, dtype})
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit: 0 on success, 1 on failure, 2 on a usage
// error.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./bench/report --gemmac bin/gemmac --model NAME=DIR [--model NAME=DIR ...] [--prompt-tokens 128] [--gen-tokens 16] [--prefill-runs 3] [--threads N] --out bench/results")
		fs.PrintDefaults()
	}
	var models modelFlag
	gemmac := fs.String("gemmac", "bin/gemmac", "the gemmac binary (build it with: go build -o bin/gemmac ./cmd/gemmac)")
	fs.Var(&models, "model", "NAME=DIR of a model to benchmark, or NAME=DIR:DTYPE (f32, bf16, q8_0, q4_0) to convert its weights at load; repeat for more models")
	promptTokens := fs.Int("prompt-tokens", 128, "tokens in the prompt (one prefill)")
	genTokens := fs.Int("gen-tokens", 16, "tokens to decode after it")
	prefillRuns := fs.Int("prefill-runs", 3, "prefills of the compiled engine, the median reported (gemmac bench --prefill-runs; the interpreter prefills once)")
	threads := fs.Int("threads", 0, "CPU threads to pass to gemmac (default: gemmac's own, one per CPU)")
	out := fs.String("out", "bench/results", "folder to write results.json, results.md and chart.svg to")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "report: "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case len(models) == 0:
		return usage("give at least one --model NAME=DIR")
	case *promptTokens < 1 || *genTokens < 1 || *prefillRuns < 1:
		return usage("--prompt-tokens, --gen-tokens and --prefill-runs must be positive")
	case *threads < 0:
		return usage("--threads must not be negative")
	case *out == "":
		return usage("--out must not be empty")
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "report: %v\n", err)
		return 1
	}
	bin, err := findBinary(*gemmac)
	if err != nil {
		return fail(err)
	}
	for _, m := range models {
		if st, err := os.Stat(m.Dir); err != nil {
			return fail(fmt.Errorf("--model %s=%s: %w", m.Name, m.Dir, err))
		} else if !st.IsDir() {
			return fail(fmt.Errorf("--model %s=%s: not a directory", m.Name, m.Dir))
		}
	}

	rep := &Report{
		Date:         time.Now().UTC().Truncate(time.Second),
		Command:      commandLine(args),
		PromptTokens: *promptTokens,
		GenTokens:    *genTokens,
		PrefillRuns:  *prefillRuns,
		Machine:      machineInfo(),
	}
	for _, m := range models {
		cmdArgs := []string{"bench", "--model", m.Dir,
			"--prompt-tokens", strconv.Itoa(*promptTokens),
			"--gen-tokens", strconv.Itoa(*genTokens),
			"--prefill-runs", strconv.Itoa(*prefillRuns),
			"--json", "--compare"}
		if m.DType != "" {
			cmdArgs = append(cmdArgs, "--dtype", m.DType)
		}
		if *threads > 0 {
			cmdArgs = append(cmdArgs, "--threads", strconv.Itoa(*threads))
		}
		argv := append([]string{bin}, cmdArgs...)
		fmt.Fprintf(stderr, "report: %s: running %s\n", m.Name, shellJoin(argv))
		start := time.Now()
		cmd := exec.Command(bin, cmdArgs...)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(stderr, "report: %s: command failed (%v):\n  %s\n", m.Name, err, shellJoin(argv))
			if se.Len() > 0 {
				fmt.Fprintf(stderr, "its stderr:\n%s", ensureNewline(se.String()))
			} else {
				fmt.Fprintln(stderr, "its stderr was empty")
			}
			return 1
		}
		run, err := parseBench(so.Bytes())
		if err != nil {
			fmt.Fprintf(stderr, "report: %s: cannot read the output of\n  %s\n%v\n", m.Name, shellJoin(argv), err)
			if se.Len() > 0 {
				fmt.Fprintf(stderr, "its stderr:\n%s", ensureNewline(se.String()))
			}
			return 1
		}
		run.Name, run.Dir, run.Argv = m.Name, m.Dir, argv
		rep.Models = append(rep.Models, *run)
		fmt.Fprintf(stderr, "report: %s: done in %.1fs (decode %s tok/s compiled, %s interpreted)\n",
			m.Name, time.Since(start).Seconds(), fmtNum(run.Compiled.DecodeTokS), fmtNum(run.Interp.DecodeTokS))
	}
	rep.Machine.Threads = *threads
	if rep.Machine.Threads == 0 && len(rep.Models) > 0 {
		rep.Machine.Threads = rep.Models[0].Compiled.Threads
	}

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fail(err)
	}
	js, err := rep.JSON()
	if err != nil {
		return fail(err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"results.json", js},
		{"results.md", []byte(rep.Markdown())},
		{"chart.svg", []byte(rep.SVG())},
	}
	for _, f := range files {
		p := filepath.Join(*out, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", p)
	}
	return 0
}

// findBinary resolves --gemmac to an executable file, with a hint on how to
// build it when it is missing.
func findBinary(name string) (string, error) {
	const hint = "build it with: go build -o bin/gemmac ./cmd/gemmac"
	if !strings.ContainsRune(name, filepath.Separator) {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("gemmac binary %q not found in $PATH (%s)", name, hint)
		}
		return p, nil
	}
	st, err := os.Stat(name)
	if err != nil {
		return "", fmt.Errorf("gemmac binary %s not found (%s)", name, hint)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("gemmac binary %s is not an executable file (%s)", name, hint)
	}
	return name, nil
}

// machineInfo describes this machine: `uname -m` and the CPU model name.
func machineInfo() Machine {
	m := Machine{Arch: runtime.GOARCH}
	if out, err := exec.Command("uname", "-m").Output(); err == nil {
		if s := strings.TrimSpace(string(out)); s != "" {
			m.Arch = s
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(string(b))
	}
	return m
}

// cpuModel finds the CPU's name in the text of /proc/cpuinfo, or "".
func cpuModel(cpuinfo string) string {
	// x86 says "model name"; some ARM kernels say "Model" or "Processor".
	for _, key := range []string{"model name", "Model", "Processor", "cpu model"} {
		if v := codegen.CPUInfoField(cpuinfo, key); v != "" {
			return v
		}
	}
	return ""
}

// commandLine is how this run was started, as one shell line.
func commandLine(args []string) string {
	self := os.Args[0]
	// go run builds into a temporary folder; say what was typed instead.
	if strings.Contains(self, "go-build") || strings.HasPrefix(self, os.TempDir()) {
		self = "go run ./bench/report"
	} else {
		self = shellQuote(self)
	}
	if len(args) == 0 {
		return self
	}
	return self + " " + shellJoin(args)
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

func ensureNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}
