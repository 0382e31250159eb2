package cli

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/sample"
)

func evalCommand() Command {
	return Command{
		Name:    "eval",
		Usage:   "--model DIR [--interp] [--text FILE | --positions N] [--dtype T [--embed-dtype T] [--llama-rounding]] [--window N] [--json]",
		Summary: "measure perplexity on a text, or a weight dtype's KL divergence from the model as stored",
		Run:     runEval,
	}
}

// EvalResult is what eval --json prints.
type EvalResult struct {
	MeanNLL      float64 `json:"mean_nll"`
	Perplexity   float64 `json:"perplexity"`
	TokensScored int     `json:"tokens_scored"`
	Windows      int     `json:"windows"`
	// With --dtype: the converted model against the checkpoint as stored.
	Quality *QualityResult `json:"quality,omitempty"`
}

// QualityResult compares a converted model's next-token distributions with
// the reference (the checkpoint's own weights, computed in f32).
type QualityResult struct {
	Conversion string `json:"conversion"`
	// MeanKLD is the mean over positions of KL(P_ref ‖ P_converted), nats.
	MeanKLD float64 `json:"mean_kld"`
	MaxKLD  float64 `json:"max_kld"`
	// Top1Agreement is the fraction of positions whose most likely token
	// is the same.
	Top1Agreement float64 `json:"top1_agreement"`
	// RefMeanNLL is the reference's mean NLL on the same stream.
	RefMeanNLL float64 `json:"ref_mean_nll"`
}

func runEval(env *Env, args []string) error {
	fs := newFlags(env, "eval")
	var mf modelFlags
	mf.register(fs)
	text := fs.String("text", "", "the text file to score")
	positions := fs.Int("positions", 0, "without --text: score this many positions of a fixed pseudo-random token stream")
	window := fs.Int("window", 128, "predictions per window: window i scores ids[w·i+1 : w·i+w+1] from an empty cache")
	asJSON := fs.Bool("json", false, `print {"mean_nll":..,"perplexity":..,"tokens_scored":..[,"quality":{"mean_kld":..,"top1_agreement":..}]}`)
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*text == "") == (*positions == 0) {
		return usageError("give --text FILE or --positions N")
	}
	if *window < 1 || *positions < 0 {
		return usageError("--window and --positions must be positive")
	}
	if mf.maxSeq == 0 && env.Context == 0 {
		mf.maxSeq = *window + 1
	}
	// With --dtype, the model loaded as stored is the reference and the
	// converted one is measured against it.
	conv, err := frontend.ParseConversion(mf.dtype, mf.embed, mf.llamaRounding)
	if err != nil {
		return usageError("%v", err)
	}
	if !conv.IsZero() && !env.Convert.IsZero() && !mf.interp {
		return usageError("this binary's weights were converted at build time (%v), so its kernels read them whatever --dtype says: measure with gemmac eval --dtype, or add --interp", env.Convert)
	}
	dtype, embed := mf.dtype, mf.embed
	mf.dtype, mf.embed, mf.asStored = "", "", !conv.IsZero()
	ref, err := mf.load(fs, env)
	if err != nil {
		return err
	}
	defer ref.Close()
	ids, err := evalStream(ref, *text, *positions, *window)
	if err != nil {
		return err
	}
	if conv.IsZero() {
		r, err := Eval(ref, ids, *window)
		if err != nil {
			return err
		}
		return printEval(env, r, *text, *window, *asJSON)
	}
	mf.dtype, mf.embed = dtype, embed
	cand, err := mf.load(fs, env)
	if err != nil {
		return err
	}
	defer cand.Close()
	r, err := EvalAgainst(ref, cand, ids, *window)
	if err != nil {
		return err
	}
	r.Quality.Conversion = conv.String()
	return printEval(env, r, *text, *window, *asJSON)
}

// evalStream is the text's token ids, or positions+1 ids of a fixed
// pseudo-random stream (seeded PCG over the vocabulary).
func evalStream(m *model.Model, text string, positions, window int) ([]int, error) {
	if text != "" {
		data, err := os.ReadFile(text)
		if err != nil {
			return nil, err
		}
		tok, err := m.NeedTokenizer()
		if err != nil {
			return nil, err
		}
		return tok.Encode(string(data), true), nil
	}
	windows := (positions + window - 1) / window
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]int, windows*window+1)
	for i := range ids {
		ids[i] = rng.IntN(m.Config.VocabSize)
	}
	return ids, nil
}

