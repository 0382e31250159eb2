package serve

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestErrorStatuses(t *testing.T) {
	_, ts := newServer(t, Options{})
	long := strings.Repeat("func main() { fmt.Println(x) } ", 160) // about 5000 characters
	chat := ts.URL + "/v1/chat/completions"
	comp := ts.URL + "/v1/completions"
	user := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, url, body string
		status          int
		param           string
	}{
		{"bad JSON", chat, `{"messages":[`, 400, ""},
		{"empty body", chat, ``, 400, ""},
		{"wrong type", chat, `{"messages":"hi"}`, 400, "messages"},
		{"no messages", chat, `{"messages":[]}`, 400, "messages"},
		{"temperature -1", chat, `{` + user + `,"temperature":-1}`, 400, "temperature"},
		{"top_p 1.5", chat, `{` + user + `,"top_p":1.5}`, 400, "top_p"},
		{"top_k -1", chat, `{` + user + `,"top_k":-1}`, 400, "top_k"},
		{"min_p 2", chat, `{` + user + `,"min_p":2}`, 400, "min_p"},
		{"repetition_penalty -1", chat, `{` + user + `,"repetition_penalty":-1}`, 400, "repetition_penalty"},
		{"max_tokens 0", chat, `{` + user + `,"max_tokens":0}`, 400, "max_tokens"},
		{"max_completion_tokens -3", chat, `{` + user + `,"max_completion_tokens":-3}`, 400, "max_completion_tokens"},
		{"n 2", chat, `{` + user + `,"n":2}`, 400, "n"},
		{"presence_penalty", chat, `{` + user + `,"presence_penalty":0.5}`, 400, "presence_penalty"},
		{"frequency_penalty", chat, `{` + user + `,"frequency_penalty":1}`, 400, "frequency_penalty"},
		{"stop not strings", chat, `{` + user + `,"stop":[1,2]}`, 400, "stop"},
		{"stream_options without stream", chat, `{` + user + `,"stream_options":{"include_usage":true}}`, 400, "stream_options"},
		{"tools", chat, `{` + user + `,"tools":[{"type":"function","function":{"name":"f"}}]}`, 400, "tools"},
		{"logprobs", chat, `{` + user + `,"logprobs":true}`, 400, "logprobs"},
		{"image part", chat, `{"messages":[{"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"http://x/y.png"}}]}]}`, 400, "messages[0].content[1].type"},
		{"bad role", chat, `{"messages":[{"role":"tool","content":"x"}]}`, 400, "messages[0].role"},
		{"content number", chat, `{"messages":[{"role":"user","content":3}]}`, 400, "messages[0].content"},
		{"system on gemma2", chat, `{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`, 400, "messages"},
		{"two users in a row", chat, `{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`, 400, "messages"},
		{"unknown model", chat, `{"model":"gpt-4o",` + user + `}`, 404, "model"},
		{"prompt past the context", chat, `{"messages":[{"role":"user","content":"` + long + `"}]}`, 413, "messages"},
		{"completion: no prompt", comp, `{"max_tokens":3}`, 400, "prompt"},
		{"completion: two prompts", comp, `{"prompt":["a","b"]}`, 400, "prompt"},
		{"completion: bad token", comp, `{"prompt":[2,99999]}`, 400, "prompt"},
		{"completion: echo", comp, `{"prompt":"a","echo":true}`, 400, "echo"},
		{"completion: unknown model", comp, `{"model":"davinci","prompt":"a"}`, 404, "model"},
		{"completion: past the context", comp, `{"prompt":"` + long + `"}`, 413, "prompt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, context.Background(), tc.url, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			e := errorOf(t, body)
			got := ""
			if e.Param != nil {
				got = *e.Param
			}
			if got != tc.param || e.Type == "" {
				t.Errorf("param %q type %q, want param %q: %s", got, e.Type, tc.param, body)
			}
		})
	}
}

func TestMethodAndPathErrors(t *testing.T) {
	_, ts := newServer(t, Options{})
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/chat/completions", 405, "POST"},
		{"PUT", "/v1/completions", 405, "POST"},
		{"POST", "/v1/models", 405, "GET"},
		{"DELETE", "/healthz", 405, "GET"},
		{"GET", "/v1/embeddings", 404, ""},
		{"POST", "/v2/chat/completions", 404, ""},
		{"GET", "/", 404, ""},
		{"GET", "/v1/models/other", 404, ""},
		{"GET", "/v1/models/", 404, ""},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: status %d Allow %q, want %d %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.status, tc.allow)
		}
		errorOf(t, body)
	}
}

// Before SetModel the API answers 503 and /healthz says loading.
func TestLoading(t *testing.T) {
	s := New(modelName, Options{})
	ts := newHTTPTest(t, s)
	for _, p := range []struct{ method, path, body string }{
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/completions", `{"prompt":"hi"}`},
		{"GET", "/v1/models", ""},
		{"GET", "/healthz", ""},
	} {
		req, _ := http.NewRequest(p.method, ts.URL+p.path, strings.NewReader(p.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("%s while loading: status %d, want 503", p.path, resp.StatusCode)
		}
		if p.path == "/healthz" {
			if !strings.Contains(string(body), `"loading"`) {
				t.Errorf("healthz while loading: %s", body)
			}
		} else if e := errorOf(t, body); e.Code == nil || *e.Code != "model_loading" {
			t.Errorf("%s: %s", p.path, body)
		}
	}
	if err := s.SetModel(testModel(t)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetModel(testModel(t)); err == nil {
		t.Error("a second SetModel succeeded")
	}
	resp, err := http.Get(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Errorf("healthz once loaded: %d %s", resp.StatusCode, body)
	}
	status, body := post(t, context.Background(), ts.URL+"/v1/completions", `{"prompt":"hi","max_tokens":2,"temperature":0}`)
	if status != 200 {
		t.Errorf("completion once loaded: %d %s", status, body)
	}
}
