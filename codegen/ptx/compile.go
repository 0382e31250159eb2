package ptx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/gemmac/gemmac/codegen"
)

// llcNewest is the newest GPU LLVM 14's NVPTX backend knows (with PTX 7.5).
const llcNewest = 86

// sm is the target's compute capability as a number (90 for sm_90).
func (t Target) sm() int {
	var n int
	fmt.Sscanf(strings.TrimPrefix(t.SM, "sm_"), "%d", &n)
	return n
}

// PDL reports whether the target's kernels take part in programmatic
// dependent launch (griddepcontrol: sm_90 and PTX 7.8).
func (t Target) PDL() bool { return t.sm() >= 90 }

// LLCFlags are the llc arguments for the target. Past sm_86 llc compiles
// for sm_86 and fixHeader names the real target in the PTX: PTX for an
// older GPU is valid for a newer one.
func (t Target) LLCFlags() []string {
	cpu, ptx := t.SM, t.PTX
	if t.sm() > llcNewest {
		cpu, ptx = fmt.Sprintf("sm_%d", llcNewest), "ptx75"
	}
	return []string{"-O3", "-march=nvptx64", "-mtriple=nvptx64-nvidia-cuda", "-mcpu=" + cpu, "-mattr=+" + ptx}
}

var (
	targetRE  = regexp.MustCompile(`(?m)^\.target sm_\d+`)
	versionRE = regexp.MustCompile(`(?m)^\.version \d+\.\d+`)
)

// fixHeader names the target's GPU in PTX compiled for an older one, and
// PTX ISA 7.8 (griddepcontrol) where the target uses PDL.
func (t Target) fixHeader(ptx string) string {
	if t.sm() <= llcNewest {
		return ptx
	}
	ptx = targetRE.ReplaceAllLiteralString(ptx, ".target "+t.SM)
	if t.PDL() {
		ptx = versionRE.ReplaceAllLiteralString(ptx, ".version 7.8")
	}
	return ptx
}

// CacheKey names the PTX of an IR text for a target: the same IR and flags
// always give the same PTX, so a machine without LLVM (a GPU box) can use
// PTX compiled elsewhere.
func (t Target) CacheKey(ll string) string {
	h := sha256.New()
	h.Write([]byte(t.SM + " " + strings.Join(t.LLCFlags(), " ")))
	h.Write([]byte{0})
	h.Write([]byte(ll))
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// ErrNoPTX is returned when neither llc nor the cache has the PTX.
var ErrNoPTX = errors.New("no PTX: LLVM 14's llc is not installed and the PTX cache has no entry for this model")

// EmitPTX compiles the module to PTX (Module.PTX) and keeps it in c.PTX;
// keepDir, when not empty, receives the .ll and .ptx files.
func (c *Compiled) EmitPTX(cacheDir, keepDir string) error {
	ll := c.Module.String()
	ptx, err := c.Module.compile(ll, cacheDir)
	if err != nil {
		return err
	}
	c.PTX = ptx
	return c.keep(keepDir, ll)
}

// PTX compiles the module with llc-14 (NVPTX backend), or takes the PTX
// from cacheDir when an earlier run left it there; when cacheDir is not
// empty, fresh PTX is stored in it.
func (m *Module) PTX(cacheDir string) (string, error) { return m.compile(m.String(), cacheDir) }

func (m *Module) compile(ll, cacheDir string) (string, error) {
	key := m.Target.CacheKey(ll)
	cached := ""
	if cacheDir != "" {
		cached = filepath.Join(cacheDir, key+".ptx")
		if data, err := os.ReadFile(cached); err == nil {
			return string(data), nil
		}
	}
	tc, err := codegen.FindToolchain()
	if err != nil {
		if cacheDir != "" {
			return "", fmt.Errorf("%w (%s not in %s): %v", ErrNoPTX, key, cacheDir, err)
		}
		return "", err
	}
	ptx, err := RunLLC(tc.Llc, m.Target, ll)
	if err != nil {
		return "", err
	}
	if cached != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(cached, []byte(ptx), 0o644); err != nil {
			return "", err
		}
	}
	return ptx, nil
}

func (c *Compiled) keep(dir, ll string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kernels.ll"), []byte(ll), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "kernels.ptx"), []byte(c.PTX), 0o644)
}

// RunLLC compiles LLVM IR text to PTX text.
func RunLLC(llc string, t Target, ll string) (string, error) {
	args := append(t.LLCFlags(), "-o", "-", "-")
	cmd := exec.Command(llc, args...)
	cmd.Stdin = strings.NewReader(ll)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 4000 {
			msg = msg[:4000] + "\n..."
		}
		if strings.Contains(msg, "No available targets") || strings.Contains(msg, "invalid target") {
			return "", fmt.Errorf("%s has no NVPTX backend: %s", llc, msg)
		}
		return "", fmt.Errorf("%s %s: %v\n%s", filepath.Base(llc), strings.Join(args, " "), err, msg)
	}
	return t.fixHeader(out.String()), nil
}

var entryRE = regexp.MustCompile(`(?m)^\.visible \.entry (\w+)\(([^)]*)\)`)

// ParseEntries lists the .entry kernels of PTX text with their parameter
// counts, for structural checks.
func ParseEntries(ptx string) []Entry {
	var out []Entry
	for _, m := range entryRE.FindAllStringSubmatch(ptx, -1) {
		out = append(out, Entry{Name: m[1], Params: strings.Count(m[2], ".param")})
	}
	return out
}
