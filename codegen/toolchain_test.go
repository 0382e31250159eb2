package codegen

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindToolchain(t *testing.T) {
	tc, err := FindToolchain()
	if err != nil {
		t.Fatal(err) // the message says what to install
	}
	if !strings.HasPrefix(tc.Version, "14.") {
		t.Fatalf("version %q", tc.Version)
	}
}

func TestToolchainMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findToolchain([]string{t.TempDir()})
	if !errors.Is(err, ErrNoLLVM14) {
		t.Fatalf("err = %v, want ErrNoLLVM14", err)
	}
	for _, want := range []string{"LLVM 14 not found", "apt-get install -y llvm-14", "typed pointers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestToolchainWrongVersion(t *testing.T) {
	dir := t.TempDir()
	for _, tool := range []string{"opt", "llc"} {
		script := "#!/bin/sh\necho 'LLVM (http://llvm.org/):'\necho '  LLVM version 17.0.6'\n"
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	_, err := findToolchain([]string{dir})
	if !errors.Is(err, ErrNoLLVM14) || !strings.Contains(err.Error(), "other versions") {
		t.Fatalf("err = %v", err)
	}
}

func TestCompileErrorShowsStderr(t *testing.T) {
	tc, err := FindToolchain()
	if err != nil {
		t.Fatal(err)
	}
	m := NewModule(Target{Name: "bogus", Triple: "x86_64-unknown-linux-gnu", CPU: "no-such-cpu-xyz", Lanes: 4})
	m.MustAdd(SelectRow{R: 1, H: 4})
	err = tc.Compile(m, filepath.Join(t.TempDir(), "k.o"), EmitOptions{})
	if err == nil || !strings.Contains(err.Error(), "no-such-cpu-xyz") {
		t.Fatalf("err = %v, want the tool's complaint about the cpu", err)
	}
}
