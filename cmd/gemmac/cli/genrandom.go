package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/chat"
	"github.com/gemmac/gemmac/runtime/tokenizer"
)

func genRandomCommand() Command {
	return Command{
		Name:    "gen-random",
		Usage:   "--preset tiny|2b|9b|27b --seed N --dtype f32|bf16 -o DIR [--tokenizer FILE [--chat-template NAME]]",
		Summary: "write a checkpoint with random weights in a real Gemma-2 shape",
		Run:     runGenRandom,
	}
}

func runGenRandom(env *Env, args []string) error {
	fs := newFlags(env, "gen-random")
	preset := fs.String("preset", "tiny", "model shape: "+fmt.Sprint(frontend.PresetNames()))
	seed := fs.Uint64("seed", 0, "random seed")
	dtype := fs.String("dtype", "bf16", "weight dtype: f32, bf16 or f16")
	out := fs.StringP("output", "o", "", "directory to write")
	tokPath := fs.String("tokenizer", "", "tokenizer.json(.gz) to ship in the checkpoint; vocab_size is set to fit it")
	template := fs.String("chat-template", "gemma2", "chat template recorded in tokenizer_config.json: "+fmt.Sprint(chat.Names()))
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "output"); err != nil {
		return err
	}
	cfg, err := frontend.Preset(*preset)
	if err != nil {
		return usageError("%v", err)
	}
	dt, err := ir.ParseDType(*dtype)
	if err != nil || !dt.IsFloat() {
		return usageError("--dtype %q: want f32, bf16 or f16", *dtype)
	}
	var tok *tokenizer.Tokenizer
	if *tokPath != "" {
		if tok, err = tokenizer.Load(*tokPath); err != nil {
			return err
		}
		cfg.VocabSize = tok.VocabSize()
		for name, id := range map[string]*int{"<bos>": &cfg.BOSTokenID, "<pad>": &cfg.PadTokenID} {
			if got, ok := tok.TokenID(name); ok {
				*id = got
			}
		}
		if eos, ok := tok.TokenID("<eos>"); ok {
			cfg.EOSTokenID = frontend.TokenIDs{eos}
		}
	}
	if err := frontend.WriteRandom(*out, cfg, dt, *seed); err != nil {
		return err
	}
	if tok != nil {
		if err := writeTokenizer(*out, *tokPath, *template); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stderr, "wrote %s: preset %s, %s, %s random parameters (seed %d)\n",
		*out, *preset, dt, frontend.HumanCount(cfg.ParamCount()), *seed)
	return nil
}

// writeTokenizer copies the tokenizer (uncompressed) into the checkpoint and
// writes a tokenizer_config.json naming its special tokens and chat template,
// as Hugging Face checkpoints ship them.
func writeTokenizer(dir, src, template string) error {
	data, err := tokenizer.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
		return err
	}
	source, err := chat.Source(template)
	if err != nil {
		return usageError("--chat-template: %v", err)
	}
	return chat.WriteTokenizerConfig(filepath.Join(dir, "tokenizer_config.json"), source)
}
