package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gemmac/gemmac/runtime/chat"
	"github.com/gemmac/gemmac/runtime/model"
)

// copyGocoder makes a copy of gocoder whose tokenizer_config.json carries
// the given chat template.
func copyGocoder(t *testing.T, template string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} {
		data, err := os.ReadFile(filepath.Join(modelDir("gocoder"), f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), data, 0o644)
	}
	cfg, _ := json.Marshal(map[string]string{"bos_token": "<bos>", "eos_token": "<eos>", "chat_template": template})
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644)
	return dir
}

func TestChatTemplateChoice(t *testing.T) {
	// A template gemmac has no built-in for is rendered by the Jinja engine.
	custom := "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}: {{ m['content'] }}<end_of_turn>\n{% endfor %}<start_of_turn>model\n"
	m, err := model.Load(copyGocoder(t, custom), model.Options{Context: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids, err := m.ChatPrompt([]chat.Message{{Role: "user", Content: "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Template != "jinja" || m.Tokenizer.Decode(ids, false) != "<bos><start_of_turn>user: hi<end_of_turn>\n<start_of_turn>model\n" {
		t.Errorf("template %q rendered %q", m.Template, m.Tokenizer.Decode(ids, false))
	}

	// A known template takes the built-in fast path, and --chat-template
	// jinja renders the same text through the engine.
	src, _ := chat.Source("systemgemma2")
	msgs := []chat.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "hi"}}
	var texts []string
	for _, choice := range []string{"", "jinja"} {
		m, err := model.Load(copyGocoder(t, src), model.Options{Context: 64, Template: choice})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := m.ChatPrompt(msgs)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"": "systemgemma2", "jinja": "jinja"}[choice]
		if m.Template != want {
			t.Errorf("Template %q, want %q", m.Template, want)
		}
		texts = append(texts, m.Tokenizer.Decode(ids, false))
		m.Close()
	}
	if texts[0] != texts[1] {
		t.Errorf("built-in %q and Jinja %q differ", texts[0], texts[1])
	}
	if _, err := model.Load(copyGocoder(t, src), model.Options{Context: 64, Template: "llama3"}); err == nil {
		t.Error("an unknown --chat-template was accepted")
	}
}
