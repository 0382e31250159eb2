package chat

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// referencePath holds the outputs of the real Jinja templates, rendered
// with @huggingface/jinja (and cross-checked with Python's jinja2).
const referencePath = "../../../shared/testdata/tokenizer/templates.jsonl"

type referenceCase struct {
	Template            string          `json:"template"`
	Name                string          `json:"name"`
	Messages            json.RawMessage `json:"messages"`
	AddGenerationPrompt bool            `json:"add_generation_prompt"`
	Output              *string         `json:"output"`
	Error               *string         `json:"error"`
	EnginesAgree        bool            `json:"engines_agree"`
}

func loadReference(t *testing.T) []referenceCase {
	t.Helper()
	f, err := os.Open(referencePath)
	if err != nil {
		t.Fatalf("reference chat template outputs are missing (expected at %s relative to runtime/chat): %v", referencePath, err)
	}
	defer f.Close()
	var cases []referenceCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		var c referenceCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("%s:%d: %v", referencePath, line, err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", referencePath, err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s holds no cases", referencePath)
	}
	return cases
}

// TestReference checks every reference line. Three kinds of line are
// checked against a documented decision of this package instead of the
// Jinja output:
//
//   - multimodal content lists: Message rejects them when decoding;
//   - systemgemma2 without a leading system message: Render must agree
//     with the gemma2 template (see renderSystemGemma2).
func TestReference(t *testing.T) {
	cases := loadReference(t)
	gemma2Ref := map[string]referenceCase{} // by case name without the template
	for _, c := range cases {
		if c.Template == Gemma2 {
			gemma2Ref[strings.TrimPrefix(c.Name, Gemma2+"/")] = c
		}
	}
	var matched, multimodal, asGemma2 int
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			var msgs []Message
			if err := json.Unmarshal(c.Messages, &msgs); err != nil {
				if !strings.Contains(err.Error(), "content must be a string") {
					t.Fatalf("decoding messages: unexpected error %v", err)
				}
				multimodal++
				return
			}
			got, err := Render(c.Template, msgs, c.AddGenerationPrompt)

			if c.Template == SystemGemma2 && (len(msgs) == 0 || msgs[0].Role != RoleSystem) {
				want, wantErr := Render(Gemma2, msgs, c.AddGenerationPrompt)
				if got != want || (err == nil) != (wantErr == nil) {
					t.Fatalf("systemgemma2 without a system message must render as gemma2:\n got %q, %v\nwant %q, %v", got, err, want, wantErr)
				}
				// And gemma2 itself must match its own reference line.
				if ref, ok := gemma2Ref[strings.TrimPrefix(c.Name, SystemGemma2+"/")]; ok {
					if ref.Output == nil && err == nil || ref.Output != nil && (err != nil || got != *ref.Output) {
						t.Fatalf("got %q, %v; want gemma2 reference %s: output %v, error %v", got, err, ref.Name, deref(ref.Output), deref(ref.Error))
					}
				}
				asGemma2++
				return
			}

			if c.Output == nil {
				if err == nil {
					t.Fatalf("Render = %q; want an error like %q", got, *c.Error)
				}
				if !errors.Is(err, ErrInvalidConversation) {
					t.Fatalf("error %v does not wrap ErrInvalidConversation", err)
				}
			} else {
				if err != nil {
					t.Fatalf("Render: %v; want %q", err, *c.Output)
				}
				if got != *c.Output {
					t.Fatalf("Render mismatch (engines_agree=%v)\n got %q\nwant %q", c.EnginesAgree, got, *c.Output)
				}
			}
			matched++
		})
	}
	t.Logf("matched reference: %d; rejected multimodal: %d; systemgemma2 rendered as gemma2: %d",
		matched, multimodal, asGemma2)
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
