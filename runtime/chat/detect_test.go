package chat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const gemma3ConfigPath = "../../../shared/testdata/tokenizer/gemma3-tokenizer_config.json"

func TestDetect(t *testing.T) {
	gemma3Src := readChatTemplate(t, gemma3ConfigPath)
	tests := []struct {
		name, src string
		want      string
		ok        bool
	}{
		{"gemma2", gemma2Source, Gemma2, true},
		{"gemma2 reformatted", strings.ReplaceAll(gemma2Source, "%}{%", "%}\n  {%"), Gemma2, true},
		{"systemgemma2", systemGemma2Source, SystemGemma2, true},
		{"gemma3 config", gemma3Src, Gemma3, true},
		{"chatml", `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}{% endfor %}`, "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		got, ok := Detect(tt.src)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Detect(%s) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// readChatTemplate returns the chat_template string of a tokenizer config.
func readChatTemplate(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reference tokenizer config missing (expected at %s relative to runtime/chat): %v", path, err)
	}
	src, found, err := templateSource(rawField(t, b, "chat_template"))
	if err != nil || !found {
		t.Fatalf("%s has no usable chat_template: %v", path, err)
	}
	return src
}

func TestFromTokenizerConfigGemma3(t *testing.T) {
	readChatTemplate(t, gemma3ConfigPath) // fails clearly if the file is missing
	if name, err := FromTokenizerConfig(gemma3ConfigPath); err != nil || name != Gemma3 {
		t.Fatalf("FromTokenizerConfig(gemma3 config) = %q, %v; want gemma3", name, err)
	}
}

func TestFromTokenizerConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	quote := func(s string) string { return string(mustJSON(t, s)) }

	tests := []struct {
		name, config string
		jinja        string // chat_template.jinja beside the config, if any
		want         string
		errHas       string
	}{
		{name: "no template defaults to gemma2", config: `{"bos_token":"<bos>"}`, want: Gemma2},
		{name: "null template", config: `{"chat_template":null}`, want: Gemma2},
		{name: "gemma2 string", config: `{"chat_template":` + quote(gemma2Source) + `}`, want: Gemma2},
		{name: "systemgemma2 string", config: `{"chat_template":` + quote(systemGemma2Source) + `}`, want: SystemGemma2},
		{name: "named list", config: `{"chat_template":[{"name":"tool_use","template":"x"},{"name":"default","template":` + quote(systemGemma2Source) + `}]}`, want: SystemGemma2},
		{name: "named list without default", config: `{"chat_template":[{"name":"rag","template":"x"}]}`, errHas: `"default"`},
		{name: "jinja file beside config", config: `{}`, jinja: gemma2Source, want: Gemma2},
		{name: "unrecognised", config: `{"chat_template":"{{ messages }}"}`, errHas: "none of the built-in templates (gemma2, systemgemma2, gemma3)"},
		{name: "bad type", config: `{"chat_template":42}`, errHas: "neither a string"},
		{name: "bad json", config: `{`, errHas: "parsing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(filepath.Join(dir, "chat_template.jinja"))
			if tt.jinja != "" {
				write("chat_template.jinja", tt.jinja)
			}
			got, err := FromTokenizerConfig(write("tokenizer_config.json", tt.config))
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	if _, err := FromTokenizerConfig(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file: want error")
	}
}

func TestSourceRoundTripsThroughDetect(t *testing.T) {
	for _, name := range Names() {
		src, err := Source(name)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := Detect(src); !ok || got != name {
			t.Errorf("Detect(Source(%q)) = %q, %v", name, got, ok)
		}
		path := filepath.Join(t.TempDir(), "tokenizer_config.json")
		if err := WriteTokenizerConfig(path, src); err != nil {
			t.Fatal(err)
		}
		if got, err := FromTokenizerConfig(path); err != nil || got != name {
			t.Errorf("FromTokenizerConfig after WriteTokenizerConfig(%q) = %q, %v", name, got, err)
		}
	}
	if _, err := Source("llama3"); err == nil {
		t.Error("Source accepted an unknown template")
	}
}
