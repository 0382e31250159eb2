package chat

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Message is one turn of a conversation.
//
// Role is "system", "user" or "assistant"; "model", Gemma's own name for
// the assistant turn, is accepted as a synonym of "assistant". Content is
// plain text: multimodal content lists are not supported.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// UnmarshalJSON decodes a message, rejecting non-string content (such as
// the [{"type":"image"},...] lists of multimodal chat APIs) with an
// explicit error instead of encoding/json's generic type mismatch, so
// that callers decoding OpenAI-style requests can tell users why.
func (m *Message) UnmarshalJSON(data []byte) error {
	var raw struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	var content string
	if len(raw.Content) > 0 && string(raw.Content) != "null" {
		if err := json.Unmarshal(raw.Content, &content); err != nil {
			return fmt.Errorf("chat: message with role %q: content must be a string (multimodal content lists are not supported)", raw.Role)
		}
	}
	m.Role, m.Content = raw.Role, content
	return nil
}

// Roles accepted in a Message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	roleModel     = "model" // synonym of RoleAssistant; also the rendered turn name
)

// ErrInvalidConversation is wrapped by every *ConversationError, so callers
// can test for a rejected conversation with errors.Is.
var ErrInvalidConversation = errors.New("invalid conversation")

// ErrUnknownTemplate is wrapped by the error Render returns for a template
// name that is not built in.
var ErrUnknownTemplate = errors.New("unknown chat template")

// ConversationError reports a conversation a template cannot render: the
// template, the offending message's index in the caller's slice, its role,
// and what is wrong with it.
type ConversationError struct {
	Template string
	Index    int
	Role     string
	Reason   string
}

func (e *ConversationError) Error() string {
	return fmt.Sprintf("chat: %s template: message %d (role %q): %s", e.Template, e.Index, e.Role, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidConversation) true.
func (e *ConversationError) Unwrap() error { return ErrInvalidConversation }
