package tests

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gemmac/gemmac/runtime/model"
)

type greedyRef struct {
	Prompt    string `json:"prompt"`
	PromptIDs []int  `json:"prompt_ids"`
	GreedyIDs []int  `json:"greedy_ids"`
}

func loadGreedyRef(t *testing.T) greedyRef {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, "models", "refs", "gocoder.greedy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref greedyRef
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestGocoderGreedyInterp checks tokenizer, prefill, decode and greedy
// sampling together against the float64 reference's continuation.
func TestGocoderGreedyInterp(t *testing.T) {
	ref := loadGreedyRef(t)
	m, err := model.Load(modelDir("gocoder"), model.Options{Context: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids := m.Tokenizer.Encode(ref.Prompt, true)
	if diff := cmp.Diff(ref.PromptIDs, ids); diff != "" {
		t.Fatalf("prompt ids differ from Hugging Face tokenizers (-want +got):\n%s", diff)
	}
	sess, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	res, err := sess.GenerateTokens(context.Background(), ids, model.GenerateOptions{MaxTokens: len(ref.GreedyIDs)}, func(id int) bool {
		got = append(got, id)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ref.GreedyIDs, got); diff != "" {
		t.Fatalf("greedy continuation differs from the reference (-want +got):\n%s", diff)
	}
	if res.FinishReason != "length" || res.GeneratedTokens != len(ref.GreedyIDs) {
		t.Errorf("result %+v, want %d tokens ending by length", res, len(ref.GreedyIDs))
	}
	t.Logf("completion: %q", m.Tokenizer.Decode(got, true))
}
