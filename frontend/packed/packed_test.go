package packed

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/ir"
)

func sample(t *testing.T) map[string]ir.Tensor {
	t.Helper()
	f := make([]float32, 4*64)
	for i := range f {
		f[i] = float32(i%17) - 8
	}
	q, err := ir.Quantize(ir.Q4_0, ir.Shape{4, 64}, f)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]ir.Tensor{
		"a": {DType: ir.F32, Shape: ir.Shape{3}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		"b": q,
	}
}

func write(t *testing.T, tensors map[string]ir.Tensor) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.weights")
	w, err := Create(path, "fp")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := w.Add(name, tensors[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRoundTrip(t *testing.T) {
	want := sample(t)
	f, err := Open(write(t, want))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Fingerprint != "fp" || len(f.Tensors) != 2 {
		t.Fatalf("fingerprint %q, %d tensors", f.Fingerprint, len(f.Tensors))
	}
	for name, w := range want {
		g := f.Tensors[name]
		if g.DType != w.DType || !g.Shape.Equal(w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: read %v%v, wrote %v%v", name, g.DType, g.Shape, w.DType, w.Shape)
		}
		if cap(g.Data) != len(g.Data) {
			t.Errorf("%s: slice can grow into its neighbour", name)
		}
	}
}

// TestBadFiles damages a good file in every way the reader must catch.
func TestBadFiles(t *testing.T) {
	good, err := os.ReadFile(write(t, sample(t)))
	if err != nil {
		t.Fatal(err)
	}
	indexOff := int(binary.LittleEndian.Uint64(good[16:]))
	damage := map[string]struct {
		edit func([]byte) []byte
		want string
	}{
		"empty":        {func([]byte) []byte { return nil }, "too short"},
		"foreign":      {func(b []byte) []byte { copy(b, "GGUF\x03\x00\x00\x00"); return b }, "not a gemmac weights file"},
		"version":      {func(b []byte) []byte { b[8] = 9; return b }, "format version 9"},
		"truncated":    {func(b []byte) []byte { return b[:indexOff+3] }, "truncated"},
		"index bit":    {func(b []byte) []byte { b[indexOff+5] ^= 1; return b }, "index checksum"},
		"tensor bit":   {func(b []byte) []byte { b[alignment+1] ^= 1; return b }, "tensor a fails its checksum"},
		"cut to data":  {func(b []byte) []byte { return b[:100] }, "outside the file"},
		"index offset": {func(b []byte) []byte { binary.LittleEndian.PutUint64(b[16:], 4); return b }, "outside the file"},
	}
	for name, d := range damage {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.weights")
			if err := os.WriteFile(path, d.edit(bytes.Clone(good)), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("opened a damaged file")
			}
			if !strings.Contains(err.Error(), d.want) || !strings.Contains(err.Error(), path) && name != "empty" {
				t.Errorf("error %q: want it to name the file and say %q", err, d.want)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.weights")); err == nil {
		t.Error("opened a missing file")
	}
}

func TestAddChecksShape(t *testing.T) {
	w, err := Create(filepath.Join(t.TempDir(), "x.weights"), "fp")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.Add("short", ir.Tensor{DType: ir.F32, Shape: ir.Shape{4}, Data: make([]byte, 8)}); err == nil {
		t.Error("accepted 8 bytes for f32[4]")
	}
}

// FuzzParse feeds the reader damaged files: it must return an error or a
// file whose tensors all lie inside the data, never panic.
func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.weights")
	w, err := Create(path, "fp")
	if err != nil {
		f.Fatal(err)
	}
	if err := w.Add("a", ir.Tensor{DType: ir.F32, Shape: ir.Shape{2}, Data: make([]byte, 8)}); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:headerBytes])
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < headerBytes {
			return // Open reports short files before parsing
		}
		file, err := parse("fuzz", data)
		if err != nil {
			return
		}
		for name, tn := range file.Tensors {
			if err := tn.Check(); err != nil {
				t.Errorf("tensor %s accepted but inconsistent: %v", name, err)
			}
		}
	})
}
