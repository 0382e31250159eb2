package cpu

import (
	"fmt"
	"unsafe"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/plan"
)

// Linked prepares the engine of a program whose kernels were linked in at
// build time (a binary from gemmac build, or a package from --emit-package):
// planJSON is its embedded plan, table the address of its gemmac_kernels
// symbol. The returned function has the signature of model.Options.Engine
// and refuses a context other than the compiled one, or a batch larger.
func Linked(planJSON []byte, table unsafe.Pointer) (func(*frontend.Checkpoint, model.Options) (model.Engine, error), *plan.Artifact, error) {
	art, err := plan.Unmarshal(planJSON)
	if err != nil {
		return nil, nil, err
	}
	kernels := NewKernels(table, art.Kernels)
	engine := func(ckpt *frontend.Checkpoint, opts model.Options) (model.Engine, error) {
		if opts.Context != art.Context {
			return nil, fmt.Errorf("the kernels were compiled for a context of %d tokens, not %d (rebuild with --max-seq %d)", art.Context, opts.Context, opts.Context)
		}
		if kv := opts.KVDType; kv != 0 && kv.String() != art.KVType() {
			return nil, fmt.Errorf("the kernels were compiled for a %s KV cache, not %v (rebuild with --kv-dtype %v)", art.KVType(), kv, kv)
		}
		if opts.WeightsFile != "" && art.Packed == nil {
			return nil, fmt.Errorf("weights file %s: these kernels were built without --dtype and read the checkpoint's own weights", opts.WeightsFile)
		}
		if batch := compiledBatch(art); opts.Batch > max(batch, 1) {
			return nil, fmt.Errorf("the kernels decode %d sequences per step, not %d (rebuild with --batch %d)", max(batch, 1), opts.Batch, opts.Batch)
		}
		return New(art, kernels, ckpt, Options{Threads: opts.Threads, WeightsFile: opts.WeightsFile})
	}
	return engine, art, nil
}
