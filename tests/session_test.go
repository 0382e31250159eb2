package tests

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/sample"
)

func loadGocoder(t *testing.T, context int) *model.Model {
	t.Helper()
	m, err := model.Load(modelDir("gocoder"), model.Options{Context: context})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func generateIDs(t *testing.T, sess *model.Session, prompt []int, opts model.GenerateOptions) []int {
	t.Helper()
	var got []int
	if _, err := sess.GenerateTokens(context.Background(), prompt, opts, func(id int) bool {
		got = append(got, id)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestSeededSamplingIsReproducible(t *testing.T) {
	m := loadGocoder(t, 128)
	prompt := m.Tokenizer.Encode("func main() {\n", true)
	opts := model.GenerateOptions{Options: sample.Options{Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: 7}, MaxTokens: 24}
	s1, _ := m.NewSession()
	s2, _ := m.NewSession()
	a, b := generateIDs(t, s1, prompt, opts), generateIDs(t, s2, prompt, opts)
	if len(a) == 0 || !equalInts(a, b) {
		t.Fatalf("same seed gave %v and %v", a, b)
	}
	opts.Seed = 8
	c := generateIDs(t, s1, prompt, opts)
	if equalInts(a, c) {
		t.Errorf("seeds 7 and 8 gave the same %d tokens; sampling ignores the seed", len(a))
	}
}

// TestSessionReusesPrefix checks that a follow-up prompt extending the
// conversation gives the same tokens as a fresh session running it whole.
func TestSessionReusesPrefix(t *testing.T) {
	m := loadGocoder(t, 256)
	first := m.Tokenizer.Encode("package main\n\nimport \"fmt\"\n", true)
	opts := model.GenerateOptions{MaxTokens: 12}
	sess, _ := m.NewSession()
	reply := generateIDs(t, sess, first, opts)
	follow := append(append(append([]int{}, first...), reply...), m.Tokenizer.Encode("\nfunc main() {\n", false)...)
	reused := generateIDs(t, sess, follow, opts)
	fresh, _ := m.NewSession()
	if want := generateIDs(t, fresh, follow, opts); !equalInts(reused, want) {
		t.Fatalf("continuing the session gave %v, a fresh session %v", reused, want)
	}
}

func TestPromptLongerThanContext(t *testing.T) {
	m := loadGocoder(t, 32)
	sess, _ := m.NewSession()
	prompt := m.Tokenizer.Encode(strings.Repeat("x := 1\n", 40), true)
	_, err := sess.GenerateTokens(context.Background(), prompt, model.GenerateOptions{MaxTokens: 4}, func(int) bool { return true })
	var ctxErr *model.ContextError
	if !errors.As(err, &ctxErr) || ctxErr.Context != 32 {
		t.Fatalf("got %v, want a ContextError for the 32-token context", err)
	}
	if !strings.Contains(err.Error(), "context of 32 tokens") {
		t.Errorf("message %q does not say the context", err)
	}
}

func TestGenerationStopsAtContext(t *testing.T) {
	m := loadGocoder(t, 24)
	sess, _ := m.NewSession()
	prompt := m.Tokenizer.Encode("// Package sort", true)
	res, err := sess.GenerateTokens(context.Background(), prompt, model.GenerateOptions{}, func(int) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if res.FinishReason == "length" && len(prompt)+res.GeneratedTokens != 24 {
		t.Errorf("stopped at %d tokens, want the full context of 24", len(prompt)+res.GeneratedTokens)
	}
}

func TestCancelledContextStopsGeneration(t *testing.T) {
	m := loadGocoder(t, 128)
	sess, _ := m.NewSession()
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := sess.GenerateTokens(ctx, m.Tokenizer.Encode("func", true), model.GenerateOptions{MaxTokens: 50}, func(int) bool {
		n++
		if n == 3 {
			cancel()
		}
		return true
	})
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Fatalf("got err %v after %d tokens, want context.Canceled after 3", err, n)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBreakingOutOfGenerate stops consuming mid-stream: the iterator must
// not call yield again (Go panics if it does).
func TestBreakingOutOfGenerate(t *testing.T) {
	m := loadGocoder(t, 128)
	sess, _ := m.NewSession()
	n := 0
	for _, err := range sess.Generate(context.Background(), m.Tokenizer.Encode("// Package strings", true), model.GenerateOptions{MaxTokens: 40}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
	if n != 2 {
		t.Fatalf("got %d pieces before breaking, want 2", n)
	}
}
