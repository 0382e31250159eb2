package chat

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestRenderErrors(t *testing.T) {
	u := func(s string) Message { return Message{RoleUser, s} }
	a := func(s string) Message { return Message{RoleAssistant, s} }
	sys := Message{RoleSystem, "Be brief."}
	tests := []struct {
		template string
		msgs     []Message
		index    int
		role     string
		reason   string // substring of the message
	}{
		{Gemma2, []Message{sys, u("hi")}, 0, "system", "system role not supported"},
		{Gemma2, []Message{a("hi")}, 0, "assistant", "must alternate"},
		{Gemma2, []Message{u("a"), u("b")}, 1, "user", "must alternate"},
		{Gemma2, []Message{u("a"), {"tool<end_of_turn>", "42"}}, 1, "tool<end_of_turn>", "unsupported role"},
		{Gemma2, []Message{u("a"), {"", "x"}}, 1, "", "unsupported role"},
		{SystemGemma2, []Message{sys, a("hi")}, 1, "assistant", "must alternate"},
		{SystemGemma2, []Message{sys, u("a"), a("b"), a("c")}, 3, "assistant", "must alternate"},
		{SystemGemma2, []Message{u("a"), a("b"), u("c"), u("d")}, 3, "user", "must alternate"},
		{SystemGemma2, []Message{a("first")}, 0, "assistant", "must alternate"},
		{SystemGemma2, []Message{sys, {"User", "x"}}, 1, "User", "unsupported role"},
		{Gemma3, []Message{sys, a("hi")}, 1, "assistant", "must alternate"},
		{Gemma3, []Message{sys, u("a"), u("b")}, 2, "user", "must alternate"},
		{Gemma3, []Message{u("a"), {"Function", "{}"}}, 1, "Function", "unsupported role"},
	}
	for _, tt := range tests {
		_, err := Render(tt.template, tt.msgs, true)
		var ce *ConversationError
		if !errors.As(err, &ce) {
			t.Errorf("%s %v: err = %v; want *ConversationError", tt.template, tt.msgs, err)
			continue
		}
		if !errors.Is(err, ErrInvalidConversation) {
			t.Errorf("%v does not wrap ErrInvalidConversation", err)
		}
		if ce.Template != tt.template || ce.Index != tt.index || ce.Role != tt.role {
			t.Errorf("%s %v: error at %s/%d/%q; want %s/%d/%q", tt.template, tt.msgs, ce.Template, ce.Index, ce.Role, tt.template, tt.index, tt.role)
		}
		msg := err.Error()
		for _, want := range []string{tt.template, "message " + strconv.Itoa(tt.index), `"` + tt.role + `"`, tt.reason} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
	}
}

func TestRenderErrorMessageText(t *testing.T) {
	_, err := Render(Gemma2, []Message{{RoleUser, "a"}, {"to ol", "b"}}, false)
	const want = `chat: gemma2 template: message 1 (role "to ol"): unsupported role; want "system", "user", "assistant" or another lowercase word such as "tool"`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v;\nwant %s", err, want)
	}
}

func TestUnknownTemplate(t *testing.T) {
	_, err := Render("llama3", []Message{{RoleUser, "hi"}}, true)
	if !errors.Is(err, ErrUnknownTemplate) {
		t.Fatalf("err = %v; want ErrUnknownTemplate", err)
	}
	for _, want := range append(Names(), `"llama3"`) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestNames(t *testing.T) {
	names := Names()
	if strings.Join(names, ",") != "gemma2,systemgemma2,gemma3" {
		t.Fatalf("Names() = %v", names)
	}
	names[0] = "mutated"
	if Names()[0] != Gemma2 {
		t.Fatal("Names returns shared storage")
	}
}

func TestModelRoleIsAssistant(t *testing.T) {
	for _, name := range Names() {
		msgs := []Message{{RoleSystem, "S"}, {RoleUser, "Q"}, {RoleAssistant, "A"}, {RoleUser, "Q2"}}
		if name == Gemma2 {
			msgs = msgs[1:]
		}
		want, err := Render(name, msgs, true)
		if err != nil {
			t.Fatal(err)
		}
		msgs[len(msgs)-2].Role = "model"
		if got, err := Render(name, msgs, true); err != nil || got != want {
			t.Errorf("%s: model role rendered %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestMessageUnmarshal(t *testing.T) {
	var m Message
	if err := json.Unmarshal([]byte(`{"role":"user","content":"hi"}`), &m); err != nil || m != (Message{"user", "hi"}) {
		t.Errorf("got %+v, %v", m, err)
	}
	if err := json.Unmarshal([]byte(`{"role":"user","content":null}`), &m); err != nil || m != (Message{"user", ""}) {
		t.Errorf("null content: got %+v, %v", m, err)
	}
	err := json.Unmarshal([]byte(`{"role":"user","content":[{"type":"image"}]}`), &m)
	if err == nil || !strings.Contains(err.Error(), "multimodal") || !strings.Contains(err.Error(), `"user"`) {
		t.Errorf("list content: err = %v; want a clear multimodal error", err)
	}
	b, _ := json.Marshal(Message{"assistant", "ok"})
	if string(b) != `{"role":"assistant","content":"ok"}` {
		t.Errorf("Marshal = %s", b)
	}
}

func TestTrimSpace(t *testing.T) {
	tests := map[string]string{
		" \t\n\v\f\rx\r\n":    "x",
		"\u00a0\u3000x\u2028": "x",
		"\ufeffx\ufeff":       "x",             // JavaScript strips the BOM
		"\u0085x\u0085":       "\u0085x\u0085", // but not NEL
		"\u001fx\u001f":       "\u001fx\u001f", // nor the ASCII separators
		"\u200bx":             "\u200bx",       // zero-width space is not Zs
		"a b":                 "a b",
		"":                    "",
	}
	for in, want := range tests {
		if got := trimSpace(in); got != want {
			t.Errorf("trimSpace(%q) = %q; want %q", in, got, want)
		}
	}
}
