package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/cmd/gemmac/cli"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/model"
)

func loadConverted(t *testing.T, name string, conv frontend.Conversion, compiled bool) *model.Model {
	t.Helper()
	return loadWith(t, name, model.Options{Context: 64, Convert: conv}, compiled)
}

// TestEveryDTypeCompiled converts the tiny models to every weight dtype at
// load and runs them compiled and interpreted, within 1e-4, except where the
// target rounds activations for integer dot products (xTolerance: bytes ≤
// 1.0 and the same argmax, the reference data's tolerance for that; 16
// bits, wordsTol). The q8_0 / q4_0
// conversions of tiny-hot are llama-quantize's bytes, so they also meet the
// float64 references of its GGUFs (≤ 1e-3, or that tolerance).
func TestEveryDTypeCompiled(t *testing.T) {
	cases := []struct {
		model string
		dt    ir.DType
		ref   string
	}{
		{"tiny", ir.BF16, ""},
		{"tiny-bf16", ir.F32, "tiny.hf-math.json"},
		{"tiny", ir.Q8_0, ""},
		{"tiny", ir.Q4_0, ""},
		{"tiny-hot", ir.Q8_0, "tiny-hot.q8_0.hf-math.json"},
		{"tiny-hot", ir.Q4_0, "tiny-hot.q4_0.hf-math.json"},
	}
	ids := loadRef(t, "tiny.hf-math.json").Tokens
	for _, c := range cases {
		t.Run(c.model+"-"+c.dt.String(), func(t *testing.T) {
			// The reference comparisons need llama-quantize's bytes; the
			// others run the default, searched q4_0 scales.
			conv := frontend.Conversion{Layers: c.dt, Embed: c.dt, LlamaRounding: c.ref != ""}
			compiled := loadConverted(t, c.model, conv, true)
			interp := loadConverted(t, c.model, conv, false)
			want := logitsOf(t, interp, ids, len(ids))
			for _, prefill := range []int{len(ids), 11} {
				got := logitsOf(t, compiled, ids, prefill)
				what := fmt.Sprintf("prefill %d", prefill)
				checkAgainstInterp(t, what+" against the interpreter", got, want, c.dt)
				if c.ref != "" {
					checkAgainstRef(t, what+" against "+c.ref, got[:prefill], loadRef(t, c.ref).Logits[:prefill], c.dt)
				}
			}
		})
	}
}

