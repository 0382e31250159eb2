package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const models = "../../../shared/testdata/models"

var realFiles = []string{"tiny.f32.gguf", "tiny-hot.f32.gguf", "tiny-hot.q8_0.gguf", "tiny-hot.q4_0.gguf"}

func TestOpenReferenceFiles(t *testing.T) {
	for _, name := range realFiles {
		f, err := Open(filepath.Join(models, name))
		if err != nil {
			t.Fatal(err)
		}
		if f.Version != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 || len(f.Tensors) != 46 {
			t.Errorf("%s: version %d alignment %d data at %d, %d tensors", name, f.Version, f.Alignment, f.DataOffset, len(f.Tensors))
		}
		if arch, err := f.String("general.architecture"); err != nil || arch != "gemma2" {
			t.Errorf("%s: architecture %q, %v", name, arch, err)
		}
		if n, err := f.Int("gemma2.block_count"); err != nil || n != 4 {
			t.Errorf("%s: block_count %d, %v", name, n, err)
		}
		if eps, err := f.Float("gemma2.attention.layer_norm_rms_epsilon"); err != nil || eps != 1e-6 {
			t.Errorf("%s: eps %v, %v", name, eps, err)
		}
		toks, err := f.Strings("tokenizer.ggml.tokens")
		if err != nil || len(toks) != 512 || toks[2] != "<bos>" {
			t.Errorf("%s: %d tokens, %v", name, len(toks), err)
		}
		if _, err := f.Float32s("tokenizer.ggml.scores"); err != nil {
			t.Error(err)
		}
		if _, err := f.Int32s("tokenizer.ggml.token_type"); err != nil {
			t.Error(err)
		}
		if _, err := f.Int("no.such.key"); !errors.Is(err, ErrMissingKey) {
			t.Errorf("missing key: %v", err)
		}
		if _, err := f.Int("general.architecture"); err == nil || !strings.Contains(err.Error(), "is string, want an integer") {
			t.Errorf("wrong type: %v", err)
		}
		emb, ok := f.Tensor("token_embd.weight")
		if !ok || !reflect.DeepEqual(emb.Dims, []uint64{64, 512}) || !reflect.DeepEqual(emb.Shape(), []int{512, 64}) {
			t.Errorf("%s: token_embd %+v", name, emb)
		}
		if got := uint64(len(f.Data(emb))); got != emb.Size || got != 512*64/uint64(emb.Type.BlockSize())*uint64(emb.Type.BlockBytes()) {
			t.Errorf("%s: token_embd %v has %d bytes", name, emb.Type, got)
		}
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		if err := f.Close(); err != nil {
			t.Error("second Close:", err)
		}
	}
}

