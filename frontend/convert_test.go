package frontend

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/gemmac/gemmac/frontend/mmap"
	"github.com/gemmac/gemmac/ir"
)

// TestConvertMatchesLlamaQuantize quantises tiny-hot's f32 safetensors at
// build time with llama.cpp's rounding and compares every projection and the
// embedding, byte for byte, with the GGUFs llama.cpp's llama-quantize --pure
// wrote from the same model.
func TestConvertMatchesLlamaQuantize(t *testing.T) {
	src, err := Open(filepath.Join(testdata, "models", "tiny-hot"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, dt := range []ir.DType{ir.Q8_0, ir.Q4_0} {
		t.Run(dt.String(), func(t *testing.T) {
			ref, err := Open(filepath.Join(testdata, "models", "tiny-hot."+dt.String()+".gguf"))
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			got, err := Convert(src, Conversion{Layers: dt, Embed: dt, LlamaRounding: true})
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			compared := 0
			for name, want := range ref.Weights {
				if want.DType != dt {
					continue // norms: f32 in the GGUF, kept as stored here
				}
				g := got.Weights[name]
				if g.DType != dt || !g.Shape.Equal(want.Shape) || !bytes.Equal(g.Data, want.Data) {
					t.Errorf("%s: converted %v%v differs from llama-quantize's %v%v", name, g.DType, g.Shape, want.DType, want.Shape)
				}
				compared++
			}
			if want := 7*src.Config.NumHiddenLayers + 1; compared != want {
				t.Errorf("compared %d tensors, want %d", compared, want)
			}
			if norm := got.Weights[Layer(0).InputNorm]; norm.DType != ir.F32 {
				t.Errorf("norm converted to %v; norms are kept as stored", norm.DType)
			}
		})
	}
}

// TestConvertSearchedScales: by default q4_0 scales are searched, and every
// tensor of tiny-hot comes out closer to its f32 values than llama-quantize's
// q4_0 GGUF of the same model.
func TestConvertSearchedScales(t *testing.T) {
	src, err := Open(filepath.Join(testdata, "models", "tiny-hot"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ref, err := Open(filepath.Join(testdata, "models", "tiny-hot.q4_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	got, err := Convert(src, Conversion{Layers: ir.Q4_0, Embed: ir.Q4_0})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	sqErr := func(q, f ir.Tensor) float64 {
		x, err := f.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		y, err := q.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		var e float64
		for i := range x {
			e += float64(x[i]-y[i]) * float64(x[i]-y[i])
		}
		return e
	}
	var sumGot, sumRef float64
	for name, want := range ref.Weights {
		if want.DType != ir.Q4_0 {
			continue
		}
		f := src.Weights[name]
		eGot, eRef := sqErr(got.Weights[name], f), sqErr(want, f)
		if eGot >= eRef {
			t.Errorf("%s: squared error %.4g, llama-quantize's %.4g", name, eGot, eRef)
		}
		sumGot += eGot
		sumRef += eRef
	}
	t.Logf("squared error %.4f of llama-quantize's", sumGot/sumRef)
}

func TestConversionTargets(t *testing.T) {
	ckpt, err := Open(filepath.Join(testdata, "models", "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	cases := []struct {
		conv         Conversion
		embed, layer ir.DType
		changes      bool
	}{
		{Conversion{}, ir.F32, ir.F32, false},
		{Conversion{Layers: ir.F32}, ir.F32, ir.F32, false},
		{Conversion{Layers: ir.Q4_0}, ir.Q8_0, ir.Q4_0, true},
		{Conversion{Layers: ir.Q8_0, Embed: ir.BF16}, ir.BF16, ir.Q8_0, true},
		{Conversion{Layers: ir.BF16}, ir.BF16, ir.BF16, true},
		{Conversion{Embed: ir.Q4_0}, ir.Q4_0, ir.F32, true},
	}
	for _, c := range cases {
		dts := c.conv.DTypes(ckpt)
		if dts[EmbedName] != c.embed || dts[Layer(1).Down] != c.layer || dts[FinalNormName] != ir.F32 {
			t.Errorf("%v: embed %v, down %v, final norm %v; want %v, %v, f32", c.conv, dts[EmbedName], dts[Layer(1).Down], dts[FinalNormName], c.embed, c.layer)
		}
		if got := c.conv.Changes(ckpt); got != c.changes {
			t.Errorf("%v: Changes = %v, want %v", c.conv, got, c.changes)
		}
	}
	if _, err := ParseConversion("q5_k", "", false); err == nil {
		t.Error("--dtype q5_k accepted")
	}
	if _, err := ParseConversion("", "i32", false); err == nil {
		t.Error("--embed-dtype i32 accepted")
	}
}

// TestConvertChunks: a tensor of many chunks (a partial chunk last, split
// across the CPUs when there are several) quantises as the whole of it
// does at once.
func TestConvertChunks(t *testing.T) {
	const cols = 96
	rows := 9*quantizeChunkFloats/cols + 5
	data := make([]byte, 2*rows*cols)
	vals := make([]float32, rows*cols)
	for i := range vals {
		b := ir.F32ToBF16(float32(math.Sin(float64(i)*0.37)) * float32(1+i%7))
		data[2*i], data[2*i+1] = byte(b), byte(b>>8)
		vals[i] = ir.BF16ToF32(b)
	}
	src := ir.Tensor{DType: ir.BF16, Shape: ir.Shape{rows, cols}, Data: data}
	for _, dt := range []ir.DType{ir.Q8_0, ir.Q4_0} {
		for _, llama := range []bool{false, true} {
			got, err := ConvertTensor(src, dt, llama)
			if err != nil {
				t.Fatal(err)
			}
			quantize := ir.QuantizeRowSearched
			if llama {
				quantize = ir.QuantizeRow
			}
			want := make([]byte, dt.BytesFor(len(vals)))
			if err := quantize(dt, vals, want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Data, want) || !got.Shape.Equal(src.Shape) {
				t.Errorf("%v (llama rounding %v): %d rows in chunks differ from the tensor quantised whole", dt, llama, rows)
			}
		}
	}
}

func TestConvertRefusesRequantising(t *testing.T) {
	q, err := ir.Quantize(ir.Q8_0, ir.Shape{2, 32}, make([]float32, 64))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ConvertTensor(q, ir.Q4_0, false); err == nil {
		t.Error("q8_0 → q4_0 accepted")
	}
	odd := ir.Tensor{DType: ir.F32, Shape: ir.Shape{2, 20}, Data: make([]byte, 160)}
	if _, err := ConvertTensor(odd, ir.Q8_0, false); err == nil {
		t.Error("rows of 20 quantised to blocks of 32")
	}
}

func TestFingerprint(t *testing.T) {
	cfg, err := Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	a, err := Fingerprint(cfg, map[string]ir.DType{EmbedName: ir.F32})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Fingerprint(cfg, map[string]ir.DType{EmbedName: ir.Q8_0})
	other := *cfg
	other.SlidingWindow++
	c, _ := Fingerprint(&other, map[string]ir.DType{EmbedName: ir.F32})
	if a == b || a == c || len(a) != 64 {
		t.Errorf("fingerprints %s, %s, %s: want distinct sha256 digests", a, b, c)
	}
}

// TestConvertOwnsItsCopy: Convert copies every tensor, converted or kept as
// stored, into memory of its own, so the converted checkpoint outlives the
// stored one, and drops the stored pages from the resident set as it goes
// (they stay in the page cache): a converted model does not hold the
// stored one beside it. One conversion changes most of tiny's bytes, the
// other keeps most as stored.
func TestConvertOwnsItsCopy(t *testing.T) {
	for _, conv := range []Conversion{{Layers: ir.Q8_0, Embed: ir.F32}, {Embed: ir.Q8_0}} {
		t.Run(conv.String(), func(t *testing.T) { checkConvertOwnsItsCopy(t, conv) })
	}
}

func checkConvertOwnsItsCopy(t *testing.T, conv Conversion) {
	ckpt, err := Open(filepath.Join(testdata, "models", "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	want := map[string][]byte{}
	var mapped []byte    // any tensor: the mapping holds them all
	var releasable int64 // the whole pages inside tensors
	page := int64(os.Getpagesize())
	dts := conv.DTypes(ckpt)
	for name, w := range ckpt.Weights {
		c, err := ConvertTensor(w, dts[name], false) // reads every page
		if err != nil {
			t.Fatal(err)
		}
		want[name] = bytes.Clone(c.Data)
		mapped = w.Data
		start := int64(uintptr(unsafe.Pointer(&w.Data[0])))
		first, end := (start+page-1)/page*page, (start+int64(len(w.Data)))/page*page
		releasable += max(0, end-first)
	}
	before, err := mmap.Resident(mapped)
	if err != nil {
		t.Skip(err)
	}
	if releasable < before/2 {
		t.Fatalf("only %d of %d resident bytes are in tensors: the test shows nothing", releasable, before)
	}
	got, err := Convert(ckpt, conv)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	after, err := mmap.Resident(mapped)
	if err != nil {
		t.Fatal(err)
	}
	// Reading one tensor maps its neighbours' cached pages back in too
	// (the kernel's fault-around, 64 KiB), which on a model this small is
	// some of the released pages: require three quarters gone.
	if most := before - releasable*3/4; after > most {
		t.Errorf("resident %d bytes before converting, %d after; want at most %d (three quarters of the tensors' %d released)", before, after, most, releasable)
	}
	// Reading a tensor that still lay in the stored mapping would fault.
	if err := ckpt.Close(); err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		g := got.Weights[name]
		if g.DType != dts[name] || !bytes.Equal(g.Data, w) {
			t.Errorf("%s: %v, %d bytes, differs from ConvertTensor's %v", name, g.DType, len(g.Data), dts[name])
		}
	}
}
