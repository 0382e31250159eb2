package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gemmac/gemmac/runtime/chat"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/tokenizer"
)

// Options configure a Server.
type Options struct {
	// Slots is the number of generations that run at once, each in its own
	// session (KV cache); 0 means 1. With an engine that has a batched
	// decode step (gemmac build --batch B), the decode steps of up to B
	// slots run as one step that reads the weights once; otherwise the
	// slots' steps interleave.
	Slots int
	// NoBatch decodes every slot on its own even when the engine could
	// batch them (for comparison).
	NoBatch bool
	// QueueDepth is the number of requests allowed to wait for a slot;
	// beyond it requests get 429. 0 means none wait; a negative value
	// means the queue is unbounded.
	QueueDepth int
	// Logger, when set, gets one line per request.
	Logger *slog.Logger
}

// Server serves one model over the OpenAI API. It is an http.Handler, and
// can run its own listeners with Serve. It is safe for concurrent use.
type Server struct {
	name    string
	opts    Options
	metrics *metrics
	mux     map[string]route
	ready   atomic.Pointer[loaded]

	// baseCtx ends every generation when Close is called.
	baseCtx   context.Context
	cancelAll context.CancelFunc

	mu       sync.Mutex
	draining bool
	inflight int // API requests being handled
	drained  chan struct{}
	closed   bool // drained is closed
	servers  []*http.Server

	// tokenHook, when set (by tests), runs before each generated token is
	// sent, with the generation's context.
	tokenHook func(ctx context.Context)
}

// loaded is the state once the model is set.
type loaded struct {
	m       *model.Model
	tok     *tokenizer.Tokenizer
	slots   *slots
	created int64
	// batcher runs the slots' decode steps together; nil when the engine
	// cannot batch (or one slot, or NoBatch).
	batcher *model.Batcher
}

type route struct {
	method string
	// api routes need the model and count as in flight for Shutdown.
	api    bool
	handle func(s *Server, w *recorder, r *http.Request, info *requestInfo)
}

// New makes a server for the model called name; requests to the API
// endpoints get 503 until SetModel.
func New(name string, opts Options) *Server {
	if opts.Slots <= 0 {
		opts.Slots = 1
	}
	s := &Server{name: name, opts: opts, metrics: newMetrics(), drained: make(chan struct{})}
	s.baseCtx, s.cancelAll = context.WithCancel(context.Background())
	s.metrics.slots.Set(float64(opts.Slots))
	s.mux = map[string]route{
		"/v1/chat/completions": {http.MethodPost, true, (*Server).handleChat},
		"/v1/completions":      {http.MethodPost, true, (*Server).handleCompletion},
		"/v1/models":           {http.MethodGet, true, (*Server).handleModels},
		"/healthz":             {http.MethodGet, false, (*Server).handleHealth},
		"/metrics":             {http.MethodGet, false, (*Server).handleMetrics},
	}
	return s
}

// Name is the model id clients use.
func (s *Server) Name() string { return s.name }

// Registry is the registry of the server's metrics, to add collectors to
// or to gather from.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// SetModel starts serving m, allocating one session per slot. It can be
// called once. The server does not close m.
func (s *Server) SetModel(m *model.Model) error {
	tok, err := m.NeedTokenizer()
	if err != nil {
		return err
	}
	ss := make([]*slot, s.opts.Slots)
	for i := range ss {
		sess, err := m.NewSession()
		if err != nil {
			return fmt.Errorf("serve: session for slot %d: %w", i, err)
		}
		ss[i] = &slot{id: i, sess: sess}
	}
	q := newSlots(ss, s.opts.QueueDepth, func(busy, waiting int) {
		s.metrics.activeSessions.Set(float64(busy))
		s.metrics.queueDepth.Set(float64(waiting))
	})
	st := &loaded{m: m, tok: tok, slots: q, created: time.Now().Unix()}
	if s.opts.Slots > 1 && m.MaxBatch() > 1 && !s.opts.NoBatch {
		if st.batcher, err = m.NewBatcher(); err != nil {
			return err
		}
		st.batcher.OnStep = func(rows int, _ time.Duration) { s.metrics.batchRows.Observe(float64(rows)) }
	}
	if !s.ready.CompareAndSwap(nil, st) {
		return errors.New("serve: SetModel called twice")
	}
	s.metrics.loaded.Set(1)
	return nil
}

// Serve accepts connections on l until Shutdown or Close; it then returns
// http.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	return srv.Serve(l)
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Shutdown stops accepting requests (listeners close; requests that still
// arrive get 503), waits for those in flight, queued ones included, to
// finish, and returns. If ctx ends first it returns ctx's error; Close
// then ends what still runs.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	servers := s.servers
	s.closeDrainedLocked()
	s.mu.Unlock()
	s.metrics.loaded.Set(0)

	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	select {
	case <-s.drained:
	case <-ctx.Done():
		return ctx.Err()
	}
	return errors.Join(errs...)
}

// Close ends every generation at once and closes the listeners and
// connections.
func (s *Server) Close() error {
	s.mu.Lock()
	s.draining = true
	servers := s.servers
	s.closeDrainedLocked()
	s.mu.Unlock()
	s.cancelAll()
	var errs []error
	for _, srv := range servers {
		errs = append(errs, srv.Close())
	}
	return errors.Join(errs...)
}

func (s *Server) closeDrainedLocked() {
	if s.draining && s.inflight == 0 && !s.closed {
		s.closed = true
		close(s.drained)
	}
}

