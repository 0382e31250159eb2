package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/gemmac/gemmac/runtime/chat"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/sample"
)

// maxBody bounds a request body.
const maxBody = 16 << 20

// maxStops bounds the stop sequences of one request.
const maxStops = 16

// params are the request fields the chat and completions endpoints share.
type params struct {
	Model               string          `json:"model"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                *int            `json:"top_k"`
	MinP                *float64        `json:"min_p"`
	RepetitionPenalty   *float64        `json:"repetition_penalty"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	N                   *int            `json:"n"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Logprobs json.RawMessage `json:"logprobs"`
	BestOf   *int            `json:"best_of"`
	Echo     bool            `json:"echo"`
	Suffix   *string         `json:"suffix"`
}

type chatRequest struct {
	params
	Messages       []chatMessage   `json:"messages"`
	Tools          json.RawMessage `json:"tools"`
	ResponseFormat *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type completionRequest struct {
	params
	Prompt json.RawMessage `json:"prompt"`
}

// job is a validated request, ready to run.
type job struct {
	chat         bool // chat.completion objects, else text_completion
	opts         model.GenerateOptions
	stops        []string
	stream       bool
	includeUsage bool
	model        string // the name to echo back
}

// decodeJSON reads a request body into v.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) *apiError {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return invalid("", "Content-Type is %q; send application/json", ct)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error",
				Message: fmt.Sprintf("the request body is over %d bytes", tooBig.Limit)}
		}
		return invalid("", "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return invalid("", "the request body is empty; send a JSON object")
	}
	if err := json.Unmarshal(data, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return invalid(typeErr.Field, "%s must be of type %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return invalid("", "the request body is not valid JSON: %v", err)
	}
	return nil
}

// checkModel accepts the served name or none.
func checkModel(requested, served string) *apiError {
	if requested == "" || requested == served {
		return nil
	}
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("the model %q does not exist; this server serves %q", requested, served)}
}

// job validates the shared parameters.
func (p *params) job(isChat bool, served string) (*job, *apiError) {
	j := &job{chat: isChat, stream: p.Stream, model: served}
	if p.StreamOptions != nil {
		if !p.Stream {
			return nil, invalid("stream_options", "stream_options is only allowed when stream is true")
		}
		j.includeUsage = p.StreamOptions.IncludeUsage
	}
	if p.N != nil && *p.N != 1 {
		return nil, invalid("n", "n is %d; this server generates one choice per request (n=1)", *p.N)
	}
	if p.BestOf != nil && *p.BestOf != 1 {
		return nil, invalid("best_of", "best_of is %d; only 1 is supported", *p.BestOf)
	}
	if p.Echo {
		return nil, unsupported("echo")
	}
	if p.Suffix != nil && *p.Suffix != "" {
		return nil, unsupported("suffix")
	}
	if lp := bytes.TrimSpace(p.Logprobs); len(lp) > 0 && !bytes.Equal(lp, []byte("null")) && !bytes.Equal(lp, []byte("false")) {
		return nil, unsupported("logprobs")
	}
	for _, pen := range []struct {
		name string
		v    *float64
	}{{"presence_penalty", p.PresencePenalty}, {"frequency_penalty", p.FrequencyPenalty}} {
		if pen.v != nil && *pen.v != 0 {
			e := invalid(pen.name, "%s is not supported (use repetition_penalty, Hugging Face's rule, instead)", pen.name)
			e.Code = "unsupported_parameter"
			return nil, e
		}
	}

	// OpenAI's defaults: temperature 1, top_p 1, a random seed.
	o := sample.Options{Temperature: 1, TopP: 1, Seed: rand.Uint64()}
	// Each parameter is checked on its own with sample.Options.Validate,
	// so that the error can name it.
	check := func(param string, set func(*sample.Options)) *apiError {
		var one sample.Options
		set(&one)
		if err := one.Validate(); err != nil {
			return invalid(param, "%s: %s", param, strings.TrimPrefix(err.Error(), "sample: "))
		}
		set(&o)
		return nil
	}
	f32 := func(v float64) float32 { return float32(v) }
	if p.Temperature != nil {
		if e := check("temperature", func(s *sample.Options) { s.Temperature = f32(*p.Temperature) }); e != nil {
			return nil, e
		}
	}
	if p.TopP != nil {
		if e := check("top_p", func(s *sample.Options) { s.TopP = f32(*p.TopP) }); e != nil {
			return nil, e
		}
	}
	if p.TopK != nil {
		if e := check("top_k", func(s *sample.Options) { s.TopK = *p.TopK }); e != nil {
			return nil, e
		}
	}
	if p.MinP != nil {
		if e := check("min_p", func(s *sample.Options) { s.MinP = f32(*p.MinP) }); e != nil {
			return nil, e
		}
	}
	if p.RepetitionPenalty != nil {
		if e := check("repetition_penalty", func(s *sample.Options) { s.RepetitionPenalty = f32(*p.RepetitionPenalty) }); e != nil {
			return nil, e
		}
	}
	if p.Seed != nil {
		o.Seed = uint64(*p.Seed)
	}
	if err := o.Validate(); err != nil { // cannot fail after the checks above; kept as a guard
		return nil, invalid("", "%v", err)
	}
	j.opts.Options = o

	for _, mt := range []struct {
		name string
		v    *int
	}{{"max_tokens", p.MaxTokens}, {"max_completion_tokens", p.MaxCompletionTokens}} {
		if mt.v == nil {
			continue
		}
		if *mt.v < 1 {
			return nil, invalid(mt.name, "%s is %d; want at least 1", mt.name, *mt.v)
		}
		j.opts.MaxTokens = *mt.v // max_completion_tokens, checked last, wins
	}

	stops, e := parseStop(p.Stop)
	if e != nil {
		return nil, e
	}
	j.stops = stops
	return j, nil
}

// parseStop reads stop: null, a string, or a list of strings.
func parseStop(raw json.RawMessage) ([]string, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var list []string
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		list = []string{one}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, invalid("stop", "stop must be a string or a list of strings")
	}
	if len(list) > maxStops {
		return nil, invalid("stop", "stop has %d sequences; at most %d are allowed", len(list), maxStops)
	}
	var stops []string
	for _, s := range list {
		if s != "" {
			stops = append(stops, s)
		}
	}
	return stops, nil
}

// messages converts the request's messages for the chat template.
func (r *chatRequest) messages() ([]chat.Message, *apiError) {
	if len(r.Messages) == 0 {
		return nil, invalid("messages", "messages is empty; send at least one message")
	}
	if t := bytes.TrimSpace(r.Tools); len(t) > 0 && !bytes.Equal(t, []byte("null")) && !bytes.Equal(t, []byte("[]")) {
		return nil, unsupported("tools")
	}
	if r.ResponseFormat != nil && r.ResponseFormat.Type != "" && r.ResponseFormat.Type != "text" {
		return nil, invalid("response_format", "response_format type %q is not supported (only \"text\")", r.ResponseFormat.Type)
	}
	msgs := make([]chat.Message, len(r.Messages))
	for i, m := range r.Messages {
		role := m.Role
		switch role {
		case chat.RoleSystem, chat.RoleUser, chat.RoleAssistant:
		case "developer": // OpenAI's newer name for the system message
			role = chat.RoleSystem
		case "":
			return nil, invalid(fmt.Sprintf("messages[%d].role", i), "messages[%d] has no role", i)
		default:
			return nil, invalid(fmt.Sprintf("messages[%d].role", i),
				"messages[%d] has role %q; want system, user or assistant", i, m.Role)
		}
		content, e := messageContent(i, m.Content)
		if e != nil {
			return nil, e
		}
		msgs[i] = chat.Message{Role: role, Content: content}
	}
	return msgs, nil
}

// messageContent reads a message's content: a string, null, or a list of
// parts of which only "text" parts are supported; their texts are joined.
func messageContent(i int, raw json.RawMessage) (string, *apiError) {
	raw = bytes.TrimSpace(raw)
	param := fmt.Sprintf("messages[%d].content", i)
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
		return "", nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", invalid(param, "%s: %v", param, err)
		}
		return s, nil
	case raw[0] == '[':
		var parts []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", invalid(param, "%s must be a string or a list of content parts", param)
		}
		var b strings.Builder
		for j, part := range parts {
			if part.Type != "text" {
				return "", invalid(fmt.Sprintf("%s[%d].type", param, j),
					"%s[%d] is a %q part; only \"text\" parts are supported", param, j, part.Type)
			}
			if part.Text == nil {
				return "", invalid(fmt.Sprintf("%s[%d].text", param, j), "%s[%d] has no text", param, j)
			}
			b.WriteString(*part.Text)
		}
		return b.String(), nil
	default:
		return "", invalid(param, "%s must be a string or a list of content parts", param)
	}
}

// promptTokens reads a completion prompt: a string, a list of one string,
// or a list of token ids. A string gets BOS; token ids are taken as given.
func (r *completionRequest) promptTokens(encode func(string) []int, vocab int) ([]int, *apiError) {
	raw := bytes.TrimSpace(r.Prompt)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, invalid("prompt", "prompt is required")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return encode(s), nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		if len(list) != 1 {
			return nil, invalid("prompt", "prompt has %d strings; this server completes one prompt per request", len(list))
		}
		return encode(list[0]), nil
	}
	var ids []int
	if err := json.Unmarshal(raw, &ids); err == nil {
		if len(ids) == 0 {
			return nil, invalid("prompt", "prompt is an empty list of tokens")
		}
		for i, id := range ids {
			if id < 0 || id >= vocab {
				return nil, invalid("prompt", "prompt token %d at index %d is outside the vocabulary of %d", id, i, vocab)
			}
		}
		return ids, nil
	}
	return nil, invalid("prompt", "prompt must be a string, a list of one string, or a list of token ids")
}
