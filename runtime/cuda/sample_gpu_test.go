package cuda

import (
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"testing"
	"unsafe"

	"github.com/gemmac/gemmac/codegen/ptx"
	"github.com/gemmac/gemmac/runtime/sample"
)

// keptByRules is runtime/sample's kept set and probabilities by its rules.
func keptByRules(x []float32, o sample.Options) map[int32]float64 {
	if o.Temperature == 0 {
		return map[int32]float64{int32(sample.Argmax(x)): 1}
	}
	key := func(v float32) float32 {
		if v != v {
			return float32(math.Inf(-1))
		}
		return v
	}
	order := make([]int32, len(x))
	for i := range order {
		order[i] = int32(i)
	}
	sort.SliceStable(order, func(a, b int) bool { return key(x[order[a]]) > key(x[order[b]]) })
	ninf := float32(math.Inf(-1))
	var cand []int32
	for _, id := range order {
		v := key(x[id])
		if v > ninf && (o.TopK <= 0 || o.TopK >= len(x) || v >= key(x[order[o.TopK-1]])) {
			cand = append(cand, id)
		}
	}
	if len(cand) == 0 {
		return map[int32]float64{int32(sample.Argmax(x)): 1}
	}
	w := make([]float64, len(cand))
	var total float64
	for i, id := range cand {
		w[i] = 1
		if x[id] != x[cand[0]] {
			w[i] = math.Exp(float64(x[id]-x[cand[0]]) / float64(o.Temperature))
		}
		total += w[i]
	}
	if o.TopP > 0 && o.TopP < 1 {
		above, k := 0.0, 0
		for k < len(w) && (k == 0 || above < float64(o.TopP)*total) {
			above += w[k]
			k++
		}
		cand, w = cand[:k], w[:k]
	}
	out := map[int32]float64{}
	var z float64
	for i, id := range cand {
		if o.MinP <= 0 || w[i] >= float64(o.MinP) {
			out[id] = w[i]
			z += w[i]
		}
	}
	for id := range out {
		out[id] /= z
	}
	return out
}

