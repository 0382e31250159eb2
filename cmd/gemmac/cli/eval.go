package cli

import (
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/gemmac/gemmac/runtime/model"
)

func evalCommand() Command {
	return Command{
		Name:    "eval",
		Usage:   "--model DIR [--interp] --text FILE [--window N] [--json]",
		Summary: "measure next-token negative log-likelihood and perplexity on a text",
		Run:     runEval,
	}
}

// EvalResult is what eval --json prints.
type EvalResult struct {
	MeanNLL      float64 `json:"mean_nll"`
	Perplexity   float64 `json:"perplexity"`
	TokensScored int     `json:"tokens_scored"`
	Windows      int     `json:"windows"`
}

func runEval(env *Env, args []string) error {
	fs := newFlags(env, "eval")
	var mf modelFlags
	mf.register(fs)
	text := fs.String("text", "", "the text file to score")
	window := fs.Int("window", 128, "predictions per window: window i scores ids[w·i+1 : w·i+w+1] from an empty cache")
	asJSON := fs.Bool("json", false, `print {"mean_nll":..,"perplexity":..,"tokens_scored":..}`)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "text"); err != nil {
		return err
	}
	if *window < 1 {
		return usageError("--window must be positive")
	}
	data, err := os.ReadFile(*text)
	if err != nil {
		return err
	}
	if mf.maxSeq == 0 && env.Context == 0 {
		mf.maxSeq = *window + 1
	}
	m, err := mf.load(fs, env)
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := m.NeedTokenizer()
	if err != nil {
		return err
	}
	r, err := Eval(m, tok.Encode(string(data), true), *window)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(r)
	}
	fmt.Fprintf(env.Stdout, "%s: mean NLL %.4f nats/token, perplexity %.3f over %d tokens (%d windows of %d)\n",
		*text, r.MeanNLL, r.Perplexity, r.TokensScored, r.Windows, *window)
	return nil
}

// Eval scores ids in consecutive windows of window+1 ids (window i =
// ids[window·i : window·i+window+1], a partial last window dropped), each
// run from an empty cache, every prediction of each window scored.
func Eval(m *model.Model, ids []int, window int) (*EvalResult, error) {
	if window+1 > m.Engine.Context() {
		return nil, &model.ContextError{Tokens: window + 1, Context: m.Engine.Context()}
	}
	sess, err := m.NewSession()
	if err != nil {
		return nil, err
	}
	r := &EvalResult{}
	var total float64
	for start := 0; start+window+1 <= len(ids); start += window {
		w := ids[start : start+window+1]
		rows, err := sess.Logits(w[:window], window)
		if err != nil {
			return nil, err
		}
		for i, row := range rows {
			total += nll(row, w[i+1])
		}
		r.TokensScored += window
		r.Windows++
	}
	if r.TokensScored == 0 {
		return nil, fmt.Errorf("the text has %d tokens, fewer than one window of %d", len(ids), window+1)
	}
	r.MeanNLL = total / float64(r.TokensScored)
	r.Perplexity = math.Exp(r.MeanNLL)
	return r, nil
}

// nll is −log softmax(logits)[target], in float64.
func nll(logits []float32, target int) float64 {
	m := math.Inf(-1)
	for _, x := range logits {
		m = math.Max(m, float64(x))
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x) - m)
	}
	return m + math.Log(sum) - float64(logits[target])
}
