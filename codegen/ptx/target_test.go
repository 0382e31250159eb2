package ptx

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/plan"
)

var sm90 = Target{SM: "sm_90", PTX: "ptx75"}

// preset2B is the 2B's config with bf16 weights (no checkpoint needed).
func preset2B(t *testing.T) (*frontend.Config, map[string]ir.DType) {
	t.Helper()
	cfg, err := frontend.Preset("2b")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TorchDType = "bfloat16"
	dt := map[string]ir.DType{}
	for _, s := range cfg.WeightSpecs() {
		dt[s.Name] = ir.BF16
	}
	return cfg, dt
}

// entryBodies splits PTX into its kernels' bodies, by name.
func entryBodies(ptx string) map[string]string {
	out := map[string]string{}
	parts := regexp.MustCompile(`(?m)^\.visible \.entry (\w+)\(`).FindAllStringSubmatchIndex(ptx, -1)
	for i, m := range parts {
		end := len(ptx)
		if i+1 < len(parts) {
			end = parts[i+1][0]
		}
		out[ptx[m[2]:m[3]]] = ptx[m[1]:end]
	}
	return out
}

// TestPDLWaitsFirst compiles the test models for sm_90, where kernels may
// start before the kernel ahead of them in the stream has finished, and
// checks in the PTX that every kernel lets its successor launch and waits
// for its predecessor (griddepcontrol.wait) before any access to global
// memory.
func TestPDLWaitsFirst(t *testing.T) {
	needLLC(t)
	access := regexp.MustCompile(`\b(ld|st|atom|red)\.global[.\w]*|cp\.async\.`)
	for _, model := range []string{"tiny", "tiny-bf16"} {
		t.Run(model, func(t *testing.T) {
			c := buildFor(t, model, 128, 32, sm90)
			if err := c.EmitPTX("", ""); err != nil {
				t.Fatal(err)
			}
			checkPTX(t, c)
			bodies := entryBodies(c.PTX)
			for _, e := range c.Entries {
				body := bodies[e.Name]
				launch := strings.Index(body, "griddepcontrol.launch_dependents;")
				wait := strings.Index(body, "griddepcontrol.wait;")
				if launch < 0 || wait < 0 {
					t.Errorf("%s: launch_dependents at %d, wait at %d", e.Name, launch, wait)
					continue
				}
				if loc := access.FindStringIndex(body); loc != nil && loc[0] < wait {
					t.Errorf("%s: %q before griddepcontrol.wait", e.Name, body[loc[0]:loc[1]])
				}
			}
		})
	}
	c := build(t, "tiny", 128, 32)
	if err := c.EmitPTX("", ""); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.PTX, "griddepcontrol") {
		t.Error("sm_80 PTX uses griddepcontrol (an sm_90 instruction)")
	}
}

// TestPTXAssembles runs NVIDIA's assembler, where it is installed, on the
// PTX of a test model for sm_80 and sm_90 and of the 2B preset for sm_90,
// and fails on register spills in the prefill and decode matmuls.
func TestPTXAssembles(t *testing.T) {
	needLLC(t)
	ptxas, err := exec.LookPath("ptxas")
	if err != nil {
		t.Skip("ptxas is not on PATH (CUDA toolkit): the GPU's driver assembles the PTX at load instead")
	}
	cfg, dt := preset2B(t)
	big, err := Build(cfg, dt, Options{Target: sm90, Context: 2048, Chunk: 512})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Compiled{
		"tiny-bf16 sm_80": build(t, "tiny-bf16", 128, 32),
		"tiny-bf16 sm_90": buildFor(t, "tiny-bf16", 128, 32, sm90),
		"2b sm_90":        big,
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			if err := c.EmitPTX("", ""); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(t.TempDir(), "k.ptx")
			if err := os.WriteFile(f, []byte(c.PTX), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(ptxas, "-arch="+c.Module.Target.SM, "-v", f, "-o", os.DevNull).CombinedOutput()
			if err != nil {
				t.Fatalf("ptxas: %v\n%s", err, out)
			}
			// ptxas reports per kernel: "Compiling entry function 'NAME'",
			// then "N bytes stack frame, S bytes spill stores, ...", then
			// "Used R registers". R times the block's threads must fit the
			// 64K registers of an SM, or the launch fails.
			threads := blockThreads(c)
			kernel := ""
			for _, line := range strings.Split(string(out), "\n") {
				if m := regexp.MustCompile(`entry function '(\w+)'`).FindStringSubmatch(line); m != nil {
					kernel = m[1]
				}
				if m := regexp.MustCompile(`(\d+) bytes spill stores`).FindStringSubmatch(line); m != nil && m[1] != "0" &&
					(strings.Contains(kernel, "mma") || strings.Contains(kernel, "matvec")) {
					t.Errorf("%s spills: %s", kernel, strings.TrimSpace(line))
				}
				if m := regexp.MustCompile(`Used (\d+) registers`).FindStringSubmatch(line); m != nil {
					regs, _ := strconv.Atoi(m[1])
					if n := threads[kernel]; n == 0 || regs*n > 65536 {
						t.Errorf("%s: %d registers × %d threads", kernel, regs, n)
					}
				}
			}
		})
	}
}

