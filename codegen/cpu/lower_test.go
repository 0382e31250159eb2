package cpu

import (
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
