package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/ir"
)

// svcMain is a service that imports two emitted packages and prints the
// logits of one of them: which package, the checkpoint, the weights file
// (for the converted one) and the tokens come from the command line.
const svcMain = `package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"example.com/svc/hotq4"
	"example.com/svc/tinymodel"
	"github.com/gemmac/gemmac/runtime/model"
)

func main() {
	which, dir, weights := os.Args[1], os.Args[2], os.Args[3]
	var ids []int
	for _, f := range strings.Split(os.Args[4], ",") {
		id, _ := strconv.Atoi(f)
		ids = append(ids, id)
	}
	load := tinymodel.Load
	if which == "hotq4" {
		load = hotq4.Load
	}
	m, err := load(dir, model.Options{WeightsFile: weights})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s, _ := m.NewSession()
	rows, err := s.Logits(ids, len(ids))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(rows)
}
`

// TestEmittedPackage compiles tiny, and tiny-hot converted to q4_0 at build
// time, into importable Go packages, builds a program that imports both (as
// a service would), and checks their logits: tiny's against the
// interpreter, tiny-hot's q4_0 (llama-quantize's bytes) against the float64
// reference on the GGUF's dequantised weights.
func TestEmittedPackage(t *testing.T) {
	gemmac, _ := gemmacBuild(t)
	dir := t.TempDir()
	emit := func(model, pkg string, extra ...string) {
		args := append([]string{"build", "--model", modelDir(model), "--target", "cpu", "--max-seq", "64", "--emit-package", filepath.Join(dir, pkg)}, extra...)
		if out, err := exec.Command(gemmac, args...).CombinedOutput(); err != nil {
			t.Fatalf("--emit-package %s: %v\n%s", pkg, err, out)
		}
	}
	emit("tiny", "tinymodel")
	emit("tiny-hot", "hotq4", "--dtype", "q4_0", "--embed-dtype", "q4_0", "--llama-rounding")
	src := mustAbs("..")
	goSum, _ := os.ReadFile(filepath.Join(src, "go.sum"))
	files := map[string]string{
		"go.mod":  "module example.com/svc\n\ngo 1.26.8\n\nrequire github.com/gemmac/gemmac v0.0.0\n\nreplace github.com/gemmac/gemmac => " + src + "\n",
		"go.sum":  string(goSum),
		"main.go": svcMain,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-mod=mod", "-o", "svc", ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a program that imports the packages: %v\n%s", err, out)
	}
	run := func(pkg, model, weights string, ids []int) ([][]float32, string, error) {
		list := make([]string, len(ids))
		for i, id := range ids {
			list[i] = strconv.Itoa(id)
		}
		var stderr strings.Builder
		cmd := exec.Command(filepath.Join(dir, "svc"), pkg, modelDir(model), weights, strings.Join(list, ","))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, stderr.String(), err
		}
		var rows [][]float32
		if err := json.Unmarshal(out, &rows); err != nil {
			t.Fatal(err)
		}
		return rows, stderr.String(), nil
	}

	ids := []int{2, 14, 51, 88, 125, 162, 199, 236, 273, 310, 347, 384}
	got, stderr, err := run("tinymodel", "tiny", "", ids)
	if err != nil {
		t.Fatalf("running tinymodel: %v\n%s", err, stderr)
	}
	want := logitsOf(t, loadModel(t, "tiny", 64, false), ids, len(ids))
	if d := maxRowDiff(got, want); d > 1e-4 || len(got) != len(want) {
		t.Errorf("tinymodel logits differ from the interpreter by %.3g (%d rows)", d, len(got))
	}

	// A package built without --dtype reads the checkpoint: naming a
	// weights file for it is a mistake worth an error.
	if _, stderr, err = run("tinymodel", "tiny", "x.weights", ids[:2]); err == nil || !strings.Contains(stderr, "without --dtype") {
		t.Errorf("tinymodel with a weights file: err %v, stderr %q; want an error saying it was built without --dtype", err, stderr)
	}

	weights := filepath.Join(dir, "hotq4", "hotq4.weights")
	ref := loadRef(t, "tiny-hot.q4_0.hf-math.json")
	got, stderr, err = run("hotq4", "tiny-hot", weights, ref.Tokens)
	if err != nil {
		t.Fatalf("running hotq4: %v\n%s", err, stderr)
	}
	checkAgainstRef(t, "hotq4 logits against the reference", got, ref.Logits, ir.Q4_0)
	// Without a weights file named, Load looks beside the executable,
	// where there is none: an error that says which file.
	if _, stderr, err = run("hotq4", "tiny-hot", "", ref.Tokens[:3]); err == nil || !strings.Contains(stderr, "hotq4.weights") {
		t.Errorf("hotq4 without its weights file: err %v, stderr %q; want an error naming hotq4.weights", err, stderr)
	}
}
