package cpu

import (
	"fmt"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/frontend"
	rtcpu "github.com/gemmac/gemmac/runtime/cpu"
	"github.com/gemmac/gemmac/runtime/model"
)

// JITEngine compiles a checkpoint's kernels for this CPU (reusing a cached
// shared object when the same kernels were compiled before) and runs them in
// process, with a batched decode step when opts.Batch > 1. It has the
// signature of model.Options.Engine.
func JITEngine(ckpt *frontend.Checkpoint, opts model.Options) (model.Engine, error) {
	compiled, err := Build(ckpt.Config, ckpt.WeightDTypes(), Options{Target: codegen.HostTarget(), Context: opts.Context, Batch: opts.Batch, KVDType: opts.KVDType})
	if err != nil {
		return nil, err
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	so, err := compiled.SharedObject(cache)
	if err != nil {
		return nil, err
	}
	kernels, err := rtcpu.LoadKernels(so, compiled.Artifact.Kernels)
	if err != nil {
		return nil, fmt.Errorf("%w (remove %s to recompile)", err, so)
	}
	return rtcpu.New(compiled.Artifact, kernels, ckpt, rtcpu.Options{Threads: opts.Threads})
}
