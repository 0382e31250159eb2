// Command service is a Go service with a Gemma-2 inside: gocoder, compiled
// ahead of time into the package ./gocoder by
//
//	gemmac build --model examples/gocoder --target cpu:x86-64-v3 --max-seq 512 --emit-package examples/service/gocoder
//
// It serves the OpenAI API (chat and completions, streaming) and one route
// of its own, /complete, that uses the Go API directly.
//
//	go run ./examples/service --model examples/gocoder --addr 127.0.0.1:8080
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gemmac/gemmac/examples/service/gocoder"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/serve"
)

//go:generate go run ../../cmd/gemmac build --model ../gocoder --target cpu:x86-64-v3 --max-seq 512 --emit-package gocoder

func main() {
	dir := flag.String("model", "examples/gocoder", "gocoder checkpoint directory")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()

	m, err := gocoder.Load(*dir, model.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	api := serve.New("gocoder", serve.Options{Slots: 1, QueueDepth: 16})
	if err := api.SetModel(m); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.HandleFunc("POST /complete", complete(m))

	srv := &http.Server{Addr: *addr, Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		api.Shutdown(shutdown)
		srv.Shutdown(shutdown)
	}()
	log.Printf("gocoder (compiled, context %d) on http://%s", gocoder.Context, *addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// complete answers {"code": "..."} with a greedy continuation of the code,
// through the Go API: a session per request, text streamed into a buffer.
func complete(m *model.Model) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Code      string `json:"code"`
			MaxTokens int    `json:"max_tokens"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Code == "" {
			http.Error(w, `want {"code": "...", "max_tokens": N}`, http.StatusBadRequest)
			return
		}
		if req.MaxTokens <= 0 || req.MaxTokens > 256 {
			req.MaxTokens = 64
		}
		sess, err := m.NewSession()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var out string
		for text, err := range sess.Generate(r.Context(), m.Tokenizer.Encode(req.Code, true), model.GenerateOptions{MaxTokens: req.MaxTokens}) {
			if err != nil {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			out += text
		}
		json.NewEncoder(w).Encode(map[string]any{"completion": out, "finish_reason": sess.Last().FinishReason})
	}
}
