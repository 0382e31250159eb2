package chat

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// gemma3Source is the chat_template of Google's Gemma-3 tokenizer_config.json.
//
//go:embed gemma3.jinja
var gemma3Source string

// Source returns the Jinja source of a built-in template, for writing into a
// checkpoint's tokenizer_config.json (Detect recognises each of them).
func Source(name string) (string, error) {
	switch name {
	case Gemma2:
		return gemma2Source, nil
	case SystemGemma2:
		return systemGemma2Source, nil
	case Gemma3:
		return gemma3Source, nil
	}
	return "", fmt.Errorf("chat: %w %q (known: %s)", ErrUnknownTemplate, name, strings.Join(Names(), ", "))
}

// WriteTokenizerConfig writes a tokenizer_config.json for a Gemma tokenizer
// with the given chat template, as Hugging Face checkpoints ship it.
func WriteTokenizerConfig(path, chatTemplate string) error {
	cfg := map[string]any{
		"add_bos_token":   true,
		"add_eos_token":   false,
		"bos_token":       "<bos>",
		"eos_token":       "<eos>",
		"pad_token":       "<pad>",
		"unk_token":       "<unk>",
		"tokenizer_class": "GemmaTokenizer",
		"chat_template":   chatTemplate,
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
