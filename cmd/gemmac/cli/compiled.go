package cli

import (
	"fmt"
	"path/filepath"
	"unsafe"

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
