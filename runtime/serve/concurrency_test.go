package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdFirst makes the first generation the server runs stop before its
// first token until release is closed or its context ends; holding is
// closed when it gets there. Other generations run freely.
func holdFirst(s *Server) (holding, release chan struct{}) {
	holding, release = make(chan struct{}), make(chan struct{})
	var first atomic.Pointer[context.Context]
	s.tokenHook = func(ctx context.Context) {
		if first.CompareAndSwap(nil, &ctx) {
			close(holding)
		} else if *first.Load() != ctx {
			return
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	return holding, release
}

const longStream = `{"messages":[{"role":"user","content":"Write a long Go program."}],"max_tokens":200,"temperature":0,"stream":true}`
const short = `{"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"temperature":0}`

// With one slot and no queue, a second request while the first runs gets
// 429; with a queue of one, the second waits and a third gets 429.
func TestQueueFull(t *testing.T) {
	for _, depth := range []int{0, 1} {
		t.Run(fmt.Sprintf("queue%d", depth), func(t *testing.T) {
			s, ts := newServer(t, Options{Slots: 1, QueueDepth: depth})
			holding, release := holdFirst(s)
			url := ts.URL + "/v1/chat/completions"
			first := make(chan int)
			go func() {
				status, _ := post(t, context.Background(), url, strings.Replace(longStream, `"max_tokens":200`, `"max_tokens":5`, 1))
				first <- status
			}()
			<-holding
			var queued chan int
			if depth == 1 {
				queued = make(chan int)
				go func() {
					status, _ := post(t, context.Background(), url, short)
					queued <- status
				}()
				waitFor(t, func() bool { return gauge(t, ts, "gemmac_queue_depth") == 1 })
			}
			status, body := post(t, context.Background(), url, short)
			if status != http.StatusTooManyRequests {
				t.Fatalf("status %d, want 429: %s", status, body)
			}
			if e := errorOf(t, body); e.Code == nil || *e.Code != "queue_full" {
				t.Errorf("429 body: %s", body)
			}
			close(release)
			if status := <-first; status != 200 {
				t.Errorf("the first request: %d", status)
			}
			if queued != nil {
				if status := <-queued; status != 200 {
					t.Errorf("the queued request: %d", status)
				}
			}
			if g := gauge(t, ts, "gemmac_active_sessions"); g != 0 {
				t.Errorf("active sessions %v after all requests", g)
			}
		})
	}
}

// A client that goes away mid-stream frees its slot at once: the held
// generation would never end by itself.
func TestDisconnectFreesSlot(t *testing.T) {
	s, ts := newServer(t, Options{Slots: 1, QueueDepth: 4})
	var calls atomic.Int32
	var firstCtx atomic.Pointer[context.Context]
	s.tokenHook = func(ctx context.Context) {
		firstCtx.CompareAndSwap(nil, &ctx)
		if *firstCtx.Load() == ctx && calls.Add(1) > 1 {
			<-ctx.Done() // the first request hangs after its first token until cancelled
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/chat/completions", strings.NewReader(longStream))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var once sync.Once
		readStream(t, resp.Body, func(n int) {
			if n == 2 { // the role chunk, then the first token
				once.Do(func() { close(got) })
			}
		})
	}()
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("no first chunk")
	}
	cancel()
	<-done
	resp.Body.Close()

	// The slot is free within moments (the held generation would never
	// end by itself), and the next request gets it.
	start := time.Now()
	for gauge(t, ts, "gemmac_active_sessions") != 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the slot is still busy 5s after the client went away")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("slot free %v after the client went away", time.Since(start))
	status, body := post(t, context.Background(), ts.URL+"/v1/chat/completions", short)
	if status != 200 {
		t.Fatalf("the next request: %d %s", status, body)
	}
	waitFor(t, func() bool {
		return metric(t, ts, "gemmac_http_requests_total", `code="499"`, `endpoint="/v1/chat/completions"`) == 1
	})
}

// A request waiting in the queue whose client goes away leaves the queue.
func TestDisconnectLeavesQueue(t *testing.T) {
	s, ts := newServer(t, Options{Slots: 1, QueueDepth: 1})
	holding, release := holdFirst(s)
	url := ts.URL + "/v1/chat/completions"
	first := make(chan int)
	go func() {
		status, _ := post(t, context.Background(), url, short)
		first <- status
	}()
	<-holding
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(short))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, func() bool { return gauge(t, ts, "gemmac_queue_depth") == 1 })
	cancel()
	waitFor(t, func() bool { return gauge(t, ts, "gemmac_queue_depth") == 0 })
	close(release)
	if status := <-first; status != 200 {
		t.Errorf("first request %d", status)
	}
}

