package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/gemmac/gemmac/codegen"
	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/frontend"
)

func buildCommand() Command {
	return Command{
		Name:    "build",
		Usage:   "--model DIR --target cpu [--max-seq S] [--emit ll|asm] -o BIN",
		Summary: "compile a checkpoint into one optimised binary",
		Run:     runBuild,
	}
}

func runBuild(env *Env, args []string) error {
	fs := newFlags(env, "build")
	dir := fs.String("model", "", "checkpoint directory")
	target := fs.String("target", "cpu", "cpu (this machine's vector ISA) or cpu:NAME with NAME x86-64-v4, x86-64-v3, x86-64 or aarch64")
	maxSeq := fs.Int("max-seq", 0, "context length the binary is compiled for (default min(max_position_embeddings, 4096))")
	chunk := fs.Int("chunk", 64, "prompt tokens per prefill call")
	dtype := fs.String("dtype", "", "weight dtype the kernels read (default: the checkpoint's)")
	emit := fs.String("emit", "", "also write the generated kernels as LLVM IR (ll) or assembly (asm) beside the binary")
	out := fs.StringP("output", "o", "", "the binary to write")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model", "output"); err != nil {
		return err
	}
	t, err := parseCPUTarget(*target)
	if err != nil {
		return err
	}
	if *emit != "" && *emit != "ll" && *emit != "asm" {
		return usageError("--emit %q: want ll or asm", *emit)
	}
	if *chunk < 1 {
		return usageError("--chunk must be positive")
	}
	start := time.Now()
	ckpt, err := frontend.Open(*dir)
	if err != nil {
		return err
	}
	defer ckpt.Close()
	if *dtype != "" {
		for name, dt := range ckpt.WeightDTypes() {
			if dt.String() != *dtype {
				return fmt.Errorf("--dtype %s: tensor %s is stored as %v, and converting weights at build time is not supported yet", *dtype, name, dt)
			}
		}
	}
	context := *maxSeq
	if context == 0 {
		context = min(ckpt.Config.MaxPositionEmbeddings, 4096)
	}
	compiled, err := cpucodegen.Build(ckpt.Config, ckpt.WeightDTypes(), cpucodegen.Options{Target: t, Context: context, Chunk: *chunk})
	if err != nil {
		return err
	}
	if *emit != "" {
		path := *out + "." + map[string]string{"ll": "ll", "asm": "s"}[*emit]
		if err := compiled.Emit(*emit, path); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "wrote %s\n", path)
	}
	src, err := cpucodegen.SourceRoot()
	if err != nil {
		return err
	}
	if err := compiled.Binary(*out, src); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "built %s: %d kernels for %s, context %d, in %.1fs\n",
		*out, len(compiled.Artifact.Kernels), t.Name, context, time.Since(start).Seconds())
	return nil
}

func parseCPUTarget(s string) (codegen.Target, error) {
	name, ok := strings.CutPrefix(s, "cpu")
	if !ok || (name != "" && !strings.HasPrefix(name, ":")) {
		if strings.HasPrefix(s, "cuda") {
			return codegen.Target{}, fmt.Errorf("--target %s: the CUDA code generator is not built yet; use --target cpu", s)
		}
		return codegen.Target{}, usageError("--target %q: want cpu or cpu:NAME", s)
	}
	t, err := codegen.TargetByName(strings.TrimPrefix(name, ":"))
	if err != nil {
		return codegen.Target{}, usageError("--target: %v", err)
	}
	return t, nil
}
