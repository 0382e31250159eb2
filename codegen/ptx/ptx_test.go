package ptx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/frontend"
)

const models = "../../../shared/testdata/models"

func build(t *testing.T, model string, context, chunk int) *Compiled {
	t.Helper()
	return buildFor(t, model, context, chunk, DefaultTarget)
}

func buildFor(t *testing.T, model string, context, chunk int, target Target) *Compiled {
	t.Helper()
	ckpt, err := frontend.Open(filepath.Join(models, model))
	if err != nil {
		t.Skipf("no test model: %v", err)
	}
	defer ckpt.Close()
	c, err := Build(ckpt.Config, ckpt.WeightDTypes(), Options{Target: target, Context: context, Chunk: chunk})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func needLLC(t *testing.T) {
	t.Helper()
	if _, err := codegen.FindToolchain(); err != nil {
		t.Skipf("no LLVM 14: %v", err)
	}
}

// TestPTXForTestModels compiles every test model to PTX and checks its
// structure: the header, and one .entry per kernel of the plan with as many
// parameters as each step passes.
func TestPTXForTestModels(t *testing.T) {
	needLLC(t)
	for _, model := range []string{"tiny", "tiny-hot", "tiny-bf16", "gocoder"} {
		t.Run(model, func(t *testing.T) {
			c := build(t, model, 128, 32)
			keep := ""
			if d := os.Getenv("GEMMAC_PTX_KEEP"); d != "" {
				keep = filepath.Join(d, model)
			}
			if err := c.EmitPTX("", keep); err != nil {
				t.Fatal(err)
			}
			checkPTX(t, c)
		})
	}
}

func checkPTX(t *testing.T, c *Compiled) {
	t.Helper()
	version := ".version 7.5"
	if c.Module.Target.PDL() {
		version = ".version 7.8"
	}
	for _, want := range []string{".target " + c.Module.Target.SM, version, ".address_size 64"} {
		if !strings.Contains(c.PTX, want) {
			t.Errorf("PTX lacks %q", want)
		}
	}
	got := map[string]int{}
	for _, e := range ParseEntries(c.PTX) {
		got[e.Name] = e.Params
	}
	if len(got) != len(c.Entries) {
		t.Errorf("PTX has %d entries, the plan %d", len(got), len(c.Entries))
	}
	for _, e := range c.Entries {
		n, ok := got[e.Name]
		if !ok {
			t.Errorf("no .entry %s", e.Name)
		} else if n != e.Params {
			t.Errorf(".entry %s has %d params, want %d", e.Name, n, e.Params)
		}
	}
	for name, p := range c.Artifact.Programs {
		for i, s := range p.Steps {
			if got[c.Artifact.Kernels[s.Kernel]] != len(s.Args) {
				t.Errorf("%s step %d: %d args for %s", name, i, len(s.Args), c.Artifact.Kernels[s.Kernel])
			}
		}
	}
	if strings.Contains(c.PTX, ".local") {
		t.Logf("note: PTX uses local memory (register spills or arrays)")
	}
}
