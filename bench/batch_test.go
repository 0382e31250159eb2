package bench

import (
	"os"
	"strconv"
	"sync"
	"testing"

	cpucodegen "github.com/gemmac/gemmac/codegen/cpu"
	"github.com/gemmac/gemmac/runtime/model"
)

// streamsBatch is the batched decode step the streams benchmarks compile.
const streamsBatch = 4

var (
	streamsOnce  sync.Once
	streamsModel *model.Model
	streamsErr   error
)

// BenchmarkDecodeStreams is the aggregate decode speed of 1, 2 and 4
// concurrent streams on one compiled model with a batched decode step of 4:
// one stream takes the ordinary decode step, more go through
// Model.StepBatch. tok/s counts every stream's tokens; compare the
// sub-benchmarks of one run (`gemmac bench --streams 4` measures them in
// turn, step by step, which is steadier on a shared machine).
func BenchmarkDecodeStreams(b *testing.B) {
	streamsOnce.Do(func() {
		dir := os.Getenv("GEMMAC_BENCH_MODEL")
		if dir == "" {
			dir = "../examples/gocoder"
		}
		streamsModel, streamsErr = model.Load(dir, model.Options{Context: 8 + 256, Batch: streamsBatch, Engine: cpucodegen.JITEngine})
	})
	if streamsErr != nil {
		b.Fatal(streamsErr)
	}
	m := streamsModel
	for _, n := range []int{1, 2, streamsBatch} {
		b.Run("streams="+strconv.Itoa(n), func(b *testing.B) {
			prompt := randomTokens(m, 8)
			feed := randomTokens(m, 256)
			sessions := make([]*model.Session, n)
			for i := range sessions {
				s, err := m.NewSession()
				if err != nil {
					b.Fatal(err)
				}
				sessions[i] = s
			}
			reset := func() {
				for _, s := range sessions {
					if _, err := s.Prefill(prompt); err != nil {
						b.Fatal(err)
					}
				}
			}
			reset()
			ids := make([]int, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%len(feed) == len(feed)-1 {
					b.StopTimer()
					reset()
					b.StartTimer()
				}
				for k := range ids {
					ids[k] = feed[(i+k)%len(feed)]
				}
				if _, err := m.StepBatch(sessions, ids); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
