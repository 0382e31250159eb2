package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gemmac/gemmac/codegen"
	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/codegen/gobin"
	"github.com/gemmac/gemmac/codegen/ptx"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/frontend/packed"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/plan"
)

func buildCommand() Command {
	return Command{
		Name:    "build",
		Usage:   "--model DIR --target cpu[:NAME]|cuda[:sm_XX] [--dtype T] [--llama-rounding] [--kv-dtype bf16] [--batch B] [--max-seq S] [--emit ll|asm|ptx] (-o BIN | --emit-package DIR)",
		Summary: "compile a checkpoint into one optimised binary",
		Run:     runBuild,
	}
}

// cudaChunk is the prefill chunk of CUDA builds (at most the context), the
// one their figures in the README were measured with: the tensor-core
// matmuls need a few hundred rows to fill a large GPU.
const cudaChunk = 512

func runBuild(env *Env, args []string) error {
	fs := newFlags(env, "build")
	dir := fs.String("model", "", "checkpoint directory")
	target := fs.String("target", "cpu", "cpu (this machine's vector ISA), cpu:NAME with NAME x86-64-v4, x86-64-v3, x86-64 or aarch64, or cuda[:sm_XX] (NVIDIA GPUs, default sm_80)")
	maxSeq := fs.Int("max-seq", 0, "context length the binary is compiled for (default min(max_position_embeddings, 4096))")
	chunk := fs.Int("chunk", 0, fmt.Sprintf("prompt tokens per prefill call (default %d on CPUs, %d on CUDA)", cpucodegen.DefaultChunk, cudaChunk))
	batch := fs.Int("batch", 1, "sequences one batched decode step takes (serve decodes up to this many requests at once); 1: no batched step")
	dtype := fs.String("dtype", "", "weight dtype of the layers' matrices: f32, bf16, q8_0 or q4_0, converted at build time into BIN.weights, or NAME.weights in the --emit-package directory (default: as stored)")
	kvDType := fs.String("kv-dtype", "f32", "KV cache element type: f32, or bf16 (half the memory; keys and values rounded to bfloat16)")
	llamaRounding := fs.Bool("llama-rounding", false, "with --dtype q4_0: llama-quantize's rounding, byte for byte, instead of searching each block's scale for the least error")
	embedDType := fs.String("embed-dtype", "", "dtype of the embedding, which is also the tied LM head (default: q8_0 when --dtype is q8_0 or q4_0, else --dtype)")
	emit := fs.String("emit", "", "also write the generated kernels beside the binary: LLVM IR (ll) or assembly (asm, ptx)")
	out := fs.StringP("output", "o", "", "the binary to write")
	pkgDir := fs.String("emit-package", "", "instead of a binary, write an importable Go package (kernels linked through cgo, a Load function) into this directory")
	pkgName := fs.String("package-name", "", "name of the --emit-package package (default: the directory's base name)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model"); err != nil {
		return err
	}
	if (*out == "") == (*pkgDir == "") {
		return usageError("give -o BIN or --emit-package DIR")
	}
	cudaTarget, isCUDA := ptx.Target{}, strings.HasPrefix(*target, "cuda")
	var t codegen.Target
	var err error
	if isCUDA {
		if cudaTarget, err = ptx.ParseTarget(*target); err != nil {
			return usageError("--target: %v", err)
		}
	} else if t, err = parseCPUTarget(*target); err != nil {
		return err
	}
	if *emit != "" && *emit != "ll" && *emit != "asm" && *emit != "ptx" {
		return usageError("--emit %q: want ll or asm (cpu), ptx (cuda)", *emit)
	}
	if *batch < 1 || *batch > codegen.MaxBatch {
		return usageError("--batch must be within 1..%d", codegen.MaxBatch)
	}
	if *batch > 1 && isCUDA {
		return usageError("--batch is for --target cpu")
	}
	if fs.Changed("chunk") && *chunk < 1 {
		return usageError("--chunk must be positive")
	}
	name := *pkgName
	if *pkgDir != "" {
		if name == "" {
			name = filepath.Base(*pkgDir)
		}
		if err := cpucodegen.CheckPackageName(name); err != nil {
			return usageError("--emit-package: %v", err)
		}
	}
	start := time.Now()
	ckpt, err := frontend.Open(*dir)
	if err != nil {
		return err
	}
	defer ckpt.Close()
	conv, err := frontend.ParseConversion(*dtype, *embedDType, *llamaRounding)
	if err != nil {
		return usageError("%v", err)
	}
	kv, err := parseKVDType(*kvDType)
	if err != nil {
		return err
	}
	if kv == ir.BF16 && isCUDA {
		return usageError("--kv-dtype bf16 is for --target cpu")
	}
	convert := conv.Changes(ckpt)
	if convert && isCUDA {
		return usageError("--dtype and --embed-dtype conversions are for --target cpu; convert the checkpoint itself for cuda")
	}
	context := *maxSeq
	if context == 0 {
		context = min(ckpt.Config.MaxPositionEmbeddings, 4096)
	}
	if isCUDA {
		if *pkgDir != "" {
			return usageError("--emit-package is for --target cpu")
		}
		src, err := gobin.SourceRoot()
		if err != nil {
			return err
		}
		if *chunk == 0 {
			*chunk = min(cudaChunk, context)
		}
		return buildCUDA(env, ckpt, cudaTarget, context, *chunk, *emit, *out, src, start)
	}
	dtypes := conv.DTypes(ckpt)
	compiled, err := cpucodegen.Build(ckpt.Config, dtypes, cpucodegen.Options{Target: t, Context: context, Chunk: *chunk, Batch: *batch, KVDType: kv})
	if err != nil {
		return err
	}
	if convert {
		// A binary's weights go beside it; a package's into its directory,
		// to be shipped beside the program that imports it.
		path := *out + ".weights"
		if *pkgDir != "" {
			if err := os.MkdirAll(*pkgDir, 0o755); err != nil {
				return err
			}
			path = filepath.Join(*pkgDir, name+".weights")
		}
		if compiled.Artifact.Packed, err = writePacked(ckpt, conv, dtypes, path); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "wrote %s: weights converted to %s\n", path, conv)
	}
	// emitKernels writes the kernels for reading as the object has them
	// (a package's after Package has named its symbols).
	emitKernels := func() error {
		if *emit == "" {
			return nil
		}
		base := *out
		if base == "" {
			base = filepath.Join(*pkgDir, "kernels")
		}
		path := base + "." + map[string]string{"ll": "ll", "asm": "s"}[*emit]
		if err := compiled.Emit(*emit, path); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "wrote %s\n", path)
		return nil
	}
	if *pkgDir != "" {
		if err := compiled.Package(*pkgDir, name); err != nil {
			return err
		}
		if err := emitKernels(); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "wrote package %s (%s): %d kernels for %s, context %d, in %.1fs\n",
			name, *pkgDir, len(compiled.Artifact.Kernels), t, context, time.Since(start).Seconds())
		return nil
	}
	if err := emitKernels(); err != nil {
		return err
	}
	src, err := gobin.SourceRoot()
	if err != nil {
		return err
	}
	if err := compiled.Binary(*out, src); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "built %s: %d kernels for %s, context %d, in %.1fs\n",
		*out, len(compiled.Artifact.Kernels), t, context, time.Since(start).Seconds())
	return nil
}

