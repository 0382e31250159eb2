package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/runtime/model"
)

const testBatch = 4

func loadBatched(t *testing.T, name string, ctx int, compiled bool) *model.Model {
	t.Helper()
	m := loadWith(t, name, model.Options{Context: ctx, Batch: testBatch}, compiled)
	if m.MaxBatch() != testBatch {
		t.Fatalf("%s: MaxBatch %d, want %d", m.Engine.Name(), m.MaxBatch(), testBatch)
	}
	return m
}

func rowDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return 1e9
	}
	worst := 0.0
	for i := range a {
		d := float64(a[i] - b[i])
		if d < 0 {
			d = -d
		}
		if d > worst || d != d {
			worst = d
		}
	}
	return worst
}

// sequence i's tokens: distinct per sequence.
func seqToken(i, n, vocab int) int { return 3 + (i*131+n*37)%(vocab-3) }

// TestBatchedDecodeMatchesSerial runs four conversations of different
// lengths (some past tiny's sliding window of 8) through batched decode
// steps — all four rows, three with one conversation left out, rows in
// another order, one row — and checks every row's logits against the same
// conversation run alone through the ordinary decode step, on the compiled
// engine and on the interpreter (whose batched graph is the reference).
// A conversation left out of a step must be untouched by it: its later
// logits still match.
func TestBatchedDecodeMatchesSerial(t *testing.T) {
	for _, name := range []string{"tiny", "tiny-hot"} {
		for _, compiled := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/compiled=%v", name, compiled), func(t *testing.T) {
				const ctx = 64
				m := loadBatched(t, name, ctx, compiled)
				ref := loadModel(t, name, ctx, false) // the interpreter, one sequence at a time
				vocab := m.Config.VocabSize
				be := m.Engine.(model.BatchEngine)
				prompts := []int{5, 12, 30, 1}
				var states []model.State
				var pos []int
				var refs []*model.Session
				for i, n := range prompts {
					prompt := make([]int, n)
					ids := make([]int32, n)
					for j := range prompt {
						prompt[j] = seqToken(i, j, vocab)
						ids[j] = int32(prompt[j])
					}
					st, err := m.Engine.NewState()
					if err != nil {
						t.Fatal(err)
					}
					if _, err := st.Forward(ids, 0, false); err != nil {
						t.Fatal(err)
					}
					states, pos = append(states, st), append(pos, n)
					r, err := ref.NewSession()
					if err != nil {
						t.Fatal(err)
					}
					if _, err := r.Prefill(prompt); err != nil {
						t.Fatal(err)
					}
					refs = append(refs, r)
				}
				steps := [][]int{{0, 1, 2, 3}, {0, 1, 3}, {3, 2, 1, 0}, {2, 0}, {1}, {0, 1, 2, 3}, {2, 3, 1}, {0, 1, 2, 3}}
				for k, rows := range steps {
					var batch []model.BatchRow
					for n, i := range rows {
						row := model.BatchRow{State: states[i], Token: int32(seqToken(i, pos[i], vocab)), Pos: pos[i]}
						switch (k + n) % 3 { // logits into the caller's buffer, a short one, or none
						case 0:
							row.Out = make([]float32, vocab)
						case 1:
							row.Out = make([]float32, vocab-1)
						}
						batch = append(batch, row)
					}
					got, err := be.DecodeBatch(batch)
					if err != nil {
						t.Fatalf("step %d: %v", k, err)
					}
					for n, r := range batch {
						if len(got[n]) != vocab || len(r.Out) == vocab && &got[n][0] != &r.Out[0] {
							t.Fatalf("step %d row %d: %d logits, in the given buffer: %v", k, n, len(got[n]), len(r.Out) == vocab && &got[n][0] == &r.Out[0])
						}
					}
					for n, i := range rows {
						want, err := refs[i].Step(int(batch[n].Token))
						if err != nil {
							t.Fatal(err)
						}
						if d := rowDiff(got[n], want); d > 1e-4 {
							t.Errorf("step %d, conversation %d at position %d: batched logits differ from serial by %.3g", k, i, pos[i], d)
						}
						pos[i]++
					}
				}
			})
		}
	}
}

