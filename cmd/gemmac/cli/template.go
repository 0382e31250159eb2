package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/gemmac/gemmac/runtime/chat"
)

func templateCommand() Command {
	return Command{
		Name:    "template",
		Usage:   "--template NAME|tokenizer_config.json [--add-generation-prompt]   ({\"messages\":[...]} on stdin)",
		Summary: "render a conversation with a chat template, exactly",
		Run:     runTemplate,
	}
}

func runTemplate(env *Env, args []string) error {
	fs := newFlags(env, "template")
	name := fs.String("template", "", "gemma2, systemgemma2, gemma3, or a tokenizer_config.json whose chat_template is one of them")
	genPrompt := fs.Bool("add-generation-prompt", false, "end with the opener of the model's turn")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "template"); err != nil {
		return err
	}
	tmpl := *name
	if strings.HasSuffix(tmpl, ".json") {
		detected, err := chat.FromTokenizerConfig(tmpl)
		if err != nil {
			return err
		}
		tmpl = detected
	}
	data, err := io.ReadAll(env.Stdin)
	if err != nil {
		return err
	}
	var req struct {
		Messages []chat.Message `json:"messages"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return fmt.Errorf("stdin: want {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}: %v", err)
	}
	text, err := chat.Render(tmpl, req.Messages, *genPrompt)
	if err != nil {
		return err
	}
	_, err = io.WriteString(env.Stdout, text)
	return err
}
