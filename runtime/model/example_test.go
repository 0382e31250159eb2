package model_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gemmac/gemmac/runtime/chat"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/sample"
)

// gocoder is a small Gemma-2 trained on Go source, from the shared test data.
const gocoder = "../../../shared/testdata/models/gocoder"

// Load a checkpoint, open a session, and stream a completion.
func Example() {
	m, err := model.Load(gocoder, model.Options{Context: 128})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	sess, err := m.NewSession()
	if err != nil {
		log.Fatal(err)
	}
	prompt := m.Tokenizer.Encode("// Max returns the larger of x or y.\nfunc Max(x, y int) int {\n", true)
	var completion string
	for text, err := range sess.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: 12}) {
		if err != nil {
			log.Fatal(err)
		}
		completion += text // arrives piece by piece, as it is generated
	}
	fmt.Printf("%q (%s)\n", completion, sess.Last().FinishReason)
	// Output: "\tif x == 0 {\n\t\treturn false\n\t" (length)
}

// Sampling settings: a seed makes sampled text reproducible.
func ExampleSession_Generate_sampling() {
	m, err := model.Load(gocoder, model.Options{Context: 64})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	opts := model.GenerateOptions{
		Options:   sample.Options{Temperature: 0.8, TopK: 40, TopP: 0.95, RepetitionPenalty: 1.1, Seed: 7},
		MaxTokens: 16,
	}
	prompt := m.Tokenizer.Encode("package main\n", true)
	run := func() string {
		sess, _ := m.NewSession()
		var out string
		for text, err := range sess.Generate(context.Background(), prompt, opts) {
			if err != nil {
				log.Fatal(err)
			}
			out += text
		}
		return out
	}
	fmt.Println(run() == run())
	// Output: true
}

// Chat renders the conversation with the model's chat template, system
// prompt included, and generates the model's turn.
func ExampleSession_Chat() {
	m, err := model.Load(gocoder, model.Options{Context: 128, Template: "systemgemma2"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	msgs := []chat.Message{
		{Role: "system", Content: "You write Go."},
		{Role: "user", Content: "A function that adds two ints."},
	}
	ids, _ := m.ChatPrompt(msgs)
	fmt.Println(m.Tokenizer.Decode(ids, false))
	sess, _ := m.NewSession()
	n := 0
	for _, err := range sess.Chat(context.Background(), msgs, model.GenerateOptions{MaxTokens: 4}) {
		if err != nil {
			log.Fatal(err)
		}
		n++
	}
	fmt.Println(sess.Last().PromptTokens == len(ids), sess.Last().GeneratedTokens <= 4)
	// Output:
	// <bos>You write Go.
	// <start_of_turn>user
	// A function that adds two ints.<end_of_turn>
	// <start_of_turn>model
	//
	// true true
}

// Cancelling the context stops generation at the next token.
func ExampleSession_Generate_cancel() {
	m, err := model.Load(gocoder, model.Options{Context: 128})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	sess, _ := m.NewSession()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tokens := 0
	for _, err := range sess.Generate(ctx, m.Tokenizer.Encode("func", true), model.GenerateOptions{MaxTokens: 100}) {
		if err != nil {
			fmt.Println("stopped:", err)
			break
		}
		if tokens++; tokens == 3 {
			cancel()
		}
	}
	// Output: stopped: context canceled
}
