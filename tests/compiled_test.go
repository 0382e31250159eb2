package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gemmac/gemmac/codegen"
	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/cpu"
	"github.com/gemmac/gemmac/runtime/model"
)

// compiledEngine compiles the checkpoint's kernels for this CPU into a
// shared object (cached per test run) and runs them in process; with
// opts.Batch above 1, with a batched decode step of that many rows.
func compiledEngine(t *testing.T) func(*frontend.Checkpoint, model.Options) (model.Engine, error) {
	cache := filepath.Join(os.TempDir(), "gemmac-test-kernels")
	return func(ckpt *frontend.Checkpoint, opts model.Options) (model.Engine, error) {
		c, err := cpucodegen.Build(ckpt.Config, ckpt.WeightDTypes(), cpucodegen.Options{Target: codegen.HostTarget(), Context: opts.Context, Chunk: 16, KVDType: opts.KVDType, Batch: opts.Batch})
		if err != nil {
			return nil, err
		}
		so, err := c.SharedObject(cache)
		if err != nil {
			return nil, err
		}
		k, err := cpu.LoadKernels(so, c.Artifact.Kernels)
		if err != nil {
			return nil, err
		}
		return cpu.New(c.Artifact, k, ckpt, cpu.Options{Threads: 2})
	}
}

func loadModel(t *testing.T, name string, ctx int, compiled bool) *model.Model {
	t.Helper()
	return loadWith(t, name, model.Options{Context: ctx}, compiled)
}

