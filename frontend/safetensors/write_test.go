package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

// mustEncode encodes vals as dtype or fails the test.
func mustEncode(t *testing.T, dtype DType, vals []float32) []byte {
	t.Helper()
	b, err := EncodeFloat32s(dtype, vals)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteOpenRoundTrip(t *testing.T) {
	// Values exactly representable in bf16 and f16, so decoding is exact.
	vals := []float32{0, 1, -2, 0.5, 1.5, -0.25}
	tensors := []Tensor{
		{Name: "w.f32", DType: F32, Shape: []int{2, 3}, Data: mustEncode(t, F32, []float32{1.1, -2.2, 3.3e-8, float32(math.Inf(1)), 5, 6})},
		{Name: "b.bf16", DType: BF16, Shape: []int{3, 2}, Data: mustEncode(t, BF16, vals)},
		{Name: "h.f16", DType: F16, Shape: []int{6}, Data: mustEncode(t, F16, vals)},
		{Name: "odd.bf16", DType: BF16, Shape: []int{3}, Data: mustEncode(t, BF16, vals[:3])}, // 6 bytes: misaligns what follows
		{Name: "scalar", DType: F32, Shape: []int{}, Data: mustEncode(t, F32, []float32{42})},
		{Name: "empty", DType: F32, Shape: []int{0, 4}, Data: nil},
		{Name: "ids", DType: I32, Shape: []int{2}, Data: []byte{1, 0, 0, 0, 2, 0, 0, 0}},
	}
	meta := map[string]string{"format": "pt", "note": `quote " and \ backslash`}
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := Write(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	if diff := cmp.Diff(meta, f.Metadata()); diff != "" {
		t.Errorf("metadata mismatch (-want +got):\n%s", diff)
	}
	var want []string
	for _, tt := range tensors {
		want = append(want, tt.Name)
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, f.Names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	for _, w := range tensors {
		got, ok := f.Tensor(w.Name)
		if !ok {
			t.Errorf("tensor %q missing", w.Name)
			continue
		}
		if got.DType != w.DType || !slices.Equal(got.Shape, w.Shape) || !bytes.Equal(got.Data, w.Data) || got.File != path {
			t.Errorf("tensor %q = %v %v %x (%s), want %v %v %x", w.Name, got.DType, got.Shape, got.Data, got.File, w.DType, w.Shape, w.Data)
		}
		if got.Elems() != w.Elems() {
			t.Errorf("tensor %q Elems = %d, want %d", w.Name, got.Elems(), w.Elems())
		}
		if w.DType == I32 {
			continue
		}
		gotF, err := got.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		wantF, _ := w.Float32s()
		if !slices.Equal(gotF, wantF) {
			t.Errorf("tensor %q Float32s = %v, want %v", w.Name, gotF, wantF)
		}
	}
	b, _ := f.Tensor("b.bf16")
	if got, _ := b.Float32s(); !slices.Equal(got, vals) {
		t.Errorf("bf16 decode = %v, want %v", got, vals)
	}

	// The data buffer starts 8-byte aligned, padded with spaces.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw)
	if (8+n)%8 != 0 {
		t.Errorf("data offset %d not 8-byte aligned", 8+n)
	}
	hdr := string(raw[8 : 8+n])
	if trimmed := strings.TrimRight(hdr, " "); !strings.HasSuffix(trimmed, "}") || len(hdr)-len(trimmed) >= 8 {
		t.Errorf("header not padded with fewer than 8 spaces: %q", hdr)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestDataAliasesMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	data := mustEncode(t, F32, []float32{1, 2, 3, 4})
	if err := Write(path, []Tensor{{Name: "x", DType: F32, Shape: []int{4}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, _ := f.Tensor("x")
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(f.mapping)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(x.Data)))
	if p < lo || p+uintptr(len(x.Data)) > lo+uintptr(len(f.mapping)) {
		t.Errorf("tensor data at %#x is not inside the mapping [%#x, %#x)", p, lo, lo+uintptr(len(f.mapping)))
	}
	if cap(x.Data) != len(x.Data) {
		t.Errorf("cap(Data) = %d, want %d so appends cannot reach neighbours", cap(x.Data), len(x.Data))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	specs := []Spec{{"b", F32, []int{2}}, {"a", BF16, []int{2}}}

	tests := []struct {
		name string
		run  func(w *Writer) error
		want string
	}{
		{"out of order", func(w *Writer) error { return w.WriteTensor("b", make([]byte, 8)) }, `expected "a" next`},
		{"wrong size", func(w *Writer) error { return w.WriteTensor("a", make([]byte, 8)) }, "got 8 bytes"},
		{"missing tensor", func(w *Writer) error {
			if err := w.WriteTensor("a", make([]byte, 4)); err != nil {
				return nil
			}
			return w.Close()
		}, `next missing is "b"`},
		{"too many", func(w *Writer) error {
			w.WriteTensor("a", make([]byte, 4))
			w.WriteTensor("b", make([]byte, 8))
			return w.WriteTensor("c", nil)
		}, "already written"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "out.safetensors")
			w, err := Create(path, specs, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = tt.run(w)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error = %v, want one containing %q and the path", err, tt.want)
			}
			if cerr := w.Close(); cerr == nil {
				t.Fatal("Close after failure succeeded")
			}
			w.Abort()
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("destination exists after failed write: %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("temp files left behind: %v", entries)
			}
		})
	}

	for _, bad := range []struct {
		specs []Spec
		want  string
	}{
		{[]Spec{{"a", "Q4", []int{1}}}, "unknown dtype"},
		{[]Spec{{"a", F32, []int{-1}}}, "negative shape dim"},
		{[]Spec{{"a", F32, []int{1}}, {"a", F32, []int{1}}}, "duplicate tensor name"},
		{[]Spec{{"", F32, []int{1}}}, "empty tensor name"},
		{[]Spec{{"__metadata__", F32, []int{1}}}, "reserved"},
	} {
		if _, err := Create(filepath.Join(dir, "x.safetensors"), bad.specs, nil); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Create(%v) error = %v, want %q", bad.specs, err, bad.want)
		}
	}
	if err := Write(filepath.Join(dir, "x.safetensors"), []Tensor{{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}, nil); err == nil ||
		!strings.Contains(err.Error(), `"a"`) {
		t.Errorf("Write with short data: error = %v", err)
	}
}

func TestWriteReplacesAtomically(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	for _, v := range []float32{1, 2} {
		if err := Write(path, []Tensor{{Name: "x", DType: F32, Shape: []int{1}, Data: mustEncode(t, F32, []float32{v})}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, _ := f.Tensor("x")
	if got, _ := x.Float32s(); got[0] != 2 {
		t.Errorf("x = %v, want [2]", got)
	}
}
