package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// gemma2Source is the chat_template of google/gemma-2-2b-it.
const gemma2Source = `{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}`

// systemGemma2Source is a Jinja template that reproduces every reference
// output of the "systemgemma2" renderer where a system message leads (it
// was reconstructed from those outputs and checked with Python's jinja2).
// Detect recognises it and templates built the same way.
const systemGemma2Source = `{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n' }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 1) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] != 'system' %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}`

// Detect reports which built-in renderer reproduces a chat_template
// source, as found in a checkpoint's tokenizer_config.json.
//
// It matches on fingerprints rather than the exact text, so that
// re-indented or lightly edited copies of the templates (common in
// fine-tuned checkpoints) are still recognised. Whitespace is ignored,
// and the checks run from most to least specific:
//
//   - gemma3 folds the system prompt into the first user turn through a
//     variable named first_user_prefix;
//   - gemma2 refuses a system prompt with "System role not supported";
//   - systemgemma2 is any other Gemma turn template that handles a
//     'system' role.
//
// A template without Gemma's <start_of_turn> marker is not recognised.
func Detect(chatTemplateSource string) (name string, ok bool) {
	src := stripSpace(chatTemplateSource)
	switch {
	case !strings.Contains(src, "<start_of_turn>"):
		return "", false
	case strings.Contains(src, "first_user_prefix"):
		return Gemma3, true
	case strings.Contains(src, "Systemrolenotsupported"):
		return Gemma2, true
	case strings.Contains(src, "'system'") || strings.Contains(src, `"system"`):
		return SystemGemma2, true
	}
	return "", false
}

// stripSpace removes all white space, so fingerprints survive reformatting.
func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// FromTokenizerConfig reads a checkpoint's tokenizer_config.json and
// returns the name of the built-in renderer for its chat template.
//
// chat_template may be a string or, in the newer Hugging Face format, a
// list of {"name", "template"} objects, of which the one named "default"
// is used. When the file has no chat_template, a chat_template.jinja
// beside it (where recent versions of transformers save the template) is
// used; when there is neither, the result is "gemma2", the format of the
// original Gemma checkpoints. A template that Detect does not recognise
// is an error, so a checkpoint is never silently prompted in the wrong
// format.
func FromTokenizerConfig(path string) (name string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("chat: reading tokenizer config: %w", err)
	}
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("chat: parsing %s: %w", path, err)
	}
	src, found, err := templateSource(cfg.ChatTemplate)
	if err != nil {
		return "", fmt.Errorf("chat: %s: %w", path, err)
	}
	if !found {
		jinjaPath := filepath.Join(filepath.Dir(path), "chat_template.jinja")
		b, err := os.ReadFile(jinjaPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return Gemma2, nil
		case err != nil:
			return "", fmt.Errorf("chat: reading chat template: %w", err)
		}
		src, path = string(b), jinjaPath
	}
	name, ok := Detect(src)
	if !ok {
		return "", fmt.Errorf("chat: %s: chat_template matches none of the built-in templates (%s)", path, strings.Join(Names(), ", "))
	}
	return name, nil
}

// templateSource extracts the template text from a chat_template value;
// found is false when the value is absent or null.
func templateSource(raw json.RawMessage) (src string, found bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &src); err == nil {
		return src, true, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", false, errors.New("chat_template is neither a string nor a list of named templates")
	}
	for _, t := range named {
		if t.Name == "default" {
			return t.Template, true, nil
		}
	}
	return "", false, errors.New(`chat_template lists no template named "default"`)
}