// enter counts an API request in flight; false while shutting down.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.inflight++
	return true
}

func (s *Server) leave() {
	s.mu.Lock()
	s.inflight--
	s.closeDrainedLocked()
	s.mu.Unlock()
}

// requestInfo collects what a handler did, for the log line and metrics.
type requestInfo struct {
	start                          time.Time
	promptTokens, completionTokens int
	finish                         string
	ttft                           time.Duration
	gone                           bool // the client went away before a response
	err                            string
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	info := &requestInfo{start: start}
	rt, ok := s.mux[r.URL.Path]
	endpoint := r.URL.Path
	if !ok && strings.HasPrefix(r.URL.Path, "/v1/models/") {
		rt, ok, endpoint = route{http.MethodGet, true, (*Server).handleModel}, true, "/v1/models/{id}"
	}
	if !ok {
		endpoint = "other"
	}
	defer func() { s.finish(r, rec, info, endpoint, start) }()

	switch {
	case !ok:
		writeError(rec, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
			Message: fmt.Sprintf("unknown path %s %s", r.Method, r.URL.Path)})
	case r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead):
		rec.Header().Set("Allow", rt.method)
		writeError(rec, &apiError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: "method_not_allowed",
			Message: fmt.Sprintf("%s does not accept %s; use %s", r.URL.Path, r.Method, rt.method)})
	case !rt.api:
		rt.handle(s, rec, r, info)
	default:
		if !s.enter() {
			writeError(rec, errShuttingDown)
			return
		}
		defer s.leave()
		if s.ready.Load() == nil {
			writeError(rec, errLoading)
			return
		}
		rt.handle(s, rec, r, info)
	}
}

// finish counts and logs a request.
func (s *Server) finish(r *http.Request, rec *recorder, info *requestInfo, endpoint string, start time.Time) {
	// A client that went away is counted as 499 (nginx's "client closed
	// request"), even when a stream had already sent 200.
	code := rec.status
	switch {
	case info.gone:
		code = 499
	case code == 0:
		code = http.StatusOK
	}
	elapsed := time.Since(start)
	s.metrics.requests.WithLabelValues(endpoint, fmt.Sprint(code)).Inc()
	s.metrics.duration.WithLabelValues(endpoint).Observe(elapsed.Seconds())
	if s.opts.Logger == nil {
		return
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", code,
		"duration", elapsed.Round(time.Microsecond), "remote", r.RemoteAddr}
	if info.promptTokens > 0 || info.completionTokens > 0 {
		attrs = append(attrs, "prompt_tokens", info.promptTokens, "completion_tokens", info.completionTokens,
			"ttft", info.ttft.Round(time.Microsecond), "finish", info.finish)
	}
	if info.err != "" {
		attrs = append(attrs, "error", info.err)
	}
	s.opts.Logger.Info("request", attrs...)
}

// recorder remembers the status written, and passes flushes on.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() { r.FlushError() }

func (r *recorder) FlushError() error {
	return http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) handleHealth(w *recorder, r *http.Request, info *requestInfo) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	switch {
	case draining:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down", "model": s.name})
	case s.ready.Load() == nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "loading", "model": s.name})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "model": s.name})
	}
}

func (s *Server) handleMetrics(w *recorder, r *http.Request, info *requestInfo) {
	promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

func (s *Server) modelObject() modelObject {
	return modelObject{ID: s.name, Object: "model", Created: s.ready.Load().created, OwnedBy: "gemmac"}
}

func (s *Server) handleModels(w *recorder, r *http.Request, info *requestInfo) {
	writeJSON(w, http.StatusOK, modelList{Object: "list", Data: []modelObject{s.modelObject()}})
}

func (s *Server) handleModel(w *recorder, r *http.Request, info *requestInfo) {
	if id := strings.TrimPrefix(r.URL.Path, "/v1/models/"); id != s.name {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found",
			Message: fmt.Sprintf("the model %q does not exist; this server serves %q", id, s.name)})
		return
	}
	writeJSON(w, http.StatusOK, s.modelObject())
}

func (s *Server) handleChat(w *recorder, r *http.Request, info *requestInfo) {
	var req chatRequest
	if e := decodeJSON(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := checkModel(req.Model, s.name); e != nil {
		writeError(w, e)
		return
	}
	msgs, e := req.messages()
	if e != nil {
		writeError(w, e)
		return
	}
	j, e := req.job(true, s.name)
	if e != nil {
		writeError(w, e)
		return
	}
	st := s.ready.Load()
	prompt, err := st.m.ChatPrompt(msgs)
	if err != nil {
		if errors.Is(err, chat.ErrInvalidConversation) {
			writeError(w, invalid("messages", "%v", err))
		} else {
			writeError(w, internalError(err))
		}
		return
	}
	s.run(w, r, st, j, prompt, info)
}

func (s *Server) handleCompletion(w *recorder, r *http.Request, info *requestInfo) {
	var req completionRequest
	if e := decodeJSON(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := checkModel(req.Model, s.name); e != nil {
		writeError(w, e)
		return
	}
	j, e := req.job(false, s.name)
	if e != nil {
		writeError(w, e)
		return
	}
	st := s.ready.Load()
	prompt, e := req.promptTokens(func(text string) []int { return st.tok.Encode(text, true) }, st.m.Config.VocabSize)
	if e != nil {
		writeError(w, e)
		return
	}
	s.run(w, r, st, j, prompt, info)
}
