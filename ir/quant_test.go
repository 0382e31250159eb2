package ir_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/frontend/gguf"
	"github.com/gemmac/gemmac/ir"
)

const models = "../../shared/testdata/models"

func TestBlockSizes(t *testing.T) {
	for _, c := range []struct {
		d            ir.DType
		elems, bytes int
	}{
		{ir.Q8_0, 32, 34}, {ir.Q8_0, 64, 68}, {ir.Q4_0, 32, 18}, {ir.Q4_0, 4096, 2304},
		{ir.F32, 3, 12}, {ir.BF16, 3, 6}, {ir.Q8_0, 33, -1}, {ir.Q4_0, 16, -1}, {ir.DType(99), 1, -1},
	} {
		if got := c.d.BytesFor(c.elems); got != c.bytes {
			t.Errorf("%v.BytesFor(%d) = %d, want %d", c.d, c.elems, got, c.bytes)
		}
	}
	if ir.Q8_0.Size() != 0 || !ir.Q4_0.Known() || !ir.Q8_0.IsQuantized() || ir.Q8_0.IsFloat() {
		t.Error("q8_0/q4_0 traits")
	}
	for _, s := range []string{"q8_0", "q4_0"} {
		if d, err := ir.ParseDType(s); err != nil || d.String() != s {
			t.Errorf("ParseDType(%q) = %v, %v", s, d, err)
		}
	}
	// Rows must be whole blocks: a [2, 48] q8_0 tensor has 96 elements
	// (3 blocks) but its rows straddle them.
	if _, err := ir.Q8_0.TensorBytes(ir.Shape{2, 48}); err == nil || !strings.Contains(err.Error(), "whole blocks of 32") {
		t.Errorf("[2, 48] q8_0: %v", err)
	}
	if n, err := ir.Q4_0.TensorBytes(ir.Shape{3, 64}); err != nil || n != 3*2*18 {
		t.Errorf("[3, 64] q4_0: %d, %v", n, err)
	}
	bad := ir.Tensor{DType: ir.Q8_0, Shape: ir.Shape{2, 32}, Data: make([]byte, 64)}
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), "needs 68 bytes, has 64") {
		t.Errorf("Check: %v", err)
	}
}

// f16 decodes an IEEE half by hand, independently of ir.F16ToF32.
func f16(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, man := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * man * math.Pow(2, -24)
	case 31:
		if man == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * (1 + man/1024) * math.Pow(2, float64(exp-15))
}

// refDequant is the GGUF block layout written out plainly, in float64.
func refDequant(d ir.DType, b []byte) []float64 {
	var out []float64
	switch d {
	case ir.Q8_0:
		for ; len(b) >= 34; b = b[34:] {
			s := f16(binary.LittleEndian.Uint16(b))
			for j := 0; j < 32; j++ {
				out = append(out, s*float64(int8(b[2+j])))
			}
		}
	case ir.Q4_0:
		for ; len(b) >= 18; b = b[18:] {
			s := f16(binary.LittleEndian.Uint16(b))
			blk := make([]float64, 32)
			for j := 0; j < 16; j++ {
				blk[j] = s * float64(int(b[2+j]&15)-8)
				blk[j+16] = s * float64(int(b[2+j]>>4)-8)
			}
			out = append(out, blk...)
		}
	}
	return out
}

var ggufTypes = map[gguf.GGMLType]ir.DType{gguf.Q8_0: ir.Q8_0, gguf.Q4_0: ir.Q4_0}

