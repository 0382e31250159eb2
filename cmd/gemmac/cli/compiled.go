package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"unsafe"

	"github.com/gemmac/gemmac/codegen/ptx"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/cpu"
	"github.com/gemmac/gemmac/runtime/cuda"
	"github.com/gemmac/gemmac/runtime/model"
)

// RunCompiled is the main function of a binary built by `gemmac build`: the
// model commands, running the linked kernels by default.
func RunCompiled(planJSON []byte, kernelTable unsafe.Pointer, args []string) int {
	env := StdEnv(filepath.Base(args[0]))
	engine, art, err := cpu.Linked(planJSON, kernelTable)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Program, err)
		return 1
	}
	env.Engine = engine
	env.Context = art.Context
	if art.Packed != nil {
		if env.Convert, err = art.Packed.Convert(); err != nil {
			fmt.Fprintf(env.Stderr, "%s: damaged plan: %v\n", env.Program, err)
			return 1
		}
	}
	return Main(env, ModelCommands(), args[1:])
}

// RunCUDA is the main function of a binary built with --target cuda: the
// model commands on the GPU, through the CUDA driver found at run time.
func RunCUDA(kernels string, build []byte, args []string) int {
	env := StdEnv(filepath.Base(args[0]))
	var info ptx.BuildInfo
	if err := json.Unmarshal(build, &info); err != nil || info.Config == nil {
		fmt.Fprintf(env.Stderr, "%s: damaged build description: %v\n", env.Program, err)
		return 1
	}
	env.Engine = func(ckpt *frontend.Checkpoint, opts model.Options) (model.Engine, error) {
		if err := info.Config.SameShape(ckpt.Config); err != nil {
			return nil, fmt.Errorf("checkpoint %s does not match the compiled model: %w", ckpt.Dir, err)
		}
		if opts.Context != info.Context {
			return nil, fmt.Errorf("this binary was compiled for a context of %d tokens, not %d (rebuild with --max-seq %d)", info.Context, opts.Context, opts.Context)
		}
		c, err := ptx.Build(ckpt.Config, ckpt.WeightDTypes(), info.Options())
		if err != nil {
			return nil, err
		}
		if !slices.Equal(c.Artifact.Kernels, info.Kernels) {
			return nil, fmt.Errorf("checkpoint %s needs kernels this binary was not compiled for (its weight dtypes differ?): rebuild it for this checkpoint", ckpt.Dir)
		}
		c.PTX = kernels
		return cuda.New(c, ckpt, cuda.Options{})
	}
	env.Context = info.Context
	return Main(env, ModelCommands(), args[1:])
}
