package cli

import (
	"bufio"
	"encoding/json"
	"strconv"
	"strings"
)

func logitsCommand() Command {
	return Command{
		Name:    "logits",
		Usage:   "--model DIR [--interp] --tokens 2,10,20 [--prefill N]",
		Summary: `print {"tokens":[...],"logits":[[...],...]}: one row of logits per position`,
		Run:     runLogits,
	}
}

func runLogits(env *Env, args []string) error {
	fs := newFlags(env, "logits")
	var mf modelFlags
	mf.register(fs)
	tokenList := fs.String("tokens", "", "comma-separated token ids, processed from position 0")
	prefill := fs.Int("prefill", -1, "run the first N tokens as one prefill and the rest one at a time through decode (default: all as prefill)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "tokens"); err != nil {
		return err
	}
	tokens, err := parseTokenList(*tokenList)
	if err != nil {
		return err
	}
	if *prefill < -1 || *prefill > len(tokens) {
		return usageError("--prefill %d is outside 0..%d (the number of tokens)", *prefill, len(tokens))
	}
	if *prefill == -1 {
		*prefill = len(tokens)
	}
	m, err := mf.load(fs, env)
	if err != nil {
		return err
	}
	defer m.Close()
	sess, err := m.NewSession()
	if err != nil {
		return err
	}
	rows, err := sess.Logits(tokens, *prefill)
	if err != nil {
		return err
	}
	return writeLogits(env, tokens, rows)
}

func parseTokenList(s string) ([]int, error) {
	var ids []int
	for i, field := range strings.Split(s, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			return nil, usageError("--tokens item %d (%q) is not a token id", i, field)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// writeLogits streams the JSON by hand: a 2B's rows are 256000 floats each,
// and shortest round-trip formatting keeps every f32 exact.
func writeLogits(env *Env, tokens []int, rows [][]float32) error {
	w := bufio.NewWriterSize(env.Stdout, 1<<20)
	ids, _ := json.Marshal(tokens)
	w.WriteString(`{"tokens":`)
	w.Write(ids)
	w.WriteString(`,"logits":[`)
	buf := make([]byte, 0, 32)
	for i, row := range rows {
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteByte('[')
		for j, x := range row {
			if j > 0 {
				w.WriteByte(',')
			}
			w.Write(strconv.AppendFloat(buf[:0], float64(x), 'g', -1, 32))
		}
		w.WriteByte(']')
	}
	w.WriteString("]}\n")
	return w.Flush()
}