// TestDequantizeGGUFBlocks decodes every quantised tensor of llama.cpp's
// tiny-hot GGUFs and compares with the plain float64 decoding: the f32
// values must be exact.
func TestDequantizeGGUFBlocks(t *testing.T) {
	for _, name := range []string{"tiny-hot.q8_0.gguf", "tiny-hot.q4_0.gguf"} {
		f, err := gguf.Open(filepath.Join(models, name))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ti := range f.Tensors {
			d, ok := ggufTypes[ti.Type]
			if !ok {
				continue
			}
			data := f.Data(&ti)
			got := make([]float32, ti.Elems())
			if err := ir.DequantizeRow(d, data, got); err != nil {
				t.Fatal(err)
			}
			want := refDequant(d, data)
			for i := range want {
				if float64(got[i]) != want[i] {
					t.Fatalf("%s %s[%d] = %g, want %g", name, ti.Name, i, got[i], want[i])
				}
			}
			tensor := ir.Tensor{DType: d, Shape: ti.Shape(), Data: data}
			all, err := tensor.Float32s()
			if err != nil || !equalF32(all, got) {
				t.Fatalf("%s: Float32s disagrees with DequantizeRow (%v)", ti.Name, err)
			}
			n++
		}
		if n == 0 {
			t.Fatalf("%s has no quantised tensors", name)
		}
		f.Close()
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestQuantizeMatchesLlamaCpp quantises the f32 GGUF's matrices and
// compares with what llama-quantize wrote, block for block.
func TestQuantizeMatchesLlamaCpp(t *testing.T) {
	src, err := gguf.Open(filepath.Join(models, "tiny-hot.f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, c := range []struct {
		file string
		d    ir.DType
	}{{"tiny-hot.q8_0.gguf", ir.Q8_0}, {"tiny-hot.q4_0.gguf", ir.Q4_0}} {
		q, err := gguf.Open(filepath.Join(models, c.file))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ti := range q.Tensors {
			if _, ok := ggufTypes[ti.Type]; !ok {
				continue
			}
			st, _ := src.Tensor(ti.Name)
			x := ir.Tensor{DType: ir.F32, Shape: st.Shape(), Data: src.Data(st)}.F32s()
			got, err := ir.Quantize(c.d, st.Shape(), x)
			if err != nil {
				t.Fatal(err)
			}
			want := q.Data(&ti)
			if !bytes.Equal(got.Data, want) {
				for b := 0; b < len(want); b += c.d.BlockBytes() {
					if !bytes.Equal(got.Data[b:b+c.d.BlockBytes()], want[b:b+c.d.BlockBytes()]) {
						t.Fatalf("%s %s block %d: got % x, want % x", c.file, ti.Name, b/c.d.BlockBytes(),
							got.Data[b:b+c.d.BlockBytes()], want[b:b+c.d.BlockBytes()])
					}
				}
			}
			n++
		}
		t.Logf("%s: %d tensors identical", c.file, n)
		q.Close()
	}
}

// scaledGaussianBlocks is n values in blocks of 32, each Gaussian at a scale
// of its own, 10^(b mod decades − decades/2) for block b, except an all-zero
// first block (d = 0) and one outlier, 1e4, in the second.
func scaledGaussianBlocks(seed uint64, n, decades int) []float32 {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * float32(math.Pow(10, float64(i/32%decades-decades/2)))
	}
	copy(x[:32], make([]float32, 32))
	x[40] = 1e4
	return x
}

// TestQuantizeRoundTrip bounds the error of quantise → dequantise per block:
// half a step (plus the f16 rounding of the scale) for q8_0; for q4_0 a full
// step, since the side opposite the largest magnitude clips at +7.
func TestQuantizeRoundTrip(t *testing.T) {
	const n = 32 * 200
	x := scaledGaussianBlocks(1, n, 7)
	for _, d := range []ir.DType{ir.Q8_0, ir.Q4_0} {
		q, err := ir.Quantize(d, ir.Shape{n / 64, 64}, x)
		if err != nil {
			t.Fatal(err)
		}
		y := make([]float32, n)
		if err := ir.DequantizeRow(d, q.Data, y); err != nil {
			t.Fatal(err)
		}
		var worstRel, sumSq, sumErr float64
		for b := 0; b < n/32; b++ {
			var amax float64
			for _, v := range x[b*32 : b*32+32] {
				amax = max(amax, math.Abs(float64(v)))
			}
			bound := amax * (0.5/127 + 1.0/1024)
			if d == ir.Q4_0 {
				bound = amax / 8 * (1 + 1.0/256)
			}
			for j := b * 32; j < b*32+32; j++ {
				e := math.Abs(float64(x[j]) - float64(y[j]))
				if e > bound || math.IsNaN(e) {
					t.Fatalf("%v block %d [%d]: %g → %g, error %g over the bound %g", d, b, j, x[j], y[j], e, bound)
				}
				if amax > 0 {
					worstRel = max(worstRel, e/amax)
				}
				sumSq += float64(x[j]) * float64(x[j])
				sumErr += e * e
			}
		}
		snr := 10 * math.Log10(sumSq/sumErr)
		t.Logf("%v: worst error %.3g of the block's max, SNR %.1f dB", d, worstRel, snr)
		if minSNR := map[ir.DType]float64{ir.Q8_0: 40, ir.Q4_0: 15}[d]; snr < minSNR {
			t.Errorf("%v: SNR %.1f dB, want ≥ %g", d, snr, minSNR)
		}
		if y[0] != 0 || y[31] != 0 {
			t.Errorf("%v: the zero block decodes to %g", d, y[0])
		}
	}
	if err := ir.QuantizeRow(ir.Q8_0, make([]float32, 40), make([]byte, 42)); err == nil {
		t.Error("40 values quantised as q8_0")
	}
	if _, err := ir.Quantize(ir.F32, ir.Shape{32}, make([]float32, 32)); err == nil {
		t.Error("quantised to f32")
	}
	if err := ir.DequantizeRow(ir.Q4_0, make([]byte, 17), make([]float32, 32)); err == nil {
		t.Error("dequantised a short block")
	}
}

// TestQuantizeReferenceRounding pins llama.cpp's rounding on hand-made
// blocks: q8_0 rounds halves away from zero; q4_0 takes the signed value of
// largest magnitude (the first on ties) as −8 steps and clips at 15.
func TestQuantizeReferenceRounding(t *testing.T) {
	x := make([]float32, 32)
	x[0], x[1], x[2] = 127, -63.5, 0.5 // d = 1: q = 127, −64, 1
	q, _ := ir.Quantize(ir.Q8_0, ir.Shape{32}, x)
	if got := []int8{int8(q.Data[2]), int8(q.Data[3]), int8(q.Data[4])}; got[0] != 127 || got[1] != -64 || got[2] != 1 {
		t.Errorf("q8_0 quants %v, want [127 -64 1]", got)
	}
	x = make([]float32, 32)
	x[0], x[1], x[16] = 8, -8, -4 // max = +8 (first of the ties): d = −1
	q, _ = ir.Quantize(ir.Q4_0, ir.Shape{32}, x)
	if d := ir.F16ToF32(binary.LittleEndian.Uint16(q.Data)); d != -1 {
		t.Errorf("q4_0 d = %g, want -1", d)
	}
	// x/d + 8.5: 8 → 0, −8 → 16 clipped to 15, 0 → 8, −4 → 12.
	if lo0, lo1, hi0 := q.Data[2]&15, q.Data[3]&15, q.Data[2]>>4; lo0 != 0 || lo1 != 15 || hi0 != 12 {
		t.Errorf("q4_0 nibbles %d %d %d, want 0 15 12", lo0, lo1, hi0)
	}
}

// TestQuantizeSearched: searched q4_0 scales cut the squared error of
// Gaussian blocks to under 0.9 of llama.cpp's rule, lose to it on no block
// by more than the f16 rounding of the scale can explain, and keep the
// zero block, an outlier and blocks of one value exact or bounded.
func TestQuantizeSearched(t *testing.T) {
	const n = 32 * 4000
	x := scaledGaussianBlocks(3, n, 5)
	for i := 64; i < 96; i++ { // one value throughout
		x[i] = -0.75
	}
	// encode quantises x with quantize and decodes it back.
	encode := func(d ir.DType, quantize func(ir.DType, []float32, []byte) error) (q []byte, y []float32) {
		q = make([]byte, d.BytesFor(n))
		if err := quantize(d, x, q); err != nil {
			t.Fatal(err)
		}
		y = make([]float32, n)
		if err := ir.DequantizeRow(d, q, y); err != nil {
			t.Fatal(err)
		}
		return q, y
	}
	_, llama := encode(ir.Q4_0, ir.QuantizeRow)
	_, searched := encode(ir.Q4_0, ir.QuantizeRowSearched)
	var sumLlama, sumSearched float64
	for b := 0; b < n/32; b++ {
		var el, es, scale float64
		for j := b * 32; j < b*32+32; j++ {
			el += sq(float64(x[j]) - float64(llama[j]))
			es += sq(float64(x[j]) - float64(searched[j]))
			scale += sq(float64(x[j]))
		}
		if es > el*1.02+1e-12*scale || math.IsNaN(es) {
			t.Errorf("block %d: searched error %.4g, llama.cpp's %.4g", b, es, el)
		}
		// Blocks scaled by 10^k weigh alike in the sums.
		if scale > 0 {
			sumLlama += el / scale
			sumSearched += es / scale
		}
	}
	ratio := sumSearched / sumLlama
	t.Logf("searched/llama squared error %.4f", ratio)
	if ratio > 0.9 {
		t.Errorf("searched scales keep %.3f of llama.cpp's squared error, want < 0.9", ratio)
	}
	for j := 0; j < 32; j++ {
		if searched[j] != 0 {
			t.Fatalf("the zero block decodes to %g at %d", searched[j], j)
		}
	}
	if searched[64] != -0.75 || searched[95] != -0.75 {
		t.Errorf("a block of -0.75 decodes to %g, %g", searched[64], searched[95])
	}
	// q8_0 is not searched.
	q8, _ := encode(ir.Q8_0, ir.QuantizeRow)
	q8s, _ := encode(ir.Q8_0, ir.QuantizeRowSearched)
	if !bytes.Equal(q8, q8s) {
		t.Error("QuantizeRowSearched changed q8_0 blocks")
	}
}

func sq(v float64) float64 { return v * v }