// TestWriteRoundTrip writes every value type and a few tensors, parses the
// result and compares.
func TestWriteRoundTrip(t *testing.T) {
	kv := []KV{
		{"general.alignment", TypeUint32, uint32(64)},
		{"u8", TypeUint8, uint8(7)}, {"i8", TypeInt8, int8(-7)}, {"u16", TypeUint16, uint16(700)},
		{"i16", TypeInt16, int16(-700)}, {"u32", TypeUint32, uint32(70000)}, {"i32", TypeInt32, int32(-70000)},
		{"f32", TypeFloat32, float32(0.25)}, {"b", TypeBool, true}, {"s", TypeString, "héllo"},
		{"u64", TypeUint64, uint64(1 << 40)}, {"i64", TypeInt64, int64(-1 << 40)}, {"f64", TypeFloat64, 1e-300},
		{"as", TypeArray, Array{TypeString, []string{"a", "", "ccc"}}},
		{"af", TypeArray, Array{TypeFloat32, []float32{1, -2.5}}},
		{"ai", TypeArray, Array{TypeInt32, []int32{3, -4}}},
		{"ab", TypeArray, Array{TypeBool, []bool{true, false}}},
		{"au8", TypeArray, Array{TypeUint8, []uint8{}}},
		{"ai64", TypeArray, Array{TypeInt64, []int64{-9}}},
		{"af64", TypeArray, Array{TypeFloat64, []float64{math.Pi}}},
		{"au16", TypeArray, Array{TypeUint16, []uint16{9}}},
		{"ai16", TypeArray, Array{TypeInt16, []int16{-9}}},
		{"ai8", TypeArray, Array{TypeInt8, []int8{-9}}},
		{"au32", TypeArray, Array{TypeUint32, []uint32{9}}},
		{"au64", TypeArray, Array{TypeUint64, []uint64{9}}},
	}
	tensors := []WriteTensor{
		{Name: "a", Dims: []uint64{3, 2}, Type: F32, Data: bytes.Repeat([]byte{1}, 24)},
		{Name: "q", Dims: []uint64{64, 2}, Type: Q8_0, Data: bytes.Repeat([]byte{2}, 4*34)},
		{Name: "h", Dims: []uint64{5}, Type: BF16, Data: bytes.Repeat([]byte{3}, 10)},
	}
	var buf bytes.Buffer
	if err := Write(&buf, kv, tensors); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.gguf")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !reflect.DeepEqual(f.KV, kv) {
		t.Errorf("metadata\n%v\nwant\n%v", f.KV, kv)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d, data at %d", f.Alignment, f.DataOffset)
	}
	for i, wt := range tensors {
		ti := f.Tensors[i]
		if ti.Name != wt.Name || !reflect.DeepEqual(ti.Dims, wt.Dims) || ti.Type != wt.Type || ti.Offset%64 != 0 || !bytes.Equal(f.Data(&ti), wt.Data) {
			t.Errorf("tensor %d: %+v", i, ti)
		}
	}
	if f.Path() != path {
		t.Errorf("path %q", f.Path())
	}

	// The writer refuses what the reader would.
	for what, c := range map[string]struct {
		kv []KV
		ts []WriteTensor
	}{
		"duplicate key":    {[]KV{{"k", TypeBool, true}, {"k", TypeBool, false}}, nil},
		"value type":       {[]KV{{"k", TypeUint32, 3}}, nil},
		"array type":       {[]KV{{"k", TypeArray, Array{TypeInt32, []uint32{1}}}}, nil},
		"alignment":        {[]KV{{"general.alignment", TypeUint32, uint32(48)}}, nil},
		"data length":      {nil, []WriteTensor{{Name: "x", Dims: []uint64{4}, Type: F32, Data: make([]byte, 15)}}},
		"partial block":    {nil, []WriteTensor{{Name: "x", Dims: []uint64{16}, Type: Q4_0, Data: make([]byte, 9)}}},
		"duplicate tensor": {nil, []WriteTensor{{Name: "x", Dims: []uint64{1}, Type: F32, Data: make([]byte, 4)}, {Name: "x", Dims: []uint64{1}, Type: F32, Data: make([]byte, 4)}}},
	} {
		if err := Write(&bytes.Buffer{}, c.kv, c.ts); err == nil {
			t.Errorf("%s: written", what)
		}
	}
}

// raw assembles GGUF bytes field by field, for malformed files.
type raw struct{ bytes.Buffer }

func (r *raw) u32(v uint32) *raw { binary.Write(&r.Buffer, binary.LittleEndian, v); return r }
func (r *raw) u64(v uint64) *raw { binary.Write(&r.Buffer, binary.LittleEndian, v); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.WriteString(s); return r }
func (r *raw) header(version uint32, tensors, kvs uint64) *raw {
	r.WriteString("GGUF")
	return r.u32(version).u64(tensors).u64(kvs)
}

// tensor writes one tensor info.
func (r *raw) tensor(name string, typ GGMLType, off uint64, dims ...uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(off)
}

// pad aligns to 32 and appends n data bytes.
func (r *raw) data(n int) []byte {
	r.Write(make([]byte, (32-r.Len()%32)%32+n))
	return r.Bytes()
}

