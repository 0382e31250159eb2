package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ardanlabs/jinja"
)

// Template is a compiled chat_template: a checkpoint's own Jinja source,
// rendered by a Jinja engine (github.com/ardanlabs/jinja) instead of a
// built-in renderer. It is the path for templates that Detect does not
// recognise, and a cross-check of the built-ins for those it does.
//
// Rendering follows Hugging Face's apply_chat_template as implemented by
// @huggingface/jinja: the template sees messages (a list of {role,
// content} dicts), add_generation_prompt, the special tokens (bos_token,
// eos_token, ...) and a raise_exception function; trim strips the
// JavaScript whitespace set (see trimSpace). Unlike Render, no role or
// alternation checks are made in Go: the template alone decides what it
// accepts.
//
// Message content is data: text such as "{{" or "{%" inside a message is
// written out as is, never evaluated. The template itself is code, and a
// hostile template can still loop for a long time; compile only templates
// from checkpoints you would run.
//
// A Template is safe for concurrent use by multiple goroutines.
type Template struct {
	tmpl    *jinja.Template
	source  string
	special map[string]string // defaults from tokenizer_config.json
	// swapSafe is false when the source itself contains one of the runes
	// the trim workaround (see swapTrimRunes) substitutes.
	swapSafe bool
}

// TemplateError reports a template's call to raise_exception. It wraps
// ErrInvalidConversation, as chat templates raise for conversations they
// reject.
type TemplateError struct {
	Message string // the template's message, verbatim
}

func (e *TemplateError) Error() string {
	return "chat: chat template raised: " + e.Message
}

// Unwrap makes errors.Is(err, ErrInvalidConversation) true.
func (e *TemplateError) Unwrap() error { return ErrInvalidConversation }

// ParseTemplate compiles the Jinja source of a chat_template.
func ParseTemplate(source string) (*Template, error) {
	t, err := jinja.Compile(source)
	if err != nil {
		return nil, fmt.Errorf("chat: compiling chat template: %w", err)
	}
	return &Template{tmpl: t, source: source, swapSafe: !strings.ContainsAny(source, "\u0085\uFEFF")}, nil
}

// TemplateFromTokenizerConfig reads the chat template of a checkpoint's
// tokenizer_config.json, found as FromTokenizerConfig finds it: the
// chat_template string, or the entry named "default" of a list of
// {"name", "template"} objects; failing that a chat_template.jinja beside
// the file; failing that the "gemma2" template of the original Gemma
// checkpoints.
//
// The special tokens of the file (bos_token, eos_token and every other
// top-level *_token entry, given as a string or as an {"content": ...}
// object) become the defaults of the template's special variables.
func TemplateFromTokenizerConfig(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("chat: reading tokenizer config: %w", err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("chat: parsing %s: %w", path, err)
	}
	src, found, err := templateSource(cfg["chat_template"])
	if err != nil {
		return nil, fmt.Errorf("chat: %s: %w", path, err)
	}
	if !found {
		jinjaPath := filepath.Join(filepath.Dir(path), "chat_template.jinja")
		b, err := os.ReadFile(jinjaPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			src = gemma2Source
		case err != nil:
			return nil, fmt.Errorf("chat: reading chat template: %w", err)
		default:
			src, path = string(b), jinjaPath
		}
	}
	t, err := ParseTemplate(src)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	t.special = specialTokens(cfg)
	return t, nil
}

// specialTokens collects the *_token entries of a tokenizer config.
func specialTokens(cfg map[string]json.RawMessage) map[string]string {
	special := map[string]string{}
	for k, raw := range cfg {
		if !strings.HasSuffix(k, "_token") {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			special[k] = s
			continue
		}
		var added struct {
			Content *string `json:"content"`
		}
		if json.Unmarshal(raw, &added) == nil && added.Content != nil {
			special[k] = *added.Content
		}
	}
	return special
}

// Render formats msgs with the template. special supplies template
// variables such as bos_token and eos_token; its entries override the
// defaults read by TemplateFromTokenizerConfig (a Template from
// ParseTemplate has none, so pass at least bos_token). The names
// messages, add_generation_prompt and raise_exception are reserved.
//
// A raise_exception in the template is returned as a *TemplateError.
func (t *Template) Render(msgs []Message, addGenerationPrompt bool, special map[string]string) (string, error) {
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(m.Content))
		list[i] = d
	}
	return t.render(jinja.NewList(list), addGenerationPrompt, special)
}

// RenderJSON is Render for messages given as a JSON array, as chat APIs
// receive them: content may be a list of parts such as
// [{"type": "image"}, {"type": "text", "text": "..."}], which templates
// like Gemma 3's render. Object keys reach the template in sorted order.
func (t *Template) RenderJSON(messages []byte, addGenerationPrompt bool, special map[string]string) (string, error) {
	var msgs []any
	if err := json.Unmarshal(messages, &msgs); err != nil {
		return "", fmt.Errorf("chat: decoding messages: %w", err)
	}
	return t.render(jinja.FromGoValue(msgs), addGenerationPrompt, special)
}

