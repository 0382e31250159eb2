// Package gobin builds the Go program that `gemmac build` produces: a
// generated main package, formatted, linked against gemmac's runtime from
// its source tree. The CPU and CUDA targets differ only in the files they
// put beside main.go.
package gobin

import (
	"fmt"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build writes files (main.go and whatever it embeds or links) into a fresh
// module that requires gemmac from src, formats the Go files, and runs go
// build into out. cgo says whether the program links native objects.
func Build(out, src string, files map[string][]byte, cgo bool) error {
	dir, err := os.MkdirTemp("", "gemmac-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	goSum, err := os.ReadFile(filepath.Join(src, "go.sum"))
	if err != nil {
		return fmt.Errorf("gemmac's source at %s: %w", src, err)
	}
	goVersion := "1.26"
	if mod, err := os.ReadFile(filepath.Join(src, "go.mod")); err == nil {
		for _, line := range strings.Split(string(mod), "\n") {
			if v, ok := strings.CutPrefix(line, "go "); ok {
				goVersion = strings.TrimSpace(v)
			}
		}
	}
	all := map[string][]byte{
		"go.mod": []byte(fmt.Sprintf("module gemmac.local/model\n\ngo %s\n\nrequire github.com/gemmac/gemmac v0.0.0\n\nreplace github.com/gemmac/gemmac => %s\n", goVersion, src)),
		"go.sum": goSum,
	}
	for name, data := range files {
		all[name] = data
	}
	if err := WriteFiles(dir, all); err != nil {
		return err
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-mod=mod", "-trimpath", "-o", absOut, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+map[bool]string{true: "1", false: "0"}[cgo])
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build of the generated program: %v\n%s", err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// SourceRoot finds gemmac's Go source, which a built binary links: $GEMMAC_SRC,
// else the module root above the running executable or the working directory.
func SourceRoot() (string, error) {
	if d := os.Getenv("GEMMAC_SRC"); d != "" {
		return d, nil
	}
	var starts []string
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for ; ; d = filepath.Dir(d) {
			mod, err := os.ReadFile(filepath.Join(d, "go.mod"))
			if err == nil && strings.HasPrefix(string(mod), "module github.com/gemmac/gemmac\n") {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("gemmac build links gemmac's Go runtime and needs its source: run it from the gemmac checkout or set GEMMAC_SRC to it")
}

// WriteFiles writes files (paths relative to dir, "/"-separated) into dir,
// creating folders, and runs gofmt's formatting over the Go sources so
// generated code reads like hand-written code.
func WriteFiles(dir string, files map[string][]byte) error {
	for name, data := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, ".go") {
			formatted, err := format.Source(data)
			if err != nil {
				return fmt.Errorf("generated %s: %w", name, err)
			}
			data = formatted
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
