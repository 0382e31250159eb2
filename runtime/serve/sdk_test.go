package serve

import (
	"context"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

func chatParams(content string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:       modelName,
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)},
		MaxTokens:   openai.Int(maxTokens),
		Temperature: openai.Float(0),
		Seed:        openai.Int(7),
	}
}

func TestChatWithOpenAIClient(t *testing.T) {
	_, ts := newServer(t, Options{})
	client := newClient(ts)
	ctx := context.Background()

	params := chatParams("Write a Go function that adds two numbers.", 5)
	resp, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" || resp.Model != modelName || resp.Created == 0 {
		t.Errorf("response header fields: id %q object %q model %q created %d", resp.ID, resp.Object, resp.Model, resp.Created)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("%d choices, want 1", len(resp.Choices))
	}
	c := resp.Choices[0]
	if c.Message.Content == "" || c.Message.Role != "assistant" {
		t.Errorf("message %+v: want non-empty assistant content", c.Message)
	}
	if c.FinishReason != "length" {
		t.Errorf("finish_reason %q, want length (max_tokens 5)", c.FinishReason)
	}
	u := resp.Usage
	if u.PromptTokens <= 0 || u.CompletionTokens != 5 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage %+v: want completion 5 and total = prompt + completion", u)
	}

	// The same request streamed: the chunks add up to the same text.
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	var finishes []string
	chunks, roles := 0, 0
	for stream.Next() {
		ch := stream.Current()
		chunks++
		if ch.Object != "chat.completion.chunk" || ch.Model != modelName || !strings.HasPrefix(ch.ID, "chatcmpl-") {
			t.Errorf("chunk header fields: %q %q %q", ch.Object, ch.Model, ch.ID)
		}
		for _, c := range ch.Choices {
			if c.Delta.Role != "" {
				roles++
				if chunks != 1 || c.Delta.Role != "assistant" {
					t.Errorf("chunk %d has role %q; want assistant in the first chunk only", chunks, c.Delta.Role)
				}
			}
			text.WriteString(c.Delta.Content)
			if c.FinishReason != "" {
				finishes = append(finishes, c.FinishReason)
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != resp.Choices[0].Message.Content {
		t.Errorf("streamed %q, not streamed %q", text.String(), resp.Choices[0].Message.Content)
	}
	if len(finishes) != 1 || finishes[0] != "length" || roles != 1 {
		t.Errorf("finish reasons %q and %d role deltas; want [length] and 1", finishes, roles)
	}
}

func TestChatStreamUsage(t *testing.T) {
	_, ts := newServer(t, Options{})
	client := newClient(ts)
	params := chatParams("package main", 6)
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(context.Background(), params)
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Usage.CompletionTokens != 6 || acc.Usage.TotalTokens != acc.Usage.PromptTokens+6 || acc.Usage.PromptTokens == 0 {
		t.Errorf("usage %+v", acc.Usage)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content == "" || acc.Choices[0].FinishReason != "length" {
		t.Errorf("accumulated %+v", acc.Choices)
	}
}

func TestCompletionsWithOpenAIClient(t *testing.T) {
	_, ts := newServer(t, Options{})
	client := newClient(ts)
	ctx := context.Background()
	params := openai.CompletionNewParams{
		Model:       modelName,
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("package main\n\nimport (")},
		MaxTokens:   openai.Int(8),
		Temperature: openai.Float(0),
	}
	resp, err := client.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Object != "text_completion" || !strings.HasPrefix(resp.ID, "cmpl-") || len(resp.Choices) != 1 {
		t.Fatalf("response %+v", resp)
	}
	if resp.Choices[0].Text == "" || resp.Choices[0].FinishReason != "length" {
		t.Errorf("choice %+v", resp.Choices[0])
	}
	// The prompt is BOS + the prompt's tokens, with no template.
	want := len(testModel(t).Tokenizer.Encode("package main\n\nimport (", true))
	if u := resp.Usage; u.PromptTokens != int64(want) || u.CompletionTokens != 8 || u.TotalTokens != int64(want)+8 {
		t.Errorf("usage %+v, want prompt %d completion 8", u, want)
	}

	stream := client.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	finishes := 0
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			text.WriteString(c.Text)
			if c.FinishReason != "" {
				finishes++
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != resp.Choices[0].Text || finishes != 1 {
		t.Errorf("streamed %q (%d finish reasons), not streamed %q", text.String(), finishes, resp.Choices[0].Text)
	}
}

func TestModelsWithOpenAIClient(t *testing.T) {
	_, ts := newServer(t, Options{})
	client := newClient(ts)
	ctx := context.Background()
	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != modelName || page.Data[0].OwnedBy == "" {
		t.Fatalf("models %+v", page.Data)
	}
	m, err := client.Models.Get(ctx, modelName)
	if err != nil || m.ID != modelName {
		t.Fatalf("get %s: %+v, %v", modelName, m, err)
	}
	if _, err := client.Models.Get(ctx, "gpt-4o"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("get gpt-4o: %v; want a 404", err)
	}
}

// Content parts of type text are joined, and a system message reaches the
// template (gemma2 rejects it; that is a 400 naming messages).
func TestChatContentParts(t *testing.T) {
	_, ts := newServer(t, Options{})
	client := newClient(ts)
	ctx := context.Background()
	parts := chatParams("", 4)
	parts.Messages = []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
		openai.TextContentPart("Write a Go function "), openai.TextContentPart("that adds two numbers."),
	})}
	a, err := client.Chat.Completions.New(ctx, parts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Chat.Completions.New(ctx, chatParams("Write a Go function that adds two numbers.", 4))
	if err != nil {
		t.Fatal(err)
	}
	if a.Choices[0].Message.Content != b.Choices[0].Message.Content || a.Usage.PromptTokens != b.Usage.PromptTokens {
		t.Errorf("parts gave %q (%d prompt tokens), a string %q (%d)", a.Choices[0].Message.Content, a.Usage.PromptTokens,
			b.Choices[0].Message.Content, b.Usage.PromptTokens)
	}
	// Multi-turn: an assistant turn and a follow-up.
	turns := chatParams("", 4)
	turns.Messages = []openai.ChatCompletionMessageParamUnion{
		openai.UserMessage("hello"), openai.AssistantMessage(b.Choices[0].Message.Content), openai.UserMessage("more"),
	}
	if _, err := client.Chat.Completions.New(ctx, turns); err != nil {
		t.Fatal(err)
	}
}