func (t *Template) render(messages jinja.Value, gen bool, special map[string]string) (out string, err error) {
	sw := noSwap
	if t.swapSafe {
		sw = newTrimSwap(t.source, messages, t.special, special)
	}
	data := make(map[string]jinja.Value, len(t.special)+len(special)+3)
	for k, v := range t.special {
		data[k] = jinja.NewString(sw.encode(v))
	}
	for k, v := range special {
		data[k] = jinja.NewString(sw.encode(v))
	}
	if sw != noSwap {
		messages = sw.encodeValue(messages)
	}
	data["messages"] = messages
	data["add_generation_prompt"] = jinja.NewBool(gen)
	data["raise_exception"] = jinja.NewCallable("raise_exception", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		msg := "raise_exception called"
		if len(args) > 0 && args[0].IsString() {
			msg = sw.decode(args[0].AsString())
		} else if len(args) > 0 {
			msg = sw.decode(args[0].String())
		}
		return jinja.Undefined(), &TemplateError{Message: msg}
	})

	// The engine trusts its input less than we would like: a template that
	// misuses a value can panic inside it. Report that as an error.
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chat: rendering chat template: engine panic: %v", r)
		}
	}()
	out, err = t.tmpl.RenderValues(data)
	if err != nil {
		var te *TemplateError
		if errors.As(err, &te) {
			return "", te
		}
		return "", fmt.Errorf("chat: rendering chat template: %w", err)
	}
	return sw.decode(out), nil
}

// The engine's trim filter (and str.strip) strips Go's unicode.IsSpace
// set, which differs from JavaScript's in two runes: Go strips NEL
// U+0085 and not the byte-order mark U+FEFF; JavaScript the reverse. The
// engine offers no way to replace a built-in filter, so when an input
// holds either rune, Render substitutes them on the way in and back on
// the way out: NEL becomes a private-use rune absent from every input and
// from the template (not white space to either), and U+FEFF becomes NEL
// (white space to Go). Everything the template does with the text is
// unchanged except that trim now strips exactly the JavaScript set.
//
// The substitution is skipped for a template whose source contains
// either rune, since its own literal text could not be told apart.
type trimSwap struct {
	nel rune // stands in for U+0085
}

var noSwap = &trimSwap{}

func newTrimSwap(source string, messages jinja.Value, defaults, special map[string]string) *trimSwap {
	used := map[rune]bool{}
	needed := false
	scan := func(s string) {
		for _, r := range s {
			switch {
			case r == '\u0085' || r == '\uFEFF':
				needed = true
			case r >= 0xE000 && r <= 0xF8FF:
				used[r] = true
			}
		}
	}
	walkStrings(messages, scan)
	for _, v := range defaults {
		scan(v)
	}
	for _, v := range special {
		scan(v)
	}
	if !needed {
		return noSwap
	}
	needed = false
	scan(source) // the stand-in must not occur in the template's own text
	for r := rune(0xE000); r <= 0xF8FF; r++ {
		if !used[r] {
			return &trimSwap{nel: r}
		}
	}
	return noSwap // every private-use rune is taken: give up on the workaround
}

func (s *trimSwap) encode(v string) string {
	if s == noSwap || !strings.ContainsAny(v, "\u0085\uFEFF") {
		return v
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '\u0085':
			return s.nel
		case '\uFEFF':
			return '\u0085'
		}
		return r
	}, v)
}

func (s *trimSwap) decode(v string) string {
	if s == noSwap {
		return v
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case s.nel:
			return '\u0085'
		case '\u0085':
			return '\uFEFF'
		}
		return r
	}, v)
}

// encodeValue returns a copy of v with every string encoded.
func (s *trimSwap) encodeValue(v jinja.Value) jinja.Value {
	switch {
	case v.IsString():
		return jinja.NewString(s.encode(v.AsString()))
	case v.IsList():
		items := v.AsList().Items
		out := make([]jinja.Value, len(items))
		for i, it := range items {
			out[i] = s.encodeValue(it)
		}
		return jinja.NewList(out)
	case v.IsDict():
		d := v.AsDict()
		out := jinja.NewDict()
		for _, k := range d.OrderedKeys() {
			val, _ := d.Get(k)
			out.AsDict().Set(s.encode(k), s.encodeValue(val))
		}
		return out
	}
	return v
}

func walkStrings(v jinja.Value, f func(string)) {
	switch {
	case v.IsString():
		f(v.AsString())
	case v.IsList():
		for _, it := range v.AsList().Items {
			walkStrings(it, f)
		}
	case v.IsDict():
		d := v.AsDict()
		for _, k := range d.OrderedKeys() {
			f(k)
			val, _ := d.Get(k)
			walkStrings(val, f)
		}
	}
}
