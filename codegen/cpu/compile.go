package cpu

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/plan"
)

// Compiled is a lowered model and its kernel module.
type Compiled struct {
	Artifact *plan.Artifact
	Module   *codegen.Module
}

// DefaultChunk is the prompt tokens one prefill call takes. Each call
// streams every weight once, so longer chunks read the weights fewer times
// per prompt and give the prefill tiles more rows to reuse each weight on:
// the f32 2B preset prefilled 128 tokens 1.04–1.09× faster in one chunk of
// 128 than in two of 64 (GEMMAC_PERF_CHUNK, runtime/cpu TestPerfModel). The
// arena grows with it (2B: 10 MiB for prefill, against 5 MiB at 64).
const DefaultChunk = 128

// Build lowers every entry point of a model.
func Build(cfg *frontend.Config, dtypes map[string]ir.DType, opts Options) (*Compiled, error) {
	if opts.Chunk <= 0 {
		opts.Chunk = DefaultChunk
	}
	mod := codegen.NewModule(opts.Target)
	art, err := Lower(cfg, dtypes, opts, mod)
	if err != nil {
		return nil, err
	}
	art.Features = opts.Target.Features
	if kv := opts.KVDType; kv != 0 && kv != ir.F32 {
		art.KVDType = kv.String()
	}
	return &Compiled{Artifact: art, Module: mod}, nil
}

// Object compiles the kernels into an object file at path.
func (c *Compiled) Object(path string) error {
	tc, err := codegen.FindToolchain()
	if err != nil {
		return err
	}
	return tc.Compile(c.Module, path, codegen.EmitOptions{})
}

// Emit writes the kernels as LLVM IR ("ll") or assembly ("asm").
func (c *Compiled) Emit(kind, path string) error {
	switch kind {
	case "ll":
		return os.WriteFile(path, []byte(c.Module.String()), 0o644)
	case "asm":
		tc, err := codegen.FindToolchain()
		if err != nil {
			return err
		}
		return tc.EmitAsm(c.Module, path, codegen.EmitOptions{})
	}
	return fmt.Errorf("unknown --emit %q (want ll or asm)", kind)
}

// SharedObject compiles the kernels into a shared object, reusing one from
// the cache directory when the same kernels were compiled before, and
// returns its path.
func (c *Compiled) SharedObject(cacheDir string) (string, error) {
	text := c.Module.String()
	sum := sha256.Sum256([]byte(c.Module.Target.Name + c.Module.Target.Features + "\n" + text))
	key := hex.EncodeToString(sum[:12])
	so := filepath.Join(cacheDir, "kernels-"+key+".so")
	if _, err := os.Stat(so); err == nil {
		return so, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cacheDir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	obj := filepath.Join(tmp, "kernels.o")
	if err := c.Object(obj); err != nil {
		return "", err
	}
	lib := filepath.Join(tmp, "kernels.so")
	if err := link(obj, lib); err != nil {
		return "", err
	}
	return so, os.Rename(lib, so)
}

// link makes a shared object with the C compiler cgo uses.
func link(obj, so string) error {
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		return fmt.Errorf("linking kernels needs a C compiler (%s not found): install it with `apt-get install -y gcc`", cc)
	}
	out, err := exec.Command(cc, "-shared", "-o", so, obj, "-lm").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -shared %s: %v\n%s", cc, obj, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CacheDir is where compiled kernels are kept between runs:
// $GEMMAC_CACHE, else the user cache directory's gemmac/.
func CacheDir() (string, error) {
	if d := os.Getenv("GEMMAC_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", errors.New("no cache directory for compiled kernels: set GEMMAC_CACHE")
	}
	return filepath.Join(d, "gemmac"), nil
}