func printEval(env *Env, r *EvalResult, text string, window int, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(env.Stdout).Encode(r)
	}
	src := text
	if src == "" {
		src = "fixed token stream"
	}
	fmt.Fprintf(env.Stdout, "%s: mean NLL %.4f nats/token, perplexity %.3f over %d tokens (%d windows of %d)\n",
		src, r.MeanNLL, r.Perplexity, r.TokensScored, r.Windows, window)
	if q := r.Quality; q != nil {
		fmt.Fprintf(env.Stdout, "%s vs as stored: mean KLD %.6f nats (max %.4f), top-1 agreement %.2f%%, reference mean NLL %.4f\n",
			q.Conversion, q.MeanKLD, q.MaxKLD, 100*q.Top1Agreement, q.RefMeanNLL)
	}
	return nil
}

// Eval scores ids in consecutive windows of window+1 ids (window i =
// ids[window·i : window·i+window+1], a partial last window dropped), each
// run from an empty cache, every prediction of each window scored.
func Eval(m *model.Model, ids []int, window int) (*EvalResult, error) {
	r := &EvalResult{}
	var total float64
	err := eachWindow([]*model.Model{m}, ids, window, func(w []int, rows [][][]float32) {
		for i, row := range rows[0] {
			total += nll(row, w[i+1])
		}
		r.TokensScored += len(rows[0])
		r.Windows++
	})
	if err != nil {
		return nil, err
	}
	r.MeanNLL = total / float64(r.TokensScored)
	r.Perplexity = math.Exp(r.MeanNLL)
	return r, nil
}

// EvalAgainst scores cand on ids as Eval does and compares its next-token
// distributions with ref's at every scored position.
func EvalAgainst(ref, cand *model.Model, ids []int, window int) (*EvalResult, error) {
	r := &EvalResult{Quality: &QualityResult{}}
	q := r.Quality
	var total, refTotal, kldTotal float64
	agree := 0
	err := eachWindow([]*model.Model{ref, cand}, ids, window, func(w []int, rows [][][]float32) {
		for i := range rows[0] {
			p, c := rows[0][i], rows[1][i]
			lseP, lseC := logSumExp(p), logSumExp(c)
			refTotal += lseP - float64(p[w[i+1]])
			total += lseC - float64(c[w[i+1]])
			k := kld(p, c, lseP, lseC)
			kldTotal += k
			q.MaxKLD = math.Max(q.MaxKLD, k)
			if sample.Argmax(p) == sample.Argmax(c) {
				agree++
			}
		}
		r.TokensScored += len(rows[0])
		r.Windows++
	})
	if err != nil {
		return nil, err
	}
	n := float64(r.TokensScored)
	r.MeanNLL, q.RefMeanNLL = total/n, refTotal/n
	r.Perplexity = math.Exp(r.MeanNLL)
	q.MeanKLD, q.Top1Agreement = kldTotal/n, float64(agree)/n
	return r, nil
}

// eachWindow runs every model on each window of ids and hands score the
// window's ids and each model's logits rows.
func eachWindow(models []*model.Model, ids []int, window int, score func(w []int, rows [][][]float32)) error {
	sessions := make([]*model.Session, len(models))
	for i, m := range models {
		if window+1 > m.Engine.Context() {
			return &model.ContextError{Tokens: window + 1, Context: m.Engine.Context()}
		}
		s, err := m.NewSession()
		if err != nil {
			return err
		}
		sessions[i] = s
	}
	windows := 0
	for start := 0; start+window+1 <= len(ids); start += window {
		w := ids[start : start+window+1]
		rows := make([][][]float32, len(models))
		for i, s := range sessions {
			var err error
			if rows[i], err = s.Logits(w[:window], window); err != nil {
				return err
			}
		}
		score(w, rows)
		windows++
	}
	if windows == 0 {
		return fmt.Errorf("the stream has %d tokens, fewer than one window of %d", len(ids), window+1)
	}
	return nil
}

// logSumExp is log Σ exp(logits), in float64: softmax's normaliser in
// log space.
func logSumExp(logits []float32) float64 {
	m := math.Inf(-1)
	for _, x := range logits {
		m = math.Max(m, float64(x))
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x) - m)
	}
	return m + math.Log(sum)
}

// nll is −log softmax(logits)[target].
func nll(logits []float32, target int) float64 {
	return logSumExp(logits) - float64(logits[target])
}

// kld is KL(softmax(p) ‖ softmax(q)) = Σ P·(log P − log Q), in nats, given
// each row's logSumExp.
func kld(p, q []float32, lseP, lseQ float64) float64 {
	var sum float64
	for i := range p {
		lp := float64(p[i]) - lseP
		sum += math.Exp(lp) * (lp - (float64(q[i]) - lseQ))
	}
	return math.Max(sum, 0)
}