func TestParseErrors(t *testing.T) {
	valid := func() *raw { return new(raw) }
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "truncated header: magic"},
		{"magic", []byte("GGML\x03\x00\x00\x00"), `not a GGUF file: magic "GGML"`},
		{"version 1", valid().header(1, 0, 0).Bytes(), "GGUF version 1 is not supported"},
		{"version 2", valid().header(2, 0, 0).Bytes(), "GGUF version 2 is not supported"},
		{"version 4", valid().header(4, 0, 0).Bytes(), "unknown GGUF version 4"},
		{"big-endian", valid().header(3<<24, 0, 0).Bytes(), "big-endian GGUF"},
		{"truncated counts", []byte("GGUF\x03\x00\x00\x00\x01\x00"), "truncated header: tensor count at byte 8 needs 8 bytes, only 2 left"},
		{"absurd kv count", valid().header(3, 0, 1<<40).Bytes(), "metadata count 1099511627776 is impossible"},
		{"absurd tensor count", valid().header(3, 1<<62, 0).Bytes(), "tensor count 4611686018427387904 is impossible"},
		{"key past EOF", valid().header(3, 0, 1).u64(1 << 50).u32(0).u8s(1).Bytes(), "metadata entry 0 key at byte 24: length 1125899906842624 runs past the end of the file"},
		{"string past EOF", valid().header(3, 0, 1).str("k").u32(uint32(TypeString)).u64(100).Bytes(), `metadata "k" at byte 37: length 100 runs past the end`},
		{"array past EOF", valid().header(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeUint32)).u64(1 << 61).Bytes(), `metadata "k" at byte 37: array of 2305843009213693952 uint32s runs past the end`},
		{"string array past EOF", valid().header(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(3).u64(1).Bytes(), "array of 3 strings runs past the end"},
		{"nested array", valid().header(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeArray)).u64(0).Bytes(), "arrays of arrays are not supported"},
		{"value type", valid().header(3, 0, 1).str("k").u32(13).u64(0).Bytes(), `metadata "k" at byte 24: unknown value type 13`},
		{"bool", valid().header(3, 0, 1).str("k").u32(uint32(TypeBool)).u8s(2).Bytes(), "bool is 2, want 0 or 1"},
		{"duplicate key", valid().header(3, 0, 2).str("k").u32(uint32(TypeUint8)).u8s(1).str("k").u32(uint32(TypeUint8)).u8s(1).Bytes(), `duplicate key "k"`},
		{"alignment type", valid().header(3, 0, 1).str(KeyAlignment).u32(uint32(TypeUint64)).u64(32).Bytes(), "general.alignment at byte 24 is uint64, want uint32"},
		{"alignment value", valid().header(3, 0, 1).str(KeyAlignment).u32(uint32(TypeUint32)).u32(24).Bytes(), "general.alignment is 24, want a power of two"},
		{"truncated tensor info", valid().header(3, 1, 0).str("w").u32(2).u64(4).u64(4).u32(0).Bytes(), `truncated header: tensor "w" (info 0 at byte 24) offset at byte 57 needs 8 bytes, only 0 left`},
		{"no dims", valid().header(3, 1, 0).tensor("w", F32, 0).data(64), `tensor "w" (info 0 at byte 24): 0 dimensions, want 1 to 4`},
		{"five dims", valid().header(3, 1, 0).tensor("w", F32, 0, 1, 1, 1, 1, 1).data(64), "5 dimensions, want 1 to 4"},
		{"zero dim", valid().header(3, 1, 0).tensor("w", F32, 0, 4, 0).data(64), "dimension 1 is 0"},
		{"negative dim", valid().header(3, 1, 0).tensor("w", F32, 0, 1<<63).data(64), "dimension 0 is -9223372036854775808"},
		{"dims overflow", valid().header(3, 1, 0).tensor("w", F32, 0, 1<<40, 1<<40).data(64), "dimensions [1099511627776 1099511627776] overflow (at dimension 1)"},
		{"size overflow", valid().header(3, 1, 0).tensor("w", F32, 0, 1<<62).data(64), "overflow the f32 data size"},
		{"unknown type", valid().header(3, 1, 0).tensor("blk.0.w", 77, 0, 32).data(64), `tensor "blk.0.w" (info 0 at byte 24): unsupported ggml type 77`},
		{"removed type", valid().header(3, 1, 0).tensor("w", 4, 0, 32).data(64), "unsupported ggml type 4"},
		{"partial block", valid().header(3, 1, 0).tensor("w", Q8_0, 0, 16, 2).data(64), "rows of 16 elements are not whole q8_0 blocks of 32"},
		{"unaligned offset", valid().header(3, 1, 0).tensor("w", F32, 4, 1).data(64), "data offset 4 is not a multiple of the alignment 32"},
		{"duplicate tensor", valid().header(3, 2, 0).tensor("w", F32, 0, 1).tensor("w", F32, 32, 1).data(64), `duplicate name "w"`},
		{"data past EOF", valid().header(3, 1, 0).tensor("w", F32, 0, 16).data(63), `tensor "w": data [0, 64) of the data section at byte 64 runs past the end of the file`},
		{"offset past EOF", valid().header(3, 1, 0).tensor("w", F32, 1<<63, 1).data(8), "runs past the end of the file"},
		{"overlap", valid().header(3, 2, 0).tensor("a", F32, 32, 16).tensor("b", F32, 0, 9).data(128), `tensors "b" [0, 36) and "a" [32, 96) overlap`},
	}
	for _, c := range cases {
		_, err := Parse(c.file)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	// Every strict prefix of a real header fails cleanly.
	data, err := os.ReadFile(filepath.Join(models, "tiny-hot.q4_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	end := int(f.DataOffset) + int(f.Tensors[0].Size)
	for n := 0; n < end; n++ {
		if n > 1000 && n < int(f.HeaderSize)-200 && n%61 != 0 {
			continue
		}
		if _, err := Parse(data[:n]); err == nil {
			t.Fatalf("a %d-byte prefix parsed", n)
		}
	}
	// Open reports a short file and a directory.
	short := filepath.Join(t.TempDir(), "short.gguf")
	os.WriteFile(short, []byte("GGUF"), 0o644)
	if _, err := Open(short); err == nil || !strings.Contains(err.Error(), "short.gguf: truncated header: version") {
		t.Errorf("short file: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

func (r *raw) u8s(b ...byte) *raw { r.Write(b); return r }

// FuzzParse: no input makes Parse panic or hang, and what it accepts is
// consistent: every tensor's data lies inside the file.
func FuzzParse(f *testing.F) {
	// Seeds: the real files' headers, re-written with the vocabulary cut to
	// a few tokens and three small tensors, so they stay small
	// (the fuzzer minimises every new input, and 15 KB ones take it long).
	for _, name := range realFiles {
		h, err := Open(filepath.Join(models, name))
		if err != nil {
			f.Fatal(err)
		}
		var kv []KV
		for _, e := range h.KV {
			if a, ok := e.Value.(Array); ok {
				switch v := a.Values.(type) {
				case []string:
					a.Values = v[:6]
				case []float32:
					a.Values = v[:6]
				case []int32:
					a.Values = v[:6]
				}
				e.Value = a
			}
			kv = append(kv, e)
		}
		var ts []WriteTensor
		for i, ti := range h.Tensors {
			if ti.Size <= 2048 {
				ts = append(ts, WriteTensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: h.Data(&h.Tensors[i])})
			}
			if len(ts) == 3 {
				break
			}
		}
		var buf bytes.Buffer
		if err := Write(&buf, kv, ts); err != nil {
			f.Fatal(err)
		}
		if _, err := Parse(buf.Bytes()); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
		h.Close()
	}
	var buf bytes.Buffer
	Write(&buf, []KV{{"general.alignment", TypeUint32, uint32(8)}, {"a", TypeArray, Array{TypeString, []string{"x", "y"}}}},
		[]WriteTensor{{Name: "t", Dims: []uint64{32}, Type: Q4_0, Data: make([]byte, 18)}, {Name: "u", Dims: []uint64{2, 1}, Type: F16, Data: make([]byte, 4)}})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse(data)
		if err != nil {
			return
		}
		for i := range g.Tensors {
			ti := &g.Tensors[i]
			if d := g.Data(ti); uint64(len(d)) != ti.Size {
				t.Fatalf("tensor %s: %d bytes, size %d", ti.Name, len(d), ti.Size)
			}
			if ti.Dims[0]%uint64(ti.Type.BlockSize()) != 0 {
				t.Fatalf("tensor %s: partial block accepted", ti.Name)
			}
		}
		for _, kv := range g.KV {
			if got, ok := g.Get(kv.Key); !ok || got.Key != kv.Key {
				t.Fatalf("key %q not found", kv.Key)
			}
		}
	})
}
