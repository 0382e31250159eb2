package ptx

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/runtime/sample"
)

// samplePTX compiles a module holding only the sampler for n tokens.
func samplePTX(t *testing.T, n int, sm string) (ll, ptx string) {
	t.Helper()
	tc, err := codegen.FindToolchain()
	if err != nil {
		t.Skipf("no LLVM 14: %v", err)
	}
	tg := DefaultTarget
	if sm != "" {
		tg.SM = sm
	}
	m := NewModule(tg)
	if _, err := m.Add(Sample{N: n}); err != nil {
		t.Fatal(err)
	}
	ll = m.String()
	ptx, err = RunLLC(tc.Llc, tg, ll)
	if err != nil {
		t.Fatal(err)
	}
	if d := os.Getenv("GEMMAC_PTX_KEEP"); d != "" {
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, Sample{N: n}.Name()+".ptx"), []byte(ptx), 0o644)
	}
	return ll, ptx
}

func TestSampleKernelPTX(t *testing.T) {
	for _, n := range []int{256000, 1000, 512, 31} {
		_, ptx := samplePTX(t, n, "")
		es := ParseEntries(ptx)
		if len(es) != 1 || es[0].Name != (Sample{N: n}).Name() || es[0].Params != 4 {
			t.Fatalf("N=%d: entries %+v, want one %s with 4 params", n, es, Sample{N: n}.Name())
		}
		if strings.Contains(ptx, ".local") {
			t.Errorf("N=%d: the sampler uses local memory", n)
		}
	}
}

func TestSampleRandom(t *testing.T) {
	// SplitMix64 from state 0: the reference outputs.
	want := []uint64{0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F}
	for i, w := range want {
		if got := Mix64(uint64(i+1) * rngGamma); got != w {
			t.Errorf("output %d: %#x, want %#x", i, got, w)
		}
	}
	if SampleRandom(1, 5) == SampleRandom(1, 6) || SampleRandom(1, 5) == SampleRandom(2, 5) {
		t.Error("the random number does not depend on seed and position")
	}
	if SampleTarget(math.MaxUint64, 10) != 9 || SampleTarget(0, 10) != 0 || SampleTarget(1<<63, 10) != 5 {
		t.Error("SampleTarget is not ⌊r·z/2^64⌋")
	}
}

// TestSampleKernelConstants checks that the kernel's IR carries the
// generator's constants (as LLVM's signed decimals) and the settings
// layout's size.
func TestSampleKernelConstants(t *testing.T) {
	m := NewModule(DefaultTarget)
	if _, err := m.Add(Sample{N: 1000}); err != nil {
		t.Fatal(err)
	}
	ll := m.String()
	for _, c := range []uint64{rngGamma, rngMul1, rngMul2} {
		if s := strconv.FormatInt(int64(c), 10); !strings.Contains(ll, s) {
			t.Errorf("kernel lacks constant %#x (%s)", c, s)
		}
	}
	if len((SampleSettings{}).Bytes()) != SampleSettingsBytes {
		t.Error("settings size")
	}
	b := SampleSettings{Temperature: 0.5, TopK: 7, TopP: 0.25, MinP: 0.125, Seed: 0x0102030405060708}.Bytes()
	if b[3] != 0x3f || b[4] != 7 || b[11] != 0x3e || b[15] != 0x3e || b[16] != 8 || b[23] != 1 {
		t.Errorf("settings layout: % x", b)
	}
}

func TestSampleKey(t *testing.T) {
	vals := []float32{float32(math.Inf(-1)), -3e38, -2, -1e-40, 0, 1e-40, 1, 3e38, float32(math.Inf(1))}
	for i := 1; i < len(vals); i++ {
		if SampleKey(vals[i-1]) >= SampleKey(vals[i]) {
			t.Errorf("key(%g) >= key(%g)", vals[i-1], vals[i])
		}
	}
	nz := float32(math.Copysign(0, -1))
	if SampleKey(nz) != SampleKey(0) {
		t.Error("-0 and +0 differ")
	}
	if SampleKey(float32(math.NaN())) != 0 || SampleKey(float32(math.Inf(-1))) != keyNegInf {
		t.Error("NaN must rank below -Inf")
	}
}