// Shutdown waits for a request in flight, which completes.
func TestGracefulShutdown(t *testing.T) {
	s := New(modelName, Options{Slots: 1, QueueDepth: 4})
	if err := s.SetModel(testModel(t)); err != nil {
		t.Fatal(err)
	}
	holding, release := holdFirst(s)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	url := "http://" + l.Addr().String()

	type result struct {
		status int
		res    streamResult
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(strings.Replace(longStream, `"max_tokens":200`, `"max_tokens":12`, 1)))
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		res, err := readStream(t, resp.Body, nil)
		inflight <- result{resp.StatusCode, res, err}
	}()
	<-holding

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	// New connections are refused now.
	if resp, err := http.Get(url + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("healthz while shutting down: %d", resp.StatusCode)
		}
	}
	close(release)
	r := <-inflight
	if r.err != nil || r.status != 200 || !r.res.done || len(r.res.finishes) != 1 || r.res.finishes[0] != "length" {
		t.Fatalf("in-flight request: %+v", r)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the request finished")
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// Shutdown on a server used as a plain handler also drains it, and later
// requests get 503.
func TestShutdownHandler(t *testing.T) {
	s, ts := newServer(t, Options{})
	holding, release := holdFirst(s)
	done := make(chan int)
	go func() {
		status, _ := post(t, context.Background(), ts.URL+"/v1/chat/completions", short)
		done <- status
	}()
	<-holding
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	waitFor(t, func() bool {
		status, _ := post(t, context.Background(), ts.URL+"/v1/completions", `{"prompt":"a"}`)
		return status == 503
	})
	select {
	case <-shut:
		t.Fatal("Shutdown returned with a request in flight")
	default:
	}
	close(release)
	if status := <-done; status != 200 {
		t.Errorf("in-flight request: %d", status)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	// A Shutdown whose context ends first says so.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s2 := New("x", Options{})
	s2.enter()
	if err := s2.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown with a request in flight and a cancelled context: %v", err)
	}
	s2.leave()
}

func TestMetrics(t *testing.T) {
	_, ts := newServer(t, Options{})
	for _, body := range []string{short, strings.Replace(short, `"temperature":0`, `"temperature":0,"stream":true`, 1)} {
		if status, data := post(t, context.Background(), ts.URL+"/v1/chat/completions", body); status != 200 {
			t.Fatalf("%d %s", status, data)
		}
	}
	post(t, context.Background(), ts.URL+"/v1/chat/completions", `{"messages":[`)
	text := metricsText(t, ts)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"gemmac_http_requests_total", []string{`endpoint="/v1/chat/completions"`, `code="200"`}, 2},
		{"gemmac_http_requests_total", []string{`endpoint="/v1/chat/completions"`, `code="400"`}, 1},
		{"gemmac_completion_tokens_total", nil, 6},
		{"gemmac_time_to_first_token_seconds_count", nil, 2},
		{"gemmac_decode_tokens_per_second_count", nil, 2},
		{"gemmac_slots", nil, 1},
		{"gemmac_model_loaded", nil, 1},
	} {
		if got := metricValue(t, text, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"gemmac_prompt_tokens_total", "gemmac_time_to_first_token_seconds_sum", "gemmac_decode_tokens_per_second_sum"} {
		if got := metricValue(t, text, name); got <= 0 {
			t.Errorf("%s = %v, want > 0", name, got)
		}
	}
	for _, name := range []string{"gemmac_queue_depth", "gemmac_active_sessions"} {
		metricValue(t, text, name) // present
	}
}

func metricsText(t testing.TB, ts *httptest.Server) string {
	t.Helper()
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(data)
}

func metric(t testing.TB, ts *httptest.Server, name string, labels ...string) float64 {
	t.Helper()
	v, _ := lookupMetric(t, metricsText(t, ts), name, labels...)
	return v
}

func gauge(t testing.TB, ts *httptest.Server, name string) float64 { return metric(t, ts, name) }

// waitFor polls cond for up to 30 seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
