// Package bench holds gemmac's Go benchmarks: decode and prefill tokens/s of
// the compiled engine and the interpreter on one model. By default the model
// is the shipped gocoder; GEMMAC_BENCH_MODEL points them at another
// checkpoint (e.g. `gemmac gen-random --preset 2b --dtype bf16 -o DIR`).
//
//	go test ./bench -run XXX -bench . -benchtime 8x
//
// Each benchmark reports tok/s; compare engines within one run (the
// machines are shared and noisy). `gemmac bench` adds the roofline and
// `go run ./bench/report` writes the table and chart.
package bench

import (
	"math/rand/v2"
	"os"
	"testing"

	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/runtime/model"
)

const promptTokens = 128

func benchModel(b *testing.B, compiled bool) *model.Model {
	b.Helper()
	dir := os.Getenv("GEMMAC_BENCH_MODEL")
	if dir == "" {
		dir = "../examples/gocoder"
	}
	opts := model.Options{Context: promptTokens + 256}
	if compiled {
		opts.Engine = cpucodegen.JITEngine
	}
	m, err := model.Load(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

func randomTokens(m *model.Model, n int) []int {
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 3 + rng.IntN(m.Config.VocabSize-3)
	}
	return ids
}

func benchPrefill(b *testing.B, compiled bool) {
	m := benchModel(b, compiled)
	sess, _ := m.NewSession()
	prompt := randomTokens(m, promptTokens)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := sess.Prefill(prompt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(promptTokens*b.N)/b.Elapsed().Seconds(), "tok/s")
}

// benchDecode times single-token steps after a short prompt; every 256
// steps the session starts over so the context never fills.
func benchDecode(b *testing.B, compiled bool) {
	m := benchModel(b, compiled)
	sess, _ := m.NewSession()
	prompt := randomTokens(m, 8)
	feed := randomTokens(m, 256)
	if _, err := sess.Prefill(prompt); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(feed) == len(feed)-1 {
			b.StopTimer()
			sess.Prefill(prompt)
			b.StartTimer()
		}
		if _, err := sess.Step(feed[i%len(feed)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}

func BenchmarkPrefillCompiled(b *testing.B) { benchPrefill(b, true) }
func BenchmarkPrefillInterp(b *testing.B)   { benchPrefill(b, false) }
func BenchmarkDecodeCompiled(b *testing.B)  { benchDecode(b, true) }
func BenchmarkDecodeInterp(b *testing.B)    { benchDecode(b, false) }