// TestSampleKernelOnGPU runs the sampler kernel alone on a GPU over crafted
// logits and compares its draws with runtime/sample's kept sets and
// probabilities (bucketed total variation within a 4σ bound), and times it.
// GEMMAC_SAMPLE_PTX names a PTX file with one sample_n<N> entry (write it
// with GEMMAC_PTX_KEEP=dir go test ./codegen/ptx -run TestSampleKernelPTX).
func TestSampleKernelOnGPU(t *testing.T) {
	path := os.Getenv("GEMMAC_SAMPLE_PTX")
	if path == "" {
		t.Skip("GEMMAC_SAMPLE_PTX is not set (a PTX file holding a sample_n<N> kernel)")
	}
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\.entry (sample_n(\d+))\(`).FindSubmatch(src)
	if m == nil {
		t.Fatalf("%s has no sample_n<N> entry", path)
	}
	name := string(m[1])
	n, _ := strconv.Atoi(string(m[2]))
	dev, err := Open(0)
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	defer dev.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := dev.bind(); err != nil {
		t.Fatal(err)
	}
	mod, info, err := dev.module(string(src))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("JIT: %s", info)
	f, err := dev.function(mod, name)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := dev.newStream()
	if err != nil {
		t.Fatal(err)
	}
	var bufs [4]devptr
	for i, sz := range []int64{int64(4 * n), 16, 16, ptx.SampleSettingsBytes} {
		if bufs[i], err = dev.alloc(sz); err != nil {
			t.Fatal(err)
		}
		defer dev.free(bufs[i])
	}
	vals := make([]uint64, 4)
	args := make([]unsafe.Pointer, 4)
	for i := range vals {
		vals[i] = uint64(bufs[i])
		args[i] = unsafe.Pointer(&vals[i])
	}
	l := ptx.Sample{N: n}.Launch()
	launch := func() {
		if err := dev.launch(f, l.Grid, l.Block, l.Shared, stream, unsafe.Pointer(&args[0])); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(7, 11))
	gen := func(g func(i int) float32) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = g(i)
		}
		return x
	}
	sets := []struct {
		name string
		x    []float32
	}{
		{"peaked", gen(func(int) float32 { return float32(rng.NormFloat64() * 4) })},
		{"flat", gen(func(int) float32 { return float32(rng.NormFloat64() * 0.02) })},
		{"ties+nan", gen(func(i int) float32 {
			switch rng.IntN(100) {
			case 0:
				return float32(math.NaN())
			case 1:
				return float32(math.Inf(-1))
			}
			return float32(math.Round(rng.NormFloat64()*4) / 2)
		})},
		{"equal", gen(func(int) float32 { return 1 })},
	}
	opts := []sample.Options{
		{},
		{Temperature: 0.8},
		{Temperature: 1, TopK: 20},
		{Temperature: 1, TopP: 0.9},
		{Temperature: 1, TopP: 0.3},
		{Temperature: 0.7, TopK: 100, TopP: 0.8},
		{Temperature: 1.5, TopP: 0.95, MinP: 0.1},
	}
	const draws = 2000
	for _, ls := range sets {
		if err := dev.htod(bufs[0], unsafe.Pointer(&ls.x[0]), int64(4*n)); err != nil {
			t.Fatal(err)
		}
		for _, o := range opts {
			ref := keptByRules(ls.x, o)
			o.Seed = 12345
			set, err := GPUSettings(o)
			if err != nil {
				t.Fatal(err)
			}
			sb := set.Bytes()
			if err := dev.htod(bufs[3], unsafe.Pointer(&sb[0]), int64(len(sb))); err != nil {
				t.Fatal(err)
			}
			pos := []int64{0, 0}
			if err := dev.htod(bufs[2], unsafe.Pointer(&pos[0]), 16); err != nil {
				t.Fatal(err)
			}
			counts := map[int32]int{}
			outside := 0
			for d := 0; d < draws; d++ {
				launch()
				if err := dev.sync(stream); err != nil {
					t.Fatalf("%s %+v: %v", ls.name, o, err)
				}
				var tok int32
				if err := dev.dtoh(unsafe.Pointer(&tok), bufs[1], 4); err != nil {
					t.Fatal(err)
				}
				counts[tok]++
				if _, ok := ref[tok]; !ok {
					outside++
				}
			}
			if err := dev.dtoh(unsafe.Pointer(&pos[0]), bufs[2], 16); err != nil {
				t.Fatal(err)
			}
			// Bucket the kept tokens, most likely first, into ~20 equal masses.
			ids := make([]int32, 0, len(ref))
			for id := range ref {
				ids = append(ids, id)
			}
			sort.Slice(ids, func(a, b int) bool {
				return ref[ids[a]] > ref[ids[b]] || ref[ids[a]] == ref[ids[b]] && ids[a] < ids[b]
			})
			bucket := map[int32]int{}
			var mass []float64
			var cum float64
			for _, id := range ids {
				if len(mass) == 0 || cum >= float64(len(mass))/20 && len(mass) < 20 {
					mass = append(mass, 0)
				}
				bucket[id] = len(mass) - 1
				mass[len(mass)-1] += ref[id]
				cum += ref[id]
			}
			freq := make([]float64, len(mass))
			for id, c := range counts {
				if k, ok := bucket[id]; ok {
					freq[k] += float64(c) / draws
				}
			}
			var tv, bound float64
			for k := range mass {
				tv += math.Abs(freq[k]-mass[k]) / 2
				bound += 2 * math.Sqrt(mass[k]*(1-mass[k])/draws)
			}
			bound += 0.003
			// Time the kernel: events around back-to-back launches.
			var ev [2]uintptr
			for i := range ev {
				dev.d.call("cuEventCreate", uintptr(unsafe.Pointer(&ev[i])), 0)
			}
			dev.d.call("cuEventRecord", ev[0], stream)
			for i := 0; i < 50; i++ {
				launch()
			}
			dev.d.call("cuEventRecord", ev[1], stream)
			dev.d.call("cuEventSynchronize", ev[1])
			var ms float32
			dev.d.call("cuEventElapsedTime", uintptr(unsafe.Pointer(&ms)), ev[0], ev[1])
			for i := range ev {
				dev.d.call("cuEventDestroy_v2", ev[i])
			}
			t.Logf("N=%d %-8s %+v: kept %d, drew %d distinct, %d outside, TV %.4f (bound %.4f), pos %d, %.1f µs/call",
				n, ls.name, o, len(ref), len(counts), outside, tv, bound, pos[0], 1000*float64(ms)/50)
			if outside > 0 || tv > bound || pos[0] != draws {
				t.Errorf("N=%d %s %+v: %d draws outside the kept set, TV %.4f > %.4f, or position %d != %d", n, ls.name, o, outside, tv, bound, pos[0], draws)
			}
		}
	}
}
