package chat

import (
	"errors"
	"fmt"
	"strings"
)

// Template names accepted by Render.
const (
	Gemma2       = "gemma2"
	SystemGemma2 = "systemgemma2"
	Gemma3       = "gemma3"
)

// Text the templates emit around turns.
const (
	bosToken    = "<bos>"
	startOfTurn = "<start_of_turn>"
	endOfTurn   = "<end_of_turn>\n"
	genPrompt   = startOfTurn + "model\n"

	// errAlternate mirrors the templates' raise_exception text so that the
	// error is recognisable to anyone who has seen the Python one.
	errAlternate = "conversation roles must alternate user/assistant/user/assistant/..."
)

type renderFunc func(msgs []Message, addGenerationPrompt bool) (string, error)

// renderers lists the built-ins in the order Names reports them.
var renderers = []struct {
	name   string
	render renderFunc
}{
	{Gemma2, renderGemma2},
	{SystemGemma2, renderSystemGemma2},
	{Gemma3, renderGemma3},
}

// Names returns the names of the built-in templates.
func Names() []string {
	names := make([]string, len(renderers))
	for i, r := range renderers {
		names[i] = r.name
	}
	return names
}

// Render formats msgs with the named built-in template. With
// addGenerationPrompt the result ends with an open model turn, ready for
// generation. Message content is trimmed as the templates' trim filter
// does; a system prompt is written as given.
//
// Render returns an error wrapping ErrUnknownTemplate for an unknown
// template name, and a *ConversationError (wrapping
// ErrInvalidConversation) for a conversation the template rejects: an
// unsupported role, roles that do not alternate user/assistant, or a
// system message where the template has no place for one.
func Render(template string, msgs []Message, addGenerationPrompt bool) (string, error) {
	for _, r := range renderers {
		if r.name == template {
			if err := checkRoles(template, msgs); err != nil {
				return "", err
			}
			return r.render(msgs, addGenerationPrompt)
		}
	}
	return "", fmt.Errorf("chat: %w %q (known: %s)", ErrUnknownTemplate, template, strings.Join(Names(), ", "))
}

// checkRoles rejects malformed role names up front, so that the error names
// the role rather than reporting a failed alternation. Like the Jinja
// templates, other roles ("tool", say) are rendered as turns of their own
// name in the model's slots; the name must be a plain lowercase word, since
// it is written into the prompt between control tokens.
func checkRoles(template string, msgs []Message) error {
	for i, m := range msgs {
		if !isRoleName(m.Role) {
			return &ConversationError{template, i, m.Role, `unsupported role; want "system", "user", "assistant" or another lowercase word such as "tool"`}
		}
	}
	return nil
}

func isRoleName(role string) bool {
	if role == "" || len(role) > 32 {
		return false
	}
	for i, c := range role {
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// turnName is the name a message's turn is rendered under.
func turnName(role string) string {
	if role == RoleAssistant {
		return roleModel
	}
	return role
}

// writeTurn appends one turn; prefix goes before the trimmed content and
// is itself not trimmed (gemma3 puts the system prompt there).
func writeTurn(b *strings.Builder, role, prefix, content string) {
	b.WriteString(startOfTurn)
	b.WriteString(turnName(role))
	b.WriteByte('\n')
	b.WriteString(prefix)
	b.WriteString(trimSpace(content))
	b.WriteString(endOfTurn)
}

// alternates reports whether a message with role may sit at loop position
// pos: user turns belong exactly at the even positions when userAtEven (at
// the odd ones otherwise), any other role at the rest. It is the negation
// of the templates' (message['role'] == 'user') != (loop.index0 % 2 == 0).
func alternates(role string, pos int, userAtEven bool) bool {
	return (role == RoleUser) == ((pos%2 == 0) == userAtEven)
}

func alternationError(template string, i int, role string) error {
	return &ConversationError{template, i, role, errAlternate}
}

// renderGemma2 reproduces google/gemma-2-2b-it's chat template. A system
// message is rejected only in first position: later ones pass the
// alternation check at odd positions and are rendered as a "system" turn,
// exactly as the Jinja template does.
//
// An empty conversation renders as just <bos> (plus the generation
// prompt), as in @huggingface/jinja; Python's jinja2 raises there instead.
func renderGemma2(msgs []Message, gen bool) (string, error) {
	if len(msgs) > 0 && msgs[0].Role == RoleSystem {
		return "", &ConversationError{Gemma2, 0, RoleSystem, `system role not supported (use the "systemgemma2" or "gemma3" template)`}
	}
	var b strings.Builder
	b.WriteString(bosToken)
	for i, m := range msgs {
		if !alternates(m.Role, i, true) {
			return "", alternationError(Gemma2, i, m.Role)
		}
		writeTurn(&b, m.Role, "", m.Content)
	}
	if gen {
		b.WriteString(genPrompt)
	}
	return b.String(), nil
}

// renderSystemGemma2 renders a Gemma-2 conversation that may start with a
// system prompt. The prompt is written verbatim (not trimmed) after <bos>,
// followed by a newline, and the remaining messages as Gemma-2 turns; any
// later system message is dropped. This mirrors systemGemma2Source, which
// was reconstructed from the reference outputs.
//
// Product decision: a conversation that does not start with a system
// message renders exactly as with the "gemma2" template (output and
// errors alike). The reconstructed Jinja template instead expects the
// first user turn at an odd position and so rejects a plain user-first
// conversation while accepting one that starts with the assistant; we
// prefer the gemma2 behaviour so that adding or removing a system prompt
// never changes how the rest of the conversation is validated.
func renderSystemGemma2(msgs []Message, gen bool) (string, error) {
	if len(msgs) == 0 || msgs[0].Role != RoleSystem {
		out, err := renderGemma2(msgs, gen)
		var ce *ConversationError
		if errors.As(err, &ce) {
			ce.Template = SystemGemma2 // name the template the caller asked for
		}
		return out, err
	}
	var b strings.Builder
	b.WriteString(bosToken)
	b.WriteString(msgs[0].Content)
	b.WriteByte('\n')
	// The system message occupies position 0, so user turns fall on odd
	// positions of the full slice.
	for i, m := range msgs {
		if !alternates(m.Role, i, false) {
			return "", alternationError(SystemGemma2, i, m.Role)
		}
		if m.Role == RoleSystem {
			continue
		}
		writeTurn(&b, m.Role, "", m.Content)
	}
	if gen {
		b.WriteString(genPrompt)
	}
	return b.String(), nil
}

// renderGemma3 reproduces google/gemma-3-*-it's chat template (text
// content only). A leading system message becomes a prefix of the first
// turn, separated from it by a blank line and not trimmed; the remaining
// messages alternate starting with the user. Later system messages are
// rendered as "system" turns, as the Jinja template does, and a system
// prompt with no following message produces no text at all.
func renderGemma3(msgs []Message, gen bool) (string, error) {
	var b strings.Builder
	b.WriteString(bosToken)
	prefix, first := "", 0
	if len(msgs) > 0 && msgs[0].Role == RoleSystem {
		prefix, first = msgs[0].Content+"\n\n", 1
	}
	for i := first; i < len(msgs); i++ {
		m := msgs[i]
		if !alternates(m.Role, i-first, true) {
			return "", alternationError(Gemma3, i, m.Role)
		}
		p := ""
		if i == first {
			p = prefix
		}
		writeTurn(&b, m.Role, p, m.Content)
	}
	if gen {
		b.WriteString(genPrompt)
	}
	return b.String(), nil
}