// sampleTwin is the kernel's algorithm in Go (radix walks on keys with
// fixed-point masses, exp2 in float64 for ex2.approx): it returns the
// kept tokens with their fixed-point weights, or the greedy token.
func sampleTwin(x []float32, s SampleSettings) (kept map[int32]uint64, greedy int32) {
	n := len(x)
	keys := make([]uint32, n)
	var best uint64
	for i, v := range x {
		keys[i] = SampleKey(v)
		best = max(best, uint64(keys[i])<<32|(0xFFFFFFFF-uint64(i)))
	}
	keyMax := uint32(best >> 32)
	argIdx := int32(0xFFFFFFFF - best&0xFFFFFFFF)
	if !(s.Temperature > 0) || keyMax < keyLowest {
		return nil, argIdx
	}
	unkey := func(k uint32) float32 {
		if k&0x80000000 != 0 {
			return math.Float32frombits(k & 0x7FFFFFFF)
		}
		return math.Float32frombits(^k)
	}
	M := unkey(keyMax)
	s2 := float32(math.Log2E) / s.Temperature
	weight := func(v float32, k uint32) (float32, uint64) {
		w := float32(math.Exp2(float64((v - M) * s2)))
		if k == keyMax {
			w = 1
		}
		return w, uint64(w * (1 << sampleQBits))
	}
	walk := func(val func(i int) (uint32, bool), wt func(i int) uint64, target func(uint64) uint64) (x uint32, above, bin, tgt uint64) {
		var prefix, mask uint32
		for level := 0; level < 4; level++ {
			shift := 24 - 8*level
			var hist [256]uint64
			for i := 0; i < n; i++ {
				if xv, pass := val(i); pass && xv&mask == prefix {
					hist[xv>>shift&255] += wt(i)
				}
			}
			if level == 0 {
				var total uint64
				for _, h := range hist {
					total += h
				}
				tgt = target(total)
			}
			d, newAbove, run := -1, above, uint64(0)
			bin = 0
			for dd := 255; dd >= 0; dd-- {
				prev := run
				run += hist[dd]
				if above+run >= tgt {
					d, newAbove, bin = dd, above+prev, hist[dd]
					break
				}
			}
			d = max(d, 0)
			above = newAbove
			prefix |= uint32(d) << shift
			mask |= 255 << shift
		}
		return prefix, above, bin, tgt
	}
	lo := uint32(keyLowest)
	if s.TopK > 0 && int(s.TopK) < n {
		kth, _, _, _ := walk(func(i int) (uint32, bool) { return keys[i], true }, func(int) uint64 { return 1 },
			func(uint64) uint64 { return uint64(s.TopK) })
		lo = max(kth, keyLowest)
	}
	tp, cut := lo, n
	if s.TopP > 0 && s.TopP < 1 {
		var g, mt, tgt uint64
		tp, g, mt, tgt = walk(func(i int) (uint32, bool) { return keys[i], keys[i] >= lo },
			func(i int) uint64 { _, q := weight(x[i], keys[i]); return q },
			func(total uint64) uint64 {
				t := uint64(math.Ceil(float64(s.TopP) * float64(total)))
				return min(max(t, 1), total)
			})
		_, qt := weight(unkey(tp), tp)
		if qt != 0 {
			nt, c := mt/qt, (tgt-g+qt-1)/qt
			if c < nt {
				r, _, _, _ := walk(func(i int) (uint32, bool) { return ^uint32(i), keys[i] == tp },
					func(int) uint64 { return 1 }, func(uint64) uint64 { return c })
				cut = int(^r)
			}
		}
	}
	minW := max(s.MinP, 0)
	kept = map[int32]uint64{}
	for i, v := range x {
		k := keys[i]
		w, q := weight(v, k)
		if k >= lo && (k > tp || k == tp && i <= cut) && w >= minW {
			kept[int32(i)] = q
		}
	}
	return kept, -1
}

// TestSampleTwin checks the kernel's algorithm (in Go) against the CPU
// sampler's rules on logits with ties, NaN, -Inf, +Inf, and flat and
// peaked shapes, and its draw against the fixed-point intervals.
func TestSampleTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	gen := func(n int, f func(i int) float32) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = f(i)
		}
		return x
	}
	sets := map[string][]float32{
		"peaked": gen(3000, func(int) float32 { return float32(rng.NormFloat64() * 4) }),
		"flat":   gen(5000, func(int) float32 { return float32(rng.NormFloat64() * 0.01) }),
		"ties": gen(2000, func(i int) float32 {
			switch i % 97 {
			case 3:
				return float32(math.NaN())
			case 5:
				return float32(math.Inf(-1))
			}
			return float32(math.Round(rng.NormFloat64()*3) / 2)
		}),
		"equal": gen(1500, func(int) float32 { return 0.25 }),
		"+inf": gen(700, func(i int) float32 {
			return map[bool]float32{true: float32(math.Inf(1)), false: float32(i % 5)}[i%100 == 7]
		}),
		"-zero": gen(600, func(i int) float32 { return float32(math.Copysign(0, float64(i%2*2-1))) }),
	}
	settings := []SampleSettings{
		{Temperature: 1},
		{Temperature: 0.7, TopK: 20},
		{Temperature: 1, TopK: 1},
		{Temperature: 1, TopP: 0.9},
		{Temperature: 1, TopP: 0.3},
		{Temperature: 2, TopP: 0.05},
		{Temperature: 0.5, TopK: 100, TopP: 0.8},
		{Temperature: 1.5, TopP: 0.95, MinP: 0.1},
		{Temperature: 1, MinP: 0.5},
	}
	for name, x := range sets {
		for _, s := range settings {
			kept, g := sampleTwin(x, s)
			if g >= 0 {
				t.Errorf("%s %+v: greedy", name, s)
				continue
			}
			cpu, err := sample.New(sample.Options{Temperature: s.Temperature, TopK: int(s.TopK), TopP: s.TopP, MinP: s.MinP})
			if err != nil {
				t.Fatal(err)
			}
			want := cpu.Distribution(x)
			diff := 0
			for id := range want {
				if _, ok := kept[id]; !ok {
					diff++
				}
			}
			for id := range kept {
				if _, ok := want[id]; !ok {
					diff++
				}
			}
			if diff != 0 {
				t.Errorf("%s %+v: twin keeps %d, CPU rules %d, %d differ", name, s, len(kept), len(want), diff)
			}
		}
	}
	x := sets["ties"]
	if _, g := sampleTwin(x, SampleSettings{}); int(g) != sample.Argmax(x) {
		t.Errorf("greedy %d, want %d", g, sample.Argmax(x))
	}
	nan := gen(50, func(i int) float32 {
		if i%3 == 1 {
			return float32(math.Inf(-1))
		}
		return float32(math.NaN())
	})
	if _, g := sampleTwin(nan, SampleSettings{Temperature: 1}); int(g) != sample.Argmax(nan) {
		t.Errorf("all NaN/-Inf: %d, want %d", g, sample.Argmax(nan))
	}
}
