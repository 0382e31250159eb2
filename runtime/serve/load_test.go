package serve

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var loadTime = flag.Duration("serve.load", 0, "how long TestLoad runs (default 30s, 3s with -short)")

// TestLoad runs 16 clients against one server for a while: no request may
// fail, and every reply, streamed or not, must equal the reply to the same
// greedy request made alone (no lost, duplicated or reordered chunk, and no
// cross-talk between slots or through reused KV caches).
func TestLoad(t *testing.T) {
	d := *loadTime
	if d == 0 {
		d = 30 * time.Second
		if testing.Short() {
			d = 3 * time.Second
		}
	}
	const clients = 16
	_, ts := newServer(t, Options{Slots: 2, QueueDepth: clients})
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}

	type request struct {
		path string
		body map[string]any
	}
	var reqs []request
	for _, p := range []string{"Write a Go function that adds two numbers.", "hello", "package main", "What is a goroutine?"} {
		reqs = append(reqs, request{"/v1/chat/completions", map[string]any{
			"model": modelName, "messages": []map[string]string{{"role": "user", "content": p}}, "max_tokens": 8, "temperature": 0}})
	}
	for _, p := range []string{"package main\n\nimport (", "// Copyright"} {
		reqs = append(reqs, request{"/v1/completions", map[string]any{"prompt": p, "max_tokens": 8, "temperature": 0}})
	}
	do := func(r request, stream bool) (string, error) {
		body := map[string]any{}
		for k, v := range r.body {
			body[k] = v
		}
		body["stream"] = stream
		data, _ := json.Marshal(body)
		resp, err := httpc.Post(ts.URL+r.path, "application/json", strings.NewReader(string(data)))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		if stream {
			res, err := readStream(t, resp.Body, nil)
			if err != nil {
				return "", err
			}
			if !res.done || len(res.finishes) != 1 {
				return "", fmt.Errorf("stream without [DONE] or with %d finish reasons", len(res.finishes))
			}
			return res.text, nil
		}
		var out struct {
			Choices []struct {
				Text    string `json:"text"`
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return "", err
		}
		return out.Choices[0].Text + out.Choices[0].Message.Content, nil
	}
	want := make([]string, len(reqs))
	for i, r := range reqs {
		var err error
		if want[i], err = do(r, false); err != nil || want[i] == "" {
			t.Fatalf("reference %d: %q %v", i, want[i], err)
		}
	}

	var mu sync.Mutex
	var latencies []time.Duration
	failures := 0
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				k := (c + i) % len(reqs)
				stream := (c+i)%2 == 0
				t0 := time.Now()
				got, err := do(reqs[k], stream)
				lat := time.Since(t0)
				mu.Lock()
				if err == nil && got != want[k] {
					err = fmt.Errorf("reply %q, want %q", got, want[k])
				}
				if err != nil {
					failures++
					if failures <= 5 {
						t.Errorf("client %d request %d (%s, stream %v): %v", c, i, reqs[k].path, stream, err)
					}
				} else {
					latencies = append(latencies, lat)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failures > 0 {
		t.Fatalf("%d failed requests", failures)
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))] }
	t.Logf("%d clients, %v: %d requests (%.1f/s), 0 failed; latency p50 %v, p99 %v, max %v",
		clients, elapsed.Round(time.Millisecond), len(latencies), float64(len(latencies))/elapsed.Seconds(),
		pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond))
}