// loadWith loads a reference model with opts, on the compiled engine or
// the interpreter, closed when the test ends.
func loadWith(t *testing.T, name string, opts model.Options, compiled bool) *model.Model {
	t.Helper()
	if compiled {
		opts.Engine = compiledEngine(t)
	}
	m, err := model.Load(modelDir(name), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func logitsOf(t *testing.T, m *model.Model, tokens []int, prefill int) [][]float32 {
	t.Helper()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.Logits(tokens, prefill)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func maxRowDiff(a, b [][]float32) float64 {
	worst := 0.0
	for i := range a {
		for j := range a[i] {
			d := float64(a[i][j] - b[i][j])
			if d < 0 {
				d = -d
			}
			if d > worst || d != d {
				worst = d
			}
		}
	}
	return worst
}

// TestCompiledMatchesInterpreterAndReferences runs every reference model on
// the compiled kernels, with the sequence as one prefill, as chunks (16 per
// call, so the last is partial) and as prefill + decode.
func TestCompiledMatchesInterpreterAndReferences(t *testing.T) {
	cases := []struct{ model, ref string }{
		{"tiny", "tiny.hf-math.json"},
		{"tiny-hot", "tiny-hot.hf-math.json"},
		{"tiny-bf16", "tiny.hf-math.json"},
		{"gocoder", "gocoder.hf-math.json"},
	}
	for _, c := range cases {
		t.Run(c.model, func(t *testing.T) {
			ref := loadRef(t, c.ref)
			compiled := loadModel(t, c.model, 64, true)
			interp := loadModel(t, c.model, 64, false)
			want := logitsOf(t, interp, ref.Tokens, len(ref.Tokens))
			for _, prefill := range []int{len(ref.Tokens), 11, 1, 0} {
				got := logitsOf(t, compiled, ref.Tokens, prefill)
				d := maxRowDiff(got, want)
				if d > 1e-4 {
					t.Errorf("prefill %d: compiled differs from the interpreter by %.3g", prefill, d)
				}
				worst, row, col := maxAbsDiff(t, got, ref.Logits)
				if worst > 1e-3 {
					t.Errorf("prefill %d: compiled differs from %s by %.3g at %d,%d", prefill, c.ref, worst, row, col)
				}
				t.Logf("prefill %d: max |Δlogit| %.3g from the interpreter, %.3g from %s", prefill, d, worst, c.ref)
			}
		})
	}
}

func TestCompiledGreedyAndSeededGeneration(t *testing.T) {
	ref := loadGreedyRef(t)
	compiled := loadModel(t, "gocoder", 128, true)
	interp := loadModel(t, "gocoder", 128, false)
	generate := func(m *model.Model, opts model.GenerateOptions) []int {
		s, _ := m.NewSession()
		var ids []int
		if _, err := s.GenerateTokens(context.Background(), ref.PromptIDs, opts, func(id int) bool {
			ids = append(ids, id)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	greedy := model.GenerateOptions{MaxTokens: len(ref.GreedyIDs)}
	if diff := cmp.Diff(ref.GreedyIDs, generate(compiled, greedy)); diff != "" {
		t.Errorf("compiled greedy continuation differs from the reference (-want +got):\n%s", diff)
	}
	seeded := model.GenerateOptions{MaxTokens: 32}
	seeded.Temperature, seeded.TopP, seeded.Seed = 0.8, 0.95, 42
	if a, b := generate(compiled, seeded), generate(interp, seeded); !equalInts(a, b) {
		t.Errorf("seed 42: compiled %v, interpreter %v", a, b)
	}
}

func TestCompiledRejectsBadCalls(t *testing.T) {
	m := loadModel(t, "tiny", 16, true)
	s, _ := m.NewSession()
	if _, err := s.Logits(make([]int, 17), 17); err == nil || !strings.Contains(err.Error(), "context of 16") {
		t.Errorf("17 tokens in a 16-token context: %v", err)
	}
	if _, err := s.Logits([]int{2, 512}, 2); err == nil || !strings.Contains(err.Error(), "512") {
		t.Errorf("token 512 of a 512 vocabulary: %v", err)
	}
}

var buildOnce sync.Once
var builtBinary string
var buildErr error

// gemmacBuild builds cmd/gemmac and uses it to build tiny into a binary, once.
func gemmacBuild(t *testing.T) (gemmac, bin string) {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "gemmac-test-build")
	gemmac = filepath.Join(dir, "gemmac")
	buildOnce.Do(func() {
		os.MkdirAll(dir, 0o755)
		if out, err := exec.Command("go", "build", "-o", gemmac, "../cmd/gemmac").CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("%s", out)
			return
		}
		builtBinary = filepath.Join(dir, "tiny-bin")
		cmd := exec.Command(gemmac, "build", "--model", modelDir("tiny"), "--target", "cpu", "--max-seq", "64", "--chunk", "16", "--emit", "ll", "-o", builtBinary)
		cmd.Env = append(os.Environ(), "GEMMAC_SRC="+mustAbs(".."))
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("gemmac build: %v", buildErr)
	}
	return gemmac, builtBinary
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

func TestBuiltBinary(t *testing.T) {
	gemmac, bin := gemmacBuild(t)
	ref := loadRef(t, "tiny.hf-math.json")
	ids := make([]string, len(ref.Tokens))
	for i, id := range ref.Tokens {
		ids[i] = strings.TrimSpace(string(mustJSON(id)))
	}
	tokens := strings.Join(ids, ",")
	logits := func(name string, args ...string) [][]float32 {
		out, err := exec.Command(name, append([]string{"logits", "--model", modelDir("tiny"), "--tokens", tokens}, args...)...).Output()
		if err != nil {
			t.Fatalf("%s logits %v: %v", name, args, err)
		}
		var r struct {
			Logits [][]float32 `json:"logits"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		return r.Logits
	}
	want := logits(gemmac, "--interp", "--max-seq", "64")
	for _, args := range [][]string{nil, {"--prefill", "9"}, {"--prefill", "0"}} {
		got := logits(bin, args...)
		if d := maxRowDiff(got, want); d > 1e-4 {
			t.Errorf("BIN logits %v differs from gemmac logits --interp by %.3g", args, d)
		}
	}
	if _, err := os.Stat(bin + ".ll"); err != nil {
		t.Errorf("--emit ll wrote no IR: %v", err)
	}

	// A checkpoint of another shape is refused, naming the field.
	out, err := exec.Command(bin, "logits", "--model", modelDir("gocoder"), "--tokens", "2,3").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "vocab_size is 4096, the binary was compiled for 512") {
		t.Errorf("gocoder on a tiny binary: %v\n%s", err, out)
	}
	// A context other than the compiled one is refused.
	out, err = exec.Command(bin, "logits", "--model", modelDir("tiny"), "--max-seq", "128", "--tokens", "2,3").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "compiled for a context of 64") {
		t.Errorf("--max-seq 128 on a 64-token binary: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "logits", "--model", modelDir("tiny"), "--tokens", strings.Repeat("2,", 64)+"2").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "context of 64") {
		t.Errorf("65 tokens on a 64-token binary: %v\n%s", err, out)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestCUDABinaryWithoutAGPU builds tiny for CUDA (PTX through LLVM's NVPTX
// backend, embedded in a cgo-free binary) and runs it here, where CI has no
// GPU: it must start, say plainly that there is no driver, and still run
// the interpreter. bench/gpu/check_binary.sh runs the same binary on a GPU.
func TestCUDABinaryWithoutAGPU(t *testing.T) {
	gemmac, _ := gemmacBuild(t)
	var bin string
	// sm_90 builds pass LLVM 14 (which stops at sm_86) and add
	// programmatic dependent launch, an sm_90 PTX 7.8 instruction.
	for _, c := range []struct{ sm, version, pdl string }{{"sm_90", ".version 7.8", "griddepcontrol.wait"}, {"sm_80", ".version 7.5", ""}} {
		bin = filepath.Join(t.TempDir(), "tiny-cuda")
		cmd := exec.Command(gemmac, "build", "--model", modelDir("tiny"), "--target", "cuda:"+c.sm, "--max-seq", "64", "--emit", "ptx", "-o", bin)
		cmd.Env = append(os.Environ(), "GEMMAC_SRC="+mustAbs(".."))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gemmac build --target cuda:%s: %v\n%s", c.sm, err, out)
		}
		ptxText, err := os.ReadFile(bin + ".ptx")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{".target " + c.sm, c.version, ".entry", c.pdl} {
			if !strings.Contains(string(ptxText), want) {
				t.Errorf("--emit ptx for %s lacks %q", c.sm, want)
			}
		}
		if c.pdl == "" && strings.Contains(string(ptxText), "griddepcontrol") {
			t.Errorf("PTX for %s uses griddepcontrol (sm_90 only)", c.sm)
		}
	}
	if _, err := exec.LookPath("nvidia-smi"); err == nil {
		t.Skip("a GPU is present: the no-driver path cannot be tested here")
	}
	out, err := exec.Command(bin, "logits", "--model", modelDir("tiny"), "--tokens", "2,3").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no CUDA driver found") {
		t.Errorf("without a GPU: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "logits", "--interp", "--model", modelDir("tiny"), "--tokens", "2,3").Output()
	if err != nil || !strings.HasPrefix(string(out), `{"tokens":[2,3],"logits":[[`) {
		t.Errorf("--interp on the CUDA binary: %v\n%s", err, out)
	}
}
