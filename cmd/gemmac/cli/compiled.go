package cli

import (
	"fmt"
	"path/filepath"
	"unsafe"

	"github.com/gemmac/gemmac/codegen"
	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/cpu"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/plan"
)

// RunCompiled is the main function of a binary built by `gemmac build`: the
// model commands, running the linked kernels by default.
func RunCompiled(planJSON []byte, kernelTable unsafe.Pointer, args []string) int {
	env := StdEnv(filepath.Base(args[0]))
	art, err := plan.Unmarshal(planJSON)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Program, err)
		return 1
	}
	kernels := cpu.NewKernels(kernelTable, art.Kernels)
	env.Engine = func(ckpt *frontend.Checkpoint, opts model.Options) (model.Engine, error) {
		if opts.Context != art.Context {
			return nil, fmt.Errorf("this binary was compiled for a context of %d tokens, not %d (rebuild with --max-seq %d)", art.Context, opts.Context, opts.Context)
		}
		return cpu.New(art, kernels, ckpt, cpu.Options{Threads: opts.Threads})
	}
	env.Context = art.Context
	return Main(env, ModelCommands(), args[1:])
}

// jitEngine compiles the checkpoint's kernels for this CPU (cached between
// runs) and runs them in process: what gemmac's own run, chat, logits and
// bench use unless --interp is given.
func jitEngine(ckpt *frontend.Checkpoint, opts model.Options) (model.Engine, error) {
	compiled, err := cpucodegen.Build(ckpt.Config, ckpt.WeightDTypes(), cpucodegen.Options{
		Target:  codegen.HostTarget(),
		Context: opts.Context,
	})
	if err != nil {
		return nil, err
	}
	cache, err := cpucodegen.CacheDir()
	if err != nil {
		return nil, err
	}
	so, err := compiled.SharedObject(cache)
	if err != nil {
		return nil, err
	}
	kernels, err := cpu.LoadKernels(so, compiled.Artifact.Kernels)
	if err != nil {
		return nil, fmt.Errorf("%w (remove %s to recompile)", err, so)
	}
	return cpu.New(compiled.Artifact, kernels, ckpt, cpu.Options{Threads: opts.Threads})
}
