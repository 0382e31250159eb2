package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestEmittedPackage compiles tiny into an importable Go package, builds a
// program that imports it (as a service would), and checks its logits
// against the interpreter's.
func TestEmittedPackage(t *testing.T) {
	gemmac, _ := gemmacBuild(t)
	dir := t.TempDir()
	cmd := exec.Command(gemmac, "build", "--model", modelDir("tiny"), "--target", "cpu", "--max-seq", "64", "--emit-package", filepath.Join(dir, "tinymodel"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("--emit-package: %v\n%s", err, out)
	}
	src := mustAbs("..")
	goSum, _ := os.ReadFile(filepath.Join(src, "go.sum"))
	files := map[string]string{
		"go.mod": "module example.com/svc\n\ngo 1.26.8\n\nrequire github.com/gemmac/gemmac v0.0.0\n\nreplace github.com/gemmac/gemmac => " + src + "\n",
		"go.sum": string(goSum),
		"main.go": `package main

import (
	"encoding/json"
	"os"

	"example.com/svc/tinymodel"
	"github.com/gemmac/gemmac/runtime/model"
)

func main() {
	m, err := tinymodel.Load(os.Args[1], model.Options{})
	if err != nil {
		panic(err)
	}
	s, _ := m.NewSession()
	rows, err := s.Logits([]int{2, 14, 51, 88, 125, 162, 199, 236, 273, 310, 347, 384}, 5)
	if err != nil {
		panic(err)
	}
	json.NewEncoder(os.Stdout).Encode(rows)
}
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-mod=mod", "-o", "svc", ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a program that imports the package: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(dir, "svc"), modelDir("tiny")).Output()
	if err != nil {
		t.Fatalf("running it: %v", err)
	}
	var got [][]float32
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := logitsOf(t, loadModel(t, "tiny", 64, false), []int{2, 14, 51, 88, 125, 162, 199, 236, 273, 310, 347, 384}, 12)
	if d := maxRowDiff(got, want); d > 1e-4 || len(got) != len(want) {
		t.Errorf("package logits differ from the interpreter by %.3g (%d rows)", d, len(got))
	}
}
