package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/serve"
)

// shutdownGrace is how long serve waits for in-flight requests on SIGTERM
// or SIGINT before it cuts them off.
const shutdownGrace = 60 * time.Second

func serveCommand() Command {
	return Command{
		Name:    "serve",
		Usage:   "--model DIR [--interp] [--addr HOST:PORT] [--name NAME] [--slots N] [--queue N] [--batch B]",
		Summary: "serve the model over an OpenAI-compatible HTTP API",
		Run:     runServe,
	}
}

func runServe(env *Env, args []string) error {
	fs := newFlags(env, "serve")
	var mf modelFlags
	mf.register(fs)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (port 0 picks a free one)")
	name := fs.String("name", "", "model id clients send (default: the model directory's base name)")
	slots := fs.Int("slots", 1, "generations that run at once, each with its own KV cache")
	fs.IntVar(&mf.batch, "batch", 0, "decode up to this many slots in one batched step (compiles the batched step; a binary built with --batch has its own)")
	queue := fs.Int("queue", 64, "requests that may wait for a slot; more get 429 (-1: no limit)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model"); err != nil {
		return err
	}
	if mf.batch < 0 || mf.batch > codegen.MaxBatch {
		return usageError("--batch must be within 0..%d", codegen.MaxBatch)
	}
	if *slots < 1 {
		return usageError("--slots must be at least 1")
	}
	if *queue < -1 {
		return usageError("--queue must be -1 (no limit) or more")
	}
	if *name == "" {
		*name = filepath.Base(filepath.Clean(mf.dir))
	}

	logger := slog.New(slog.NewTextHandler(env.Stderr, nil))
	srv := serve.New(*name, serve.Options{Slots: *slots, QueueDepth: *queue, Logger: logger})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("listening; loading the model", "addr", "http://"+ln.Addr().String(), "model", *name, "dir", mf.dir)

	type loadResult struct {
		m   *model.Model
		err error
	}
	loadedCh := make(chan loadResult, 1)
	start := time.Now()
	go func() {
		m, err := mf.load(fs, env)
		loadedCh <- loadResult{m, err}
	}()
	var m *model.Model
	select {
	case <-ctx.Done():
		srv.Close()
		return nil
	case err := <-served:
		return err
	case lr := <-loadedCh:
		if lr.err != nil {
			srv.Close()
			return lr.err
		}
		m = lr.m
	}
	defer m.Close()
	if err := srv.SetModel(m); err != nil {
		srv.Close()
		return err
	}
	logger.Info("ready", "model", *name, "engine", m.Engine.Name(), "threads", m.Engine.Threads(),
		"context", m.Engine.Context(), "template", m.Template, "slots", *slots, "queue", *queue, "batch", min(m.MaxBatch(), *slots),
		"load_time", time.Since(start).Round(time.Millisecond))

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal ends the process at once
	logger.Info("shutting down: waiting for requests in flight (signal again to stop now)", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}