// TestBatchedDecodeRejectsBadRows: every bad row is an error in Go, before
// any kernel runs.
func TestBatchedDecodeRejectsBadRows(t *testing.T) {
	const ctx = 16
	m := loadBatched(t, "tiny", ctx, true)
	other := loadBatched(t, "tiny", ctx, true)
	be := m.Engine.(model.BatchEngine)
	newState := func(mm *model.Model) model.State {
		st, err := mm.Engine.NewState()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	a, b := newState(m), newState(m)
	var five []model.BatchRow
	for range testBatch + 1 {
		five = append(five, model.BatchRow{State: newState(m), Token: 5})
	}
	cases := []struct {
		name string
		rows []model.BatchRow
		want string
	}{
		{"none", nil, "no rows"},
		{"more rows than the batch", five, "exceed the compiled batch"},
		{"token outside the vocabulary", []model.BatchRow{{State: a, Token: 5}, {State: b, Token: 512}}, "outside the vocabulary"},
		{"negative token", []model.BatchRow{{State: a, Token: -1}}, "outside the vocabulary"},
		{"position past the context", []model.BatchRow{{State: a, Token: 5, Pos: ctx}}, "do not fit the context"},
		{"negative position", []model.BatchRow{{State: a, Token: 5, Pos: -1}}, "do not fit the context"},
		{"one sequence twice", []model.BatchRow{{State: a, Token: 5}, {State: a, Token: 6, Pos: 1}}, "same sequence"},
		{"another engine's state", []model.BatchRow{{State: a, Token: 5}, {State: newState(other), Token: 6}}, "not one of this engine's"},
	}
	for _, c := range cases {
		_, err := be.DecodeBatch(c.rows)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	var ce *model.ContextError
	if _, err := be.DecodeBatch([]model.BatchRow{{State: a, Token: 5, Pos: ctx}}); !errors.As(err, &ce) {
		t.Errorf("a position past the context gives %v, want a ContextError", err)
	}

	// Through the session API.
	s1, _ := m.NewSession()
	s2, _ := m.NewSession()
	if _, err := m.StepBatch([]*model.Session{s1, s1}, []int{5, 6}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a session twice: %v", err)
	}
	if _, err := m.StepBatch([]*model.Session{s1, s2}, []int{5}); err == nil {
		t.Error("two sessions and one token accepted")
	}
	so, _ := other.NewSession()
	if _, err := m.StepBatch([]*model.Session{s1, so}, []int{5, 6}); err == nil || !strings.Contains(err.Error(), "not a session of this model") {
		t.Errorf("another model's session: %v", err)
	}
	full := make([]int, ctx)
	for i := range full {
		full[i] = 7
	}
	if _, err := s2.Prefill(full); err != nil {
		t.Fatal(err)
	}
	if _, err := m.StepBatch([]*model.Session{s1, s2}, []int{5, 6}); !errors.As(err, &ce) {
		t.Errorf("a full session in a batch: %v, want a ContextError", err)
	}
	if s1.Position() != 0 {
		t.Errorf("a failed batch fed session 1: position %d", s1.Position())
	}
}

// TestBuiltBatchBinary: gemmac build --batch adds the batched step to the
// binary, whose bench --streams uses it; a binary without it, or with a
// smaller batch, says how to rebuild.
func TestBuiltBatchBinary(t *testing.T) {
	gemmac, plain := gemmacBuild(t)
	bin := filepath.Join(filepath.Dir(plain), "tiny-batch3")
	build := func(args ...string) ([]byte, error) {
		cmd := exec.Command(gemmac, append([]string{"build", "--model", modelDir("tiny"), "--max-seq", "32", "-o", bin}, args...)...)
		cmd.Env = append(os.Environ(), "GEMMAC_SRC="+mustAbs(".."))
		return cmd.CombinedOutput()
	}
	if out, err := build("--batch", "0"); err == nil || !strings.Contains(string(out), "--batch must be within") {
		t.Errorf("--batch 0: %v\n%s", err, out)
	}
	if out, err := build("--batch", "3"); err != nil {
		t.Fatalf("gemmac build --batch 3: %v\n%s", err, out)
	}
	bench := func(bin string, streams int) ([]byte, error) {
		return exec.Command(bin, "bench", "--model", modelDir("tiny"), "--prompt-tokens", "4", "--gen-tokens", "4",
			"--streams", fmt.Sprint(streams), "--json", "--no-roofline").CombinedOutput()
	}
	out, err := bench(bin, 3)
	if err != nil {
		t.Fatalf("BIN bench --streams 3: %v\n%s", err, out)
	}
	var r struct {
		Streams *struct {
			Streams       int     `json:"streams"`
			AggregateTokS float64 `json:"aggregate_tok_s"`
			OneTokS       float64 `json:"one_stream_tok_s"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Streams == nil || r.Streams.Streams != 3 || r.Streams.AggregateTokS <= 0 || r.Streams.OneTokS <= 0 {
		t.Errorf("bench --streams 3: %v %s", err, out)
	}
	for _, c := range []struct {
		bin     string
		streams int
	}{{bin, 4}, {plain, 2}} {
		if out, err := bench(c.bin, c.streams); err == nil || !strings.Contains(string(out), fmt.Sprintf("rebuild with --batch %d", c.streams)) {
			t.Errorf("%s bench --streams %d: %v\n%s", filepath.Base(c.bin), c.streams, err, out)
		}
	}
}
