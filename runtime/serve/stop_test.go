package serve

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// stopReference is what a stop sequence should leave of text.
func stopReference(text string, stops []string) (string, bool) {
	cut := -1
	for _, s := range stops {
		if i := strings.Index(text, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut < 0 {
		return text, false
	}
	return text[:cut], true
}

func TestStopper(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	texts := []string{"func main() {\n\tfmt.Println(\"héllo\")\n}\n", "aaaaabaaab", "ababababc", "no stop here", "日本語のテキスト、日本"}
	stopSets := [][]string{{"\n}"}, {"aab"}, {"abc", "bab"}, {"zzz"}, {"本語", "、"}, {"a", "b"}, {"ab", "b"}}
	for _, text := range texts {
		for _, stops := range stopSets {
			want, wantHit := stopReference(text, stops)
			for range 50 {
				st := &stopper{stops: stops}
				var got strings.Builder
				hit := false
				rest := text
				for rest != "" && !hit {
					n := 1 + r.IntN(len(rest))
					for n < len(rest) && !utf8Boundary(rest, n) {
						n++
					}
					var out string
					out, hit = st.add(rest[:n])
					got.WriteString(out)
					rest = rest[n:]
				}
				if !hit {
					got.WriteString(st.flush())
				}
				if got.String() != want || hit != wantHit {
					t.Fatalf("text %q stops %q: got %q hit %v, want %q hit %v", text, stops, got.String(), hit, want, wantHit)
				}
			}
		}
	}
}

func utf8Boundary(s string, i int) bool { return i >= len(s) || s[i]&0xC0 != 0x80 }

// A stop sequence ends generation and is cut from the reply, streamed or not.
func TestStopSequences(t *testing.T) {
	_, ts := newServer(t, Options{})
	url := ts.URL + "/v1/completions"
	req := map[string]any{"prompt": "package main\n\nimport (", "max_tokens": 24, "temperature": 0}
	full := completeText(t, url, req)
	if len(full.text) < 20 {
		t.Fatalf("reference text too short: %q", full.text)
	}
	stop := full.text[12:15]
	want, _ := stopReference(full.text, []string{stop})
	for _, stream := range []bool{false, true} {
		for _, stopField := range []any{stop, []string{"never-appears", stop}} {
			req["stop"], req["stream"] = stopField, stream
			got := completeText(t, url, req)
			if got.text != want || got.finish != "stop" {
				t.Errorf("stream %v stop %q: %q (%s), want %q (stop); full text %q", stream, stopField, got.text, got.finish, want, full.text)
			}
		}
	}
	req["stop"], req["stream"] = "never-appears", true
	if got := completeText(t, url, req); got.text != full.text || got.finish != "length" {
		t.Errorf("a stop that never appears: %q (%s), want %q", got.text, got.finish, full.text)
	}
}

type completion struct{ text, finish string }

func completeText(t *testing.T, url string, req map[string]any) completion {
	t.Helper()
	body, _ := json.Marshal(req)
	if req["stream"] == true {
		resp, err := http.Post(url, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		res, err := readStream(t, resp.Body, nil)
		if err != nil || len(res.finishes) != 1 || !res.done {
			t.Fatalf("stream: %+v %v", res, err)
		}
		return completion{res.text, res.finishes[0]}
	}
	status, data := post(t, context.Background(), url, string(body))
	if status != 200 {
		t.Fatalf("%d %s", status, data)
	}
	var c textCompletion
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return completion{c.Choices[0].Text, *c.Choices[0].FinishReason}
}
