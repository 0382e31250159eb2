package cli

import (
	"bufio"
	"encoding/json"
	"fmt"

	"github.com/gemmac/gemmac/runtime/tokenizer"
)

func tokenizeCommand() Command {
	return Command{
		Name:    "tokenize",
		Usage:   "--tokenizer FILE [--no-special]   (JSON lines {\"text\":...} on stdin)",
		Summary: `encode JSON lines {"text":...} into {"ids":[...],"decoded":...}`,
		Run:     runTokenize,
	}
}

func runTokenize(env *Env, args []string) error {
	fs := newFlags(env, "tokenize")
	path := fs.String("tokenizer", "", "tokenizer.json or tokenizer.json.gz")
	noSpecial := fs.Bool("no-special", false, "do not add BOS")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "tokenizer"); err != nil {
		return err
	}
	tok, err := tokenizer.Load(*path)
	if err != nil {
		return err
	}
	in := bufio.NewScanner(env.Stdin)
	in.Buffer(make([]byte, 64<<10), 64<<20)
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for line := 1; in.Scan(); line++ {
		if len(in.Bytes()) == 0 {
			continue
		}
		var req struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(in.Bytes(), &req); err != nil || req.Text == nil {
			return fmt.Errorf("stdin line %d: want a JSON object {\"text\": \"...\"}", line)
		}
		ids := tok.Encode(*req.Text, !*noSpecial)
		if ids == nil {
			ids = []int{}
		}
		if err := enc.Encode(struct {
			IDs     []int  `json:"ids"`
			Decoded string `json:"decoded"`
		}{ids, tok.Decode(ids, false)}); err != nil {
			return err
		}
	}
	return in.Err()
}
