package cpu

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	rtcpu "github.com/gemmac/gemmac/runtime/cpu"
)

const testModels = "../../../shared/testdata/models"

// TestQuantizedGGUFCompiled runs llama.cpp's q8_0 and q4_0 GGUFs on the
// compiled kernels (quantised matmuls, GeGLU, embedding and tied LM head)
// and checks the logits of the 40-token reference sequence against the
// float64 reference on the same dequantised weights: as one prefill (in
// chunks of 16, the last partial) on staged weights, and as an 11-token
// prefill then decode steps on weights read from the memory map.
func TestQuantizedGGUFCompiled(t *testing.T) {
	for _, c := range []struct {
		file, ref string
		dt        ir.DType
	}{
		{"tiny-hot.q8_0.gguf", "tiny-hot.q8_0.hf-math.json", ir.Q8_0},
		{"tiny-hot.q4_0.gguf", "tiny-hot.q4_0.hf-math.json", ir.Q4_0},
	} {
		t.Run(c.file, func(t *testing.T) {
			var ref struct {
				Tokens []int32     `json:"tokens"`
				Logits [][]float64 `json:"logits"`
			}
			data, err := os.ReadFile(filepath.Join(testModels, "refs", c.ref))
			if err != nil {
				t.Fatalf("reference data missing (is ../shared beside the project?): %v", err)
			}
			if err := json.Unmarshal(data, &ref); err != nil {
				t.Fatal(err)
			}
			ckpt, err := frontend.Open(filepath.Join(testModels, c.file))
			if err != nil {
				t.Fatal(err)
			}
			defer ckpt.Close()
			comp, err := Build(ckpt.Config, ckpt.WeightDTypes(), Options{Target: codegen.HostTarget(), Context: 64, Chunk: 16})
			if err != nil {
				t.Fatal(err)
			}
			var quantKernels int
			for _, s := range comp.Module.Specs() {
				switch s := s.(type) {
				case codegen.QMatmul:
					quantKernels++
					if s.WType != c.dt {
						t.Errorf("%s: weights %v, want %v", s.Name(), s.WType, c.dt)
					}
				case codegen.QGeGLU:
					quantKernels++
				case codegen.Matmul, codegen.GeGLU:
					t.Errorf("float kernel %s for a %v checkpoint", s.Name(), c.dt)
				}
			}
			if quantKernels == 0 {
				t.Fatal("no quantised kernels in the module")
			}
			so, err := comp.SharedObject(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			k, err := rtcpu.LoadKernels(so, comp.Artifact.Kernels)
			if err != nil {
				t.Fatal(err)
			}
			n := len(ref.Tokens)
			run := func(what string, opts rtcpu.Options, prefill int) {
				e, err := rtcpu.New(comp.Artifact, k, ckpt, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				st, err := e.NewState()
				if err != nil {
					t.Fatal(err)
				}
				got, err := st.Forward(ref.Tokens[:prefill], 0, true)
				if err != nil {
					t.Fatal(err)
				}
				for p := prefill; p < n; p++ {
					row, err := st.Forward(ref.Tokens[p:p+1], p, true)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, row...)
				}
				V := len(ref.Logits[0])
				if len(got) != n*V {
					t.Fatalf("%s: %d logits, want %d", what, len(got), n*V)
				}
				// On targets that quantise activations to bytes, rows
				// meet the reference data's tolerance for that: ≤ 1.0 and
				// the same argmax; rounded to 16 bits (q8_0 prefill), our
				// own 1e-2 (measured 0.002); everything else ≤ 1e-3.
				bits := codegen.HostTarget().PrefillXBits(n, c.dt)
				for r := 0; r < n; r++ {
					tol := 1e-3
					if bits == 16 {
						tol = 1e-2
					}
					if codegen.HostTarget().QuantizesActivations(c.dt) {
						tol = 1.0
						if a, b := argmax(got[r*V:(r+1)*V]), argmax(ref.Logits[r]); a != b {
							t.Errorf("%s: row %d: argmax %d, reference %d", what, r, a, b)
						}
					}
					var worst float64
					at := 0
					for i, v := range got[r*V : (r+1)*V] {
						if d := math.Abs(float64(v) - ref.Logits[r][i]); d > worst || d != d {
							worst, at = d, i
						}
					}
					if !(worst <= tol) {
						t.Errorf("%s: row %d: max |Δ| %.3g at %d > %g", what, r, worst, at, tol)
					}
				}
			}
			run("prefill 40", rtcpu.Options{Threads: 2}, n)
			run("prefill 11 + decode (mapped weights)", rtcpu.Options{Threads: 2, MapWeights: true}, 11)
		})
	}
}

func argmax[T float32 | float64](row []T) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}