// writePacked converts ckpt's weights into the packed file at path, tensor by
// tensor, and returns how the binary's plan names it.
func writePacked(ckpt *frontend.Checkpoint, conv frontend.Conversion, dtypes map[string]ir.DType, path string) (*plan.PackedWeights, error) {
	fingerprint, err := frontend.Fingerprint(ckpt.Config, dtypes)
	if err != nil {
		return nil, err
	}
	w, err := packed.Create(path, fingerprint)
	if err != nil {
		return nil, err
	}
	if err := conv.ConvertEach(ckpt, w.Add); err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	dtypeName := func(d ir.DType) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	return &plan.PackedWeights{File: filepath.Base(path), Fingerprint: fingerprint, Conversion: conv.String(),
		Layers: dtypeName(conv.Layers), Embed: dtypeName(conv.Embed), LlamaRounding: conv.LlamaRounding}, nil
}

func parseCPUTarget(s string) (codegen.Target, error) {
	name, ok := strings.CutPrefix(s, "cpu")
	if !ok || (name != "" && !strings.HasPrefix(name, ":")) {
		return codegen.Target{}, usageError("--target %q: want cpu or cpu:NAME", s)
	}
	t, err := codegen.TargetByName(strings.TrimPrefix(name, ":"))
	if err != nil {
		return codegen.Target{}, usageError("--target: %v", err)
	}
	return t, nil
}

// buildCUDA compiles the checkpoint to PTX (llc's NVPTX backend) and embeds
// it in a binary that needs no CUDA toolkit, only the driver.
func buildCUDA(env *Env, ckpt *frontend.Checkpoint, t ptx.Target, context, chunk int, emit, out, src string, start time.Time) error {
	opts := ptx.Options{Target: t, Context: context, Chunk: chunk}
	compiled, err := ptx.Build(ckpt.Config, ckpt.WeightDTypes(), opts)
	if err != nil {
		return err
	}
	if err := compiled.EmitPTX("", ""); err != nil {
		return err
	}
	if emit != "" {
		path := out + ".ptx"
		if err := os.WriteFile(path, []byte(compiled.PTX), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "wrote %s\n", path)
	}
	if err := compiled.Binary(out, src, opts); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "built %s: %d kernels for CUDA %s, context %d, in %.1fs\n",
		out, len(compiled.Artifact.Kernels), t.SM, context, time.Since(start).Seconds())
	return nil
}
