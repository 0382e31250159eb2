package cpu

import (
	"path/filepath"
	"testing"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/plan"
)

// TestWorkerKernelInTable checks that every lowered module carries the
// native pool worker under the name the engine looks for, and that no
// program calls it as a step.
func TestWorkerKernelInTable(t *testing.T) {
	cfg, err := frontend.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	dtypes := map[string]ir.DType{}
	c, err := Build(cfg, dtypes, Options{Target: codegen.HostTarget(), Context: 16, Chunk: 4})
	if err != nil {
		t.Fatal(err)
	}
	idx := -1
	for i, k := range c.Artifact.Kernels {
		if k == plan.WorkerKernel {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("kernel table %v lacks %s", c.Artifact.Kernels, plan.WorkerKernel)
	}
	for name, p := range c.Artifact.Programs {
		for i, s := range p.Steps {
			if s.Kernel == idx {
				t.Errorf("program %s step %d calls the worker kernel", name, i)
			}
		}
	}
}

// TestPrefillQuantizesXOnce lowers llama.cpp's q4_0 and q8_0 GGUFs for an
// AVX-512 VNNI target: every prefill matmul reads x as integers (bytes for
// q4_0, words for q8_0) from the arena's scratch, past the graph's values,
// written by a QuantizeRows call before it — one for q, k and v, which
// share x — while decode reads f32 x.
func TestPrefillQuantizesXOnce(t *testing.T) {
	for _, c := range []struct {
		file string
		bits int
	}{{"tiny-hot.q4_0.gguf", 8}, {"tiny-hot.q8_0.gguf", 16}} {
		t.Run(c.file, func(t *testing.T) { checkPrefillQuantizesXOnce(t, c.file, c.bits) })
	}
}

func checkPrefillQuantizesXOnce(t *testing.T, file string, bits int) {
	ckpt, err := frontend.Open(filepath.Join(testModels, file))
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	tg, err := codegen.TargetByName("x86-64-v4")
	if err != nil {
		t.Fatal(err)
	}
	tg.Features += ",+avx512vnni"
	mod := codegen.NewModule(tg)
	art, err := Lower(ckpt.Config, ckpt.WeightDTypes(), Options{Target: tg, Context: 64, Chunk: 16}, mod)
	if err != nil {
		t.Fatal(err)
	}
	specs := mod.Specs()
	layers := ckpt.Config.NumHiddenLayers
	for name, p := range art.Programs {
		var quantize, xints int
		var scratch int64 = -1
		for i, s := range p.Steps {
			switch spec := specs[s.Kernel].(type) {
			case codegen.QuantizeRows:
				quantize++
				scratch = s.Args[0].Offset
				if spec.Bits != bits {
					t.Errorf("%s step %d rounds x to %d bits, want %d", name, i, spec.Bits, bits)
				}
				if end := scratch + codegen.QuantizedRowsBytes(spec.R, spec.K, spec.Bits); end > p.ArenaBytes {
					t.Errorf("%s step %d: scratch ends at %d, past the arena's %d bytes", name, i, end, p.ArenaBytes)
				}
			case codegen.QMatmul, codegen.QGeGLU:
				xbits := xbitsOf(spec)
				if xbits == 0 {
					continue
				}
				xints++
				if xbits != bits {
					t.Errorf("%s step %d (%s) takes x as %d bits, want %d", name, i, spec.Name(), xbits, bits)
				}
				if s.Args[1].Kind != plan.ArgArena || s.Args[1].Offset != scratch {
					t.Errorf("%s step %d (%s) reads x at %v, not the scratch QuantizeRows wrote (%d)", name, i, spec.Name(), s.Args[1], scratch)
				}
			}
		}
		// Per layer, q/k/v, o, gate/up and down quantise x; prefill_all's
		// LM head (the tied embedding) takes every row too. Prefill's last
		// layer runs o, gate/up and down on the last token's row alone
		// (decode GEMVs), and decode programs quantise nothing.
		want := map[string][2]int{ // QuantizeRows calls, integer matmuls
			"prefill":     {4*layers - 3, 6*layers - 3},
			"prefill_all": {4*layers + 1, 6*layers + 1},
		}[name]
		if quantize != want[0] || xints != want[1] {
			t.Errorf("%s: %d QuantizeRows calls and %d integer matmuls, want %d and %d", name, quantize, xints, want[0], want[1])
		}
	}
}

func xbitsOf(s codegen.Spec) int {
	switch s := s.(type) {
	case codegen.QMatmul:
		return s.XBits
	case codegen.QGeGLU:
		return s.XBits
	}
	return 0
}

// TestF32MatricesLaidInPanels: an f32 build reads every layer matrix laid
// out in panels (one copy each, 64 columns, or 32 for GeGLU's two), and the
// embedding — read by rows by the lookup and the tied LM head — as stored;
// a bf16 build lays out nothing.
func TestF32MatricesLaidInPanels(t *testing.T) {
	cfg, err := frontend.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	geglu := map[string]bool{}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		geglu[frontend.Layer(i).Gate], geglu[frontend.Layer(i).Up] = true, true
	}
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		dtypes := map[string]ir.DType{}
		for _, w := range cfg.WeightSpecs() {
			dtypes[w.Name] = dt
		}
		c, err := Build(cfg, dtypes, Options{Target: codegen.HostTarget(), Context: 16, Chunk: 4})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		matrices := 0
		for _, w := range c.Artifact.Weights {
			if seen[w.Name] {
				t.Errorf("%v: weight %s is bound twice", dt, w.Name)
			}
			seen[w.Name] = true
			want := 0
			switch {
			case dt != ir.F32 || len(w.Shape) != 2 || w.Name == frontend.EmbedName:
			case geglu[w.Name]:
				want = 32
			default:
				want = 64
			}
			if w.Panel != want {
				t.Errorf("%v: weight %s %v in panels of %d, want %d", dt, w.Name, w.Shape, w.Panel, want)
			}
			if w.Panel > 0 {
				matrices++
			}
		}
		if dt == ir.F32 && matrices != 7*cfg.NumHiddenLayers {
			t.Errorf("%d matrices in panels, want 7 a layer (%d)", matrices, 7*cfg.NumHiddenLayers)
		}
	}
}
