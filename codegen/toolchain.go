package codegen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNoLLVM14 is wrapped by FindToolchain's error when opt/llc of LLVM 14
// cannot be found.
var ErrNoLLVM14 = errors.New("LLVM 14 not found: install it with `apt-get install -y llvm-14` (Debian/Ubuntu); " +
	"gemmac needs LLVM 14 because llir/llvm emits LLVM 14 IR with typed pointers")

// LLVMSearchDirs are tried (in order) after opt-14/llc-14 on PATH.
var LLVMSearchDirs = []string{"/usr/lib/llvm-14/bin", "/usr/local/opt/llvm@14/bin", "/opt/homebrew/opt/llvm@14/bin"}

// Toolchain is a located pair of LLVM 14 tools.
type Toolchain struct {
	Opt, Llc string
	Version  string // e.g. "14.0.6"
}

// FindToolchain looks for opt/llc of LLVM 14: opt-14/llc-14 on PATH, then
// the LLVMSearchDirs, then plain opt/llc on PATH whose --version says
// "LLVM version 14".
func FindToolchain() (*Toolchain, error) {
	return findToolchain(LLVMSearchDirs)
}

func findToolchain(dirs []string) (*Toolchain, error) {
	var tried []string
	try := func(opt, llc string) *Toolchain {
		tried = append(tried, opt+" + "+llc)
		ov, err1 := llvmVersion(opt)
		lv, err2 := llvmVersion(llc)
		if err1 != nil || err2 != nil || !strings.HasPrefix(ov, "14.") || !strings.HasPrefix(lv, "14.") {
			return nil
		}
		return &Toolchain{Opt: opt, Llc: llc, Version: ov}
	}
	if o, err := exec.LookPath("opt-14"); err == nil {
		if l, err := exec.LookPath("llc-14"); err == nil {
			if tc := try(o, l); tc != nil {
				return tc, nil
			}
		}
	}
	for _, d := range dirs {
		o, l := filepath.Join(d, "opt"), filepath.Join(d, "llc")
		if isFile(o) && isFile(l) {
			if tc := try(o, l); tc != nil {
				return tc, nil
			}
		}
	}
	if o, err := exec.LookPath("opt"); err == nil {
		if l, err := exec.LookPath("llc"); err == nil {
			if tc := try(o, l); tc != nil {
				return tc, nil
			}
		}
	}
	if len(tried) > 0 {
		return nil, fmt.Errorf("%w (found only other versions: %s)", ErrNoLLVM14, strings.Join(tried, ", "))
	}
	return nil, ErrNoLLVM14
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// llvmVersion runs `tool --version` and returns the "LLVM version X.Y.Z" part.
func llvmVersion(tool string) (string, error) {
	out, err := exec.Command(tool, "--version").CombinedOutput()
	if err != nil {
		return "", err
	}
	const key = "LLVM version "
	s := string(out)
	i := strings.Index(s, key)
	if i < 0 {
		return "", fmt.Errorf("%s --version: no %q in output", tool, key)
	}
	f := strings.Fields(s[i+len(key):])
	if len(f) == 0 {
		return "", fmt.Errorf("%s --version: empty version", tool)
	}
	return f[0], nil
}

// EmitOptions control Compile and EmitAsm.
type EmitOptions struct {
	// KeepDir, if set, keeps the intermediate .ll and optimised .bc there
	// (named after the output); otherwise a temporary directory is used.
	KeepDir string
	// NoOpt skips `opt -O3` (llc still optimises at -O3).
	NoOpt bool
}

func (t Target) llvmFlags() []string {
	f := []string{"-mtriple=" + t.Triple}
	if t.CPU != "" {
		f = append(f, "-mcpu="+t.CPU)
	}
	if t.Features != "" {
		f = append(f, "-mattr="+t.Features)
	}
	return f
}

// Compile writes m as a PIC object file outObj (opt -O3, then llc -O3).
func (tc *Toolchain) Compile(m *Module, outObj string, o EmitOptions) error {
	return tc.emit(m, outObj, "obj", o)
}

// EmitAsm writes m as target assembly (for reading).
func (tc *Toolchain) EmitAsm(m *Module, outAsm string, o EmitOptions) error {
	return tc.emit(m, outAsm, "asm", o)
}

func (tc *Toolchain) emit(m *Module, out, filetype string, o EmitOptions) error {
	dir := o.KeepDir
	if dir == "" {
		d, err := os.MkdirTemp("", "gemmac-llvm-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := strings.TrimSuffix(filepath.Base(out), filepath.Ext(out))
	ll := filepath.Join(dir, base+".ll")
	if err := os.WriteFile(ll, []byte(m.String()), 0o644); err != nil {
		return err
	}
	flags := m.Target.llvmFlags()
	in := ll
	if !o.NoOpt {
		bc := filepath.Join(dir, base+".opt.bc")
		args := append([]string{"-O3"}, flags...)
		args = append(args, ll, "-o", bc)
		if err := run(tc.Opt, args...); err != nil {
			return err
		}
		in = bc
	}
	args := append([]string{"-O3", "-filetype=" + filetype, "-relocation-model=pic"}, flags...)
	args = append(args, in, "-o", out)
	return run(tc.Llc, args...)
}

func run(tool string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 4000 {
			msg = msg[:4000] + "\n..."
		}
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(tool), strings.Join(args, " "), err, msg)
	}
	return nil
}

// Compile finds LLVM 14 and compiles m to outObj.
func Compile(m *Module, outObj string) error {
	tc, err := FindToolchain()
	if err != nil {
		return err
	}
	return tc.Compile(m, outObj, EmitOptions{})
}
