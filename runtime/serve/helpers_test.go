package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/gemmac/gemmac/runtime/model"
)

const (
	gocoder   = "../../../shared/testdata/models/gocoder"
	modelName = "gocoder"
	context_  = 256
)

// testModels holds the test models, one per batch size, each loaded once.
var testModels struct {
	sync.Mutex
	models map[int]*model.Model
}

// loadModel is gocoder with a 256-token context and a batched decode step
// of batch rows (0: none), loaded once: a Model is safe for concurrent use,
// and each server makes its own sessions.
func loadModel(t testing.TB, batch int) *model.Model {
	t.Helper()
	testModels.Lock()
	defer testModels.Unlock()
	if m := testModels.models[batch]; m != nil {
		return m
	}
	m, err := model.Load(gocoder, model.Options{Context: context_, Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	if testModels.models == nil {
		testModels.models = map[int]*model.Model{}
	}
	testModels.models[batch] = m
	return m
}

// testModel is gocoder with a 256-token context.
func testModel(t testing.TB) *model.Model { return loadModel(t, 0) }

// newServer starts a server with the test model behind an httptest server.
func newServer(t testing.TB, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	s := New(modelName, opts)
	if err := s.SetModel(testModel(t)); err != nil {
		t.Fatal(err)
	}
	return s, newHTTPTest(t, s)
}

func newClient(ts *httptest.Server) openai.Client {
	return openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("dummy"),
		option.WithHTTPClient(ts.Client()), option.WithMaxRetries(0))
}

// post sends a JSON body and returns the status and the body.
func post(t testing.TB, ctx context.Context, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// errorOf decodes an OpenAI error body.
func errorOf(t testing.TB, data []byte) errorObject {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(data, &b); err != nil || b.Error.Message == "" {
		t.Fatalf("not an OpenAI error body (%v): %s", err, data)
	}
	return b.Error
}

// streamResult is what a raw event stream held.
type streamResult struct {
	text     string
	finishes []string
	usage    *usage
	done     bool
	chunks   int
}

// readStream reads server-sent events of chat or text completion chunks.
// onChunk, when set, is called after each chunk.
func readStream(t testing.TB, r io.Reader, onChunk func(n int)) (streamResult, error) {
	var res streamResult
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			t.Errorf("unexpected line in the stream: %q", line)
			continue
		}
		if res.done {
			t.Errorf("data after [DONE]: %q", data)
		}
		if string(data) == "[DONE]" {
			res.done = true
			continue
		}
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
				Text         string  `json:"text"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *usage    `json:"usage"`
			Error *struct{} `json:"error"`
		}
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("bad chunk %q: %v", data, err)
		}
		if c.Error != nil {
			t.Errorf("error event: %s", data)
		}
		for _, ch := range c.Choices {
			res.text += ch.Delta.Content + ch.Text
			if ch.FinishReason != nil {
				res.finishes = append(res.finishes, *ch.FinishReason)
			}
		}
		if c.Usage != nil {
			res.usage = c.Usage
		}
		res.chunks++
		if onChunk != nil {
			onChunk(res.chunks)
		}
	}
	return res, sc.Err()
}

// metricValue sums the samples of a metric whose line contains all of
// the given label pairs.
func metricValue(t testing.TB, text, name string, labels ...string) float64 {
	t.Helper()
	v, found := lookupMetric(t, text, name, labels...)
	if !found {
		t.Fatalf("no %s%v in the metrics:\n%s", name, labels, text)
	}
	return v
}

func lookupMetric(t testing.TB, text, name string, labels ...string) (float64, bool) {
	t.Helper()
	sum, found := 0.0, false
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		var v float64
		if err := json.Unmarshal([]byte(f[len(f)-1]), &v); err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	return sum, found
}

func newHTTPTest(t testing.TB, s *Server) *httptest.Server {
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return ts
}
