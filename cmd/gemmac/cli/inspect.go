package cli

import (
	"fmt"
	"sort"
	"strings"

	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/passes"
)

func inspectCommand() Command {
	return Command{
		Name:    "inspect",
		Usage:   "--model DIR | --preset NAME [--graph prefill|decode|all] [--max-seq S]",
		Summary: "print a model's config, weights and graphs",
		Run:     runInspect,
	}
}

func runInspect(env *Env, args []string) error {
	fs := newFlags(env, "inspect")
	dir := fs.String("model", "", "checkpoint directory")
	preset := fs.String("preset", "", "a built-in shape instead of a checkpoint: "+fmt.Sprint(frontend.PresetNames()))
	which := fs.String("graph", "decode", "which graph to print: prefill, decode, all or none")
	maxSeq := fs.Int("max-seq", 0, "context length the graphs are built for (default min(max_position_embeddings, 4096))")
	chunk := fs.Int("chunk", cpucodegen.DefaultChunk, "prefill chunk length")
	everyPass := fs.Bool("passes", false, "print the graph after every pass, not only before and after the pipeline")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.Changed("model") == fs.Changed("preset") {
		return usageError("give exactly one of --model and --preset")
	}
	var cfg *frontend.Config
	dtypes := map[string]ir.DType{}
	if *dir != "" {
		ckpt, err := frontend.Open(*dir)
		if err != nil {
			return err
		}
		defer ckpt.Close()
		cfg, dtypes = ckpt.Config, ckpt.WeightDTypes()
		printWeights(env, ckpt)
	} else {
		var err error
		if cfg, err = frontend.Preset(*preset); err != nil {
			return usageError("%v", err)
		}
	}
	printConfig(env, cfg)
	context := *maxSeq
	if context == 0 {
		context = min(cfg.MaxPositionEmbeddings, 4096)
	}
	if context < 1 || context > cfg.MaxPositionEmbeddings {
		return usageError("--max-seq %d is outside 1..%d", context, cfg.MaxPositionEmbeddings)
	}
	shapes := map[string]frontend.GraphShape{
		"prefill": {Tokens: min(*chunk, context), Context: context},
		"decode":  {Tokens: 1, Context: context},
	}
	var names []string
	switch *which {
	case "all":
		names = []string{"prefill", "decode"}
	case "prefill", "decode":
		names = []string{*which}
	case "none":
	default:
		return usageError("--graph %q: want prefill, decode, all or none", *which)
	}
	for _, name := range names {
		g, err := frontend.Build(name, cfg, shapes[name], dtypes)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "\n# %s, as built by the frontend\n", name)
		ir.Fprint(env.Stdout, g)
		after := func(pass string, g *ir.Graph) {
			if *everyPass && pass != "verify" {
				fmt.Fprintf(env.Stdout, "\n# %s after %s\n", name, pass)
				ir.Fprint(env.Stdout, g)
			}
		}
		if err := passes.Run(g, passes.Options{Check: true, After: after}); err != nil {
			return err
		}
		if !*everyPass {
			fmt.Fprintf(env.Stdout, "\n# %s after the pipeline (%s)\n", name, passNames())
			ir.Fprint(env.Stdout, g)
		}
	}
	return nil
}

func passNames() string {
	var names []string
	for _, p := range passes.Pipeline {
		names = append(names, p.Name)
	}
	return strings.Join(names, " → ")
}

func printConfig(env *Env, c *frontend.Config) {
	fmt.Fprintf(env.Stdout, "gemma2: %d layers, hidden %d, ffn %d, heads %d/%d kv × %d, vocab %d, %s parameters\n",
		c.NumHiddenLayers, c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim,
		c.VocabSize, frontend.HumanCount(c.ParamCount()))
	fmt.Fprintf(env.Stdout, "  sliding window %d on even layers; softcaps attn %g final %g; query scale %g (query_pre_attn_scalar %g); embed scale %g; rope θ %g; eps %g\n",
		c.SlidingWindow, c.AttnLogitSoftcapping, c.FinalLogitSoftcapping, c.QueryScale(), c.QueryPreAttnScalar,
		c.EmbedScale(), c.RopeTheta, c.RMSNormEps)
}

func printWeights(env *Env, ckpt *frontend.Checkpoint) {
	byType := map[ir.DType]int64{}
	for _, t := range ckpt.Weights {
		byType[t.DType] += int64(len(t.Data))
	}
	types := make([]ir.DType, 0, len(byType))
	for dt := range byType {
		types = append(types, dt)
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	where := ckpt.Dir
	if ckpt.File != "" {
		where = ckpt.File
	}
	fmt.Fprintf(env.Stdout, "checkpoint %s: %d tensors;", where, len(ckpt.Weights))
	for _, dt := range types {
		fmt.Fprintf(env.Stdout, " %v %.1f MB", dt, float64(byType[dt])/1e6)
	}
	fmt.Fprintln(env.Stdout)
	for _, note := range ckpt.Notes {
		fmt.Fprintf(env.Stdout, "  note: %s\n", note)
	}
}
