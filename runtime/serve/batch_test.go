package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gemmac/gemmac/runtime/model"
)

const testBatch = 4

// batchedModel is gocoder on an engine with a batched decode step of 4
// rows (the interpreter runs the batched graph; the compiled engine is
// checked against it in tests/).
func batchedModel(t testing.TB) *model.Model { return loadModel(t, testBatch) }

func newBatchedServer(t testing.TB, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	s := New(modelName, opts)
	if err := s.SetModel(batchedModel(t)); err != nil {
		t.Fatal(err)
	}
	if (s.ready.Load().batcher != nil) != (opts.Slots > 1 && !opts.NoBatch) {
		t.Fatalf("slots %d, NoBatch %v: batcher %v", opts.Slots, opts.NoBatch, s.ready.Load().batcher)
	}
	return s, newHTTPTest(t, s)
}

// barrier makes every generation wait before its first token until n of
// them have got there (or 30 s), so their decode loops overlap.
func barrier(s *Server, n int) {
	var mu sync.Mutex
	seen := map[context.Context]bool{}
	all := make(chan struct{})
	s.tokenHook = func(ctx context.Context) {
		mu.Lock()
		if seen[ctx] {
			mu.Unlock()
			return
		}
		seen[ctx] = true
		if len(seen) == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
	}
}

var batchPrompts = []string{
	"// Max returns the larger of x or y.\nfunc Max(x, y int) int {",
	"package main\n\nimport \"fmt\"\n\nfunc main() {",
	"// Reverse reverses s in place.\nfunc Reverse(s []byte) {",
	"// Sum adds the numbers.\nfunc Sum(xs ...float64) float64 {\n\tvar t float64\n",
}

func completionBody(prompt string, maxTokens int) string {
	return fmt.Sprintf(`{"prompt":%q,"max_tokens":%d,"temperature":0,"stream":true}`, prompt, maxTokens)
}

// completionText reads a stream of text completion chunks (safe off the
// test goroutine: it fails nothing).
func completionText(r io.Reader) (text string, done bool, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		switch {
		case !ok:
			continue
		case string(data) == "[DONE]":
			done = true
			continue
		}
		var c struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return text, done, fmt.Errorf("chunk %q: %w", data, err)
		}
		for _, ch := range c.Choices {
			text += ch.Text
		}
	}
	return text, done, sc.Err()
}

// streamTexts sends every body at once and returns the streamed texts.
func streamTexts(t *testing.T, url string, bodies []string) []string {
	t.Helper()
	texts := make([]string, len(bodies))
	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("request %d: status %d", i, resp.StatusCode)
				return
			}
			text, done, err := completionText(resp.Body)
			if err != nil || !done {
				t.Errorf("request %d: %v, done %v", i, err, done)
			}
			texts[i] = text
		}()
	}
	wg.Wait()
	return texts
}

// Greedy streams decoded in batched steps are the streams decoded alone:
// four concurrent requests of different prompt lengths and reply lengths
// (so rows leave the batch at different steps) on a server that batches,
// against the same requests one at a time on a server that does not.
func TestBatchedServerMatchesUnbatched(t *testing.T) {
	var bodies []string
	for i, p := range batchPrompts {
		bodies = append(bodies, completionBody(p, 8+4*i))
	}
	s, ts := newBatchedServer(t, Options{Slots: testBatch, QueueDepth: 8})
	barrier(s, len(bodies))
	got := streamTexts(t, ts.URL, bodies)

	_, plain := newBatchedServer(t, Options{Slots: testBatch, QueueDepth: 8, NoBatch: true})
	for i, body := range bodies {
		want := streamTexts(t, plain.URL, []string{body})[0]
		if want == "" {
			t.Fatalf("request %d: the unbatched server streamed nothing", i)
		}
		if got[i] != want {
			t.Errorf("request %d: batched %q, unbatched %q", i, got[i], want)
		}
	}
	// The steps really were batched: many with all four rows.
	text := metricsText(t, ts)
	steps := metricValue(t, text, "gemmac_decode_batch_rows_count")
	four := steps - metricValue(t, text, "gemmac_decode_batch_rows_bucket", `le="3"`)
	if four < 4 {
		t.Errorf("%v batched steps, %v of four rows: the streams were not decoded together", steps, four)
	}
	t.Logf("%v steps, %v of four rows", steps, four)
	if metricValue(t, metricsText(t, plain), "gemmac_decode_batch_rows_count") != 0 {
		t.Error("the server with NoBatch batched")
	}
}

// A client that goes away while its stream is batched with others frees
// its slot at once; the other streams go on, and equal their unbatched
// selves.
func TestBatchedDisconnectFreesSlot(t *testing.T) {
	s, ts := newBatchedServer(t, Options{Slots: 3, QueueDepth: 4})
	var mu sync.Mutex
	tokens := map[context.Context]int{}
	var victim context.Context
	victimIn := make(chan struct{})
	all := make(chan struct{})
	release := make(chan struct{})
	s.tokenHook = func(ctx context.Context) {
		mu.Lock()
		tokens[ctx]++
		n := tokens[ctx]
		if victim == nil {
			victim = ctx
			close(victimIn)
		}
		isVictim := ctx == victim
		if n == 1 && len(tokens) == 3 {
			close(all)
		}
		mu.Unlock()
		switch {
		case n == 1:
			<-all // every stream in its decode loop before any goes on
		case !isVictim && n == 5:
			select { // the others wait here while the victim goes away
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/completions", strings.NewReader(completionBody(batchPrompts[0], 200)))
	type response struct {
		resp *http.Response
		err  error
	}
	victimResp := make(chan response, 1)
	go func() {
		// The headers come with the first token, after the barrier.
		resp, err := http.DefaultClient.Do(req)
		victimResp <- response{resp, err}
	}()
	<-victimIn
	others := []string{completionBody(batchPrompts[1], 10), completionBody(batchPrompts[2], 10)}
	got := make(chan []string, 1)
	go func() { got <- streamTexts(t, ts.URL, others) }()
	r := <-victimResp
	if r.err != nil {
		t.Fatal(r.err)
	}
	resp := r.resp
	defer resp.Body.Close()

	// Read the victim's stream until it has sent 8 chunks, then go away.
	var start time.Time
	readStream(t, resp.Body, func(n int) {
		if n == 8 {
			cancel()
			start = time.Now()
		}
	})
	if start.IsZero() {
		t.Fatal("the victim's stream ended early")
	}
	waitFor(t, func() bool { return gauge(t, ts, "gemmac_active_sessions") <= 2 })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the slot was freed %v after the client went away", d)
	}
	close(release)
	texts := <-got
	_, plain := newBatchedServer(t, Options{Slots: 1, QueueDepth: 4})
	for i, body := range others {
		if want := streamTexts(t, plain.URL, []string{body})[0]; texts[i] != want {
			t.Errorf("stream %d: %q beside the disconnect, %q alone", i, texts[i], want)
		}
	}
	waitFor(t, func() bool { return gauge(t, ts, "gemmac_active_sessions") == 0 })
	// The freed slots serve the next requests.
	if texts := streamTexts(t, ts.URL, others); texts[0] == "" || texts[1] == "" {
		t.Errorf("after the disconnect: %q", texts)
	}
}