// blockThreads is each kernel's threads per block, from every launch of
// the plan and the samplers.
func blockThreads(c *Compiled) map[string]int {
	out := map[string]int{}
	add := func(kernel int, l Launch) {
		out[c.Artifact.Kernels[kernel]] = int(l.Block[0] * l.Block[1] * l.Block[2])
	}
	for name, p := range c.Artifact.Programs {
		for i, st := range p.Steps {
			add(st.Kernel, c.Launches[name][i])
		}
	}
	add(c.Argmax.Kernel, c.Argmax.Launch)
	add(c.Sample.Kernel, c.Sample.Launch)
	return out
}

// TestPrefillProjectionsFused checks that the 2B prefill computes the
// query, key and value projections in one tensor-core launch whose
// outputs lie outside the memory plan, apart from each other and from
// its input.
func TestPrefillProjectionsFused(t *testing.T) {
	cfg, dt := preset2B(t)
	c, err := Build(cfg, dt, Options{Context: 2048, Chunk: 512})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Artifact.Programs["prefill"]
	fused := 0
	for _, st := range p.Steps {
		name := c.Artifact.Kernels[st.Kernel]
		if !strings.HasPrefix(name, "mma3_") {
			continue
		}
		fused++
		// out_q, out_k, out_v, x, w_q, w_k, w_v, scalars
		if len(st.Args) != 8 {
			t.Fatalf("%s: %d args", name, len(st.Args))
		}
		sizes := []int64{512 * 2048 * 4, 512 * 1024 * 4, 512 * 1024 * 4, 512 * 2304 * 4}
		spans := make([][2]int64, 4)
		for i := range spans {
			a := st.Args[i]
			if a.Kind != plan.ArgArena {
				t.Fatalf("%s arg %d is not in the arena", name, i)
			}
			spans[i] = [2]int64{a.Offset, a.Offset + sizes[i]}
			if spans[i][1] > p.ArenaBytes {
				t.Errorf("%s arg %d ends at %d, past the arena's %d", name, i, spans[i][1], p.ArenaBytes)
			}
		}
		for i := range spans {
			for j := i + 1; j < len(spans); j++ {
				if spans[i][0] < spans[j][1] && spans[j][0] < spans[i][1] {
					t.Errorf("%s: args %d %v and %d %v overlap", name, i, spans[i], j, spans[j])
				}
			}
		}
	}
	if fused != cfg.NumHiddenLayers {
		t.Errorf("%d fused projection launches, want one per layer (%d)", fused, cfg.NumHiddenLayers)
	}
}

func TestParseTarget(t *testing.T) {
	for s, want := range map[string]string{"cuda": "sm_80", "cuda:sm_80": "sm_80", "cuda:sm_90": "sm_90", "cuda:sm_120": "sm_120"} {
		got, err := ParseTarget(s)
		if err != nil || got.SM != want || got.PTX != DefaultTarget.PTX {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %s", s, got, err, want)
		}
	}
	for _, s := range []string{"cpu", "cuda:", "cuda:90", "cuda:sm_", "cuda:sm_9x", "cuda:sm_090", "cuda:sm_75", "cuda-sm_90"} {
		if got, err := ParseTarget(s); err == nil {
			t.Errorf("ParseTarget(%q) = %+v, want an error", s, got)
		}
	}
}