// TestBuiltQuantizedBinary builds tiny-hot with --dtype q4_0: the binary
// reads its packed weights file and meets the reference of llama.cpp's q4_0
// GGUF; a damaged, foreign or missing weights file is a clear error.
func TestBuiltQuantizedBinary(t *testing.T) {
	gemmac, _ := gemmacBuild(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "tiny-q4")
	cmd := exec.Command(gemmac, "build", "--model", modelDir("tiny-hot"), "--dtype", "q4_0", "--embed-dtype", "q4_0", "--llama-rounding", "--max-seq", "64", "-o", bin)
	cmd.Env = append(os.Environ(), "GEMMAC_SRC="+mustAbs(".."))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gemmac build --dtype q4_0: %v\n%s", err, out)
	}
	ref := loadRef(t, "tiny-hot.q4_0.hf-math.json")
	tokens := strings.Trim(strings.Join(strings.Fields(strings.Trim(string(mustJSON(ref.Tokens)), "[]")), ""), ",")
	logits := func(flags ...string) ([][]float32, string, error) {
		out, err := exec.Command(bin, append([]string{"logits", "--model", modelDir("tiny-hot"), "--tokens", tokens}, flags...)...).CombinedOutput()
		if err != nil {
			return nil, string(out), err
		}
		var r struct {
			Logits [][]float32 `json:"logits"`
		}
		return r.Logits, "", json.Unmarshal(out, &r)
	}
	got, out, err := logits()
	if err != nil {
		t.Fatalf("BIN logits: %v\n%s", err, out)
	}
	checkAgainstRef(t, "BIN logits against the q4_0 reference", got, ref.Logits, ir.Q4_0)
	// The interpreter in the binary runs the weights it was built with
	// (converted at load the same way), and bench --compare measures both
	// engines on them.
	interp, out, err := logits("--interp")
	if err != nil {
		t.Fatalf("BIN logits --interp: %v\n%s", err, out)
	}
	checkAgainstInterp(t, "BIN logits against BIN logits --interp", got, interp, ir.Q4_0)
	bench, err := exec.Command(bin, "bench", "--model", modelDir("tiny-hot"), "--compare", "--prompt-tokens", "4", "--gen-tokens", "2", "--no-roofline", "--json").Output()
	if err != nil {
		t.Fatalf("BIN bench --compare: %v", err)
	}
	var bytesPerToken []int64
	for dec := json.NewDecoder(strings.NewReader(string(bench))); dec.More(); {
		var r struct {
			WeightBytes int64 `json:"weight_bytes_per_token"`
		}
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		bytesPerToken = append(bytesPerToken, r.WeightBytes)
	}
	if len(bytesPerToken) != 2 || bytesPerToken[0] != bytesPerToken[1] {
		t.Errorf("BIN bench --compare: weight bytes per token %v, want the same q4_0 weights on both engines", bytesPerToken)
	}
	for _, cmd := range [][]string{{"eval", "--positions", "8", "--window", "4"}, {"logits", "--tokens", "2,3"}} {
		args := append(append(cmd, "--model", modelDir("tiny-hot")), "--dtype", "q8_0")
		if out, err := exec.Command(bin, args...).CombinedOutput(); err == nil || !strings.Contains(string(out), "converted at build time") {
			t.Errorf("BIN %s --dtype q8_0 on a q4_0 binary: %v, want a usage error\n%s", cmd[0], err, out)
		}
	}

	weights := bin + ".weights"
	good, err := os.ReadFile(weights)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", good[:len(good)/2], "truncated"},
		{"damaged", append(append([]byte(nil), good[:100]...), append([]byte{good[100] ^ 0xff}, good[101:]...)...), "fails its checksum"},
		{"foreign", []byte("GGUF\x03\x00\x00\x00 and more bytes than a header needs"), "not a gemmac weights file"},
	} {
		if err := os.WriteFile(weights, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, out, err := logits(); err == nil || !strings.Contains(out, c.want) || !strings.Contains(out, weights) {
			t.Errorf("%s weights file: %v: want an error naming %s and saying %q, got\n%s", c.name, err, weights, c.want, out)
		}
	}
	// Moved elsewhere, the file is found through --weights.
	moved := filepath.Join(t.TempDir(), "elsewhere.weights")
	if err := os.WriteFile(moved, good, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(weights)
	if _, out, err := logits(); err == nil || !strings.Contains(out, weights) {
		t.Errorf("missing weights file: %v: want an error naming %s, got\n%s", err, weights, out)
	}
	if viaFlag, out, err := logits("--weights", moved); err != nil || len(viaFlag) != len(got) || maxRowDiff(viaFlag, got) != 0 {
		t.Errorf("--weights %s: %v: want the logits of the file beside the binary\n%s", moved, err, out)
	}
}

// TestEvalQuality measures KL divergence and top-1 agreement of q8_0 and
// q4_0 against tiny-hot as stored, compiled and interpreted, and q4_0's
// searched scales against llama.cpp's rounding.
func TestEvalQuality(t *testing.T) {
	ref := loadModel(t, "tiny-hot", 64, true)
	ids := make([]int, 4*32+1)
	for i := range ids {
		ids[i] = (i*37 + 11) % ref.Config.VocabSize
	}
	kld := map[string]float64{}
	for _, dt := range []ir.DType{ir.Q8_0, ir.Q4_0} {
		for _, compiled := range []bool{true, false} {
			cand := loadConverted(t, "tiny-hot", frontend.Conversion{Layers: dt}, compiled)
			base := ref
			if !compiled {
				base = loadModel(t, "tiny-hot", 64, false)
			}
			r, err := cli.EvalAgainst(base, cand, ids, 32)
			if err != nil {
				t.Fatal(err)
			}
			q := r.Quality
			t.Logf("%v compiled=%v: mean KLD %.3g, top-1 %.4f over %d positions", dt, compiled, q.MeanKLD, q.Top1Agreement, r.TokensScored)
			if r.TokensScored != 128 || q.MeanKLD <= 0 || q.MeanKLD > 0.01 || q.Top1Agreement < 0.97 {
				t.Errorf("%v: %d positions, mean KLD %.3g, top-1 %.4f: want 128, 0 < KLD ≤ 0.01, ≥ 97%%", dt, r.TokensScored, q.MeanKLD, q.Top1Agreement)
			}
			kld[dt.String()+map[bool]string{true: "c", false: "i"}[compiled]] = q.MeanKLD
		}
	}
	for _, dt := range []ir.DType{ir.Q8_0, ir.Q4_0} {
		// Where the compiled kernels round activations to bytes, that
		// rounding adds to the weights' error: 6.5% of tiny-hot's small
		// q4_0 KLD (0.2% of the 2B's 0.064).
		limit := 1.05
		if quantizesActivations(dt) {
			limit = 1.10
		}
		if c, i := kld[dt.String()+"c"], kld[dt.String()+"i"]; c/i > limit || i/c > limit {
			t.Errorf("%v: compiled KLD %.4g and interpreted %.4g differ by more than %.0f%%", dt, c, i, 100*(limit-1))
		}
	}
	if kld["q4_0c"] <= kld["q8_0c"] {
		t.Errorf("q4_0 KLD %.3g not above q8_0's %.3g", kld["q4_0c"], kld["q8_0c"])
	}
	// The default searched q4_0 scales beat llama.cpp's rounding.
	llama := loadConverted(t, "tiny-hot", frontend.Conversion{Layers: ir.Q4_0, LlamaRounding: true}, true)
	r, err := cli.EvalAgainst(ref, llama, ids, 32)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("q4_0 with llama.cpp's rounding: mean KLD %.3g", r.Quality.MeanKLD)
	if kld["q4_0c"] >= r.Quality.MeanKLD {
		t.Errorf("q4_0 KLD with searched scales %.3g, with llama.cpp's rounding %.3g: want lower", kld["q4_0c"], r.Quality.MeanKLD)
	}
}
