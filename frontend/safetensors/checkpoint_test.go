package safetensors

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeShards writes a two-shard checkpoint plus index into dir and returns
// the tensors written.
func writeShards(t *testing.T, dir string) []Tensor {
	t.Helper()
	var all []Tensor
	weightMap := map[string]string{}
	var total int64
	for s, names := range [][]string{{"a", "c"}, {"b", "d", "e"}} {
		shard := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[s]
		var ts []Tensor
		for i, name := range names {
			data := mustEncode(t, BF16, []float32{float32(s), float32(i), 1, 2})
			ts = append(ts, Tensor{Name: name, DType: BF16, Shape: []int{2, 2}, Data: data})
			weightMap[name] = shard
			total += int64(len(data))
		}
		if err := Write(filepath.Join(dir, shard), ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		all = append(all, ts...)
	}
	if err := WriteIndex(dir, weightMap, total); err != nil {
		t.Fatal(err)
	}
	return all
}

func TestOpenDirSharded(t *testing.T) {
	dir := t.TempDir()
	want := writeShards(t, dir)
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Names(); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Errorf("Names = %v", got)
	}
	for _, w := range want {
		got, ok := c.Tensor(w.Name)
		if !ok {
			t.Fatalf("tensor %q missing", w.Name)
		}
		if !slices.Equal(got.Data, w.Data) || !slices.Equal(got.Shape, w.Shape) || got.DType != w.DType {
			t.Errorf("tensor %q = %+v, want %+v", w.Name, got, w)
		}
		if !strings.HasPrefix(filepath.Base(got.File), "model-0000") {
			t.Errorf("tensor %q File = %q", w.Name, got.File)
		}
	}
	if len(c.Files()) != 2 || c.Metadata()["format"] != "pt" {
		t.Errorf("Files = %d, Metadata = %v", len(c.Files()), c.Metadata())
	}
	if _, ok := c.Tensor("zzz"); ok {
		t.Error("Tensor(zzz) found")
	}
}

func TestOpenDirSingle(t *testing.T) {
	for _, name := range []string{ModelFileName, "weights.safetensors"} {
		dir := t.TempDir()
		x := Tensor{Name: "x", DType: F32, Shape: []int{1}, Data: mustEncode(t, F32, []float32{3})}
		if err := Write(filepath.Join(dir, name), []Tensor{x}, nil); err != nil {
			t.Fatal(err)
		}
		c, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := c.Tensor("x"); !ok || got.File != filepath.Join(dir, name) {
			t.Errorf("%s: Tensor(x) = %+v, %v", name, got, ok)
		}
		c.Close()
	}
}

func TestOpenDirPrefersModelFile(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{ModelFileName, "other.safetensors"} {
		x := Tensor{Name: name, DType: F32, Shape: []int{1}, Data: make([]byte, 4)}
		if err := Write(filepath.Join(dir, name), []Tensor{x}, nil); err != nil {
			t.Fatal(err)
		}
	}
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Names(); !slices.Equal(got, []string{ModelFileName}) {
		t.Errorf("Names = %v, want only the tensor of %s", got, ModelFileName)
	}
}

func TestOpenDirErrors(t *testing.T) {
	tensor := func(name string) Tensor {
		return Tensor{Name: name, DType: F32, Shape: []int{1}, Data: make([]byte, 4)}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string
	}{
		{"empty dir", func(t *testing.T, dir string) {}, []string{"no checkpoint found", IndexFileName, ModelFileName, "*.safetensors"}},
		{"ambiguous", func(t *testing.T, dir string) {
			Write(filepath.Join(dir, "x.safetensors"), []Tensor{tensor("a")}, nil)
			Write(filepath.Join(dir, "y.safetensors"), []Tensor{tensor("a")}, nil)
		}, []string{"found 2 *.safetensors files"}},
		{"missing shard", func(t *testing.T, dir string) {
			writeShards(t, dir)
			os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors"))
		}, []string{IndexFileName, "model-00002-of-00002.safetensors", "does not exist"}},
		{"tensor missing from shard", func(t *testing.T, dir string) {
			writeShards(t, dir)
			Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), []Tensor{tensor("b"), tensor("d")}, nil)
		}, []string{`"e"`, "missing from its shard", "model-00002-of-00002.safetensors"}},
		{"tensor in two shards", func(t *testing.T, dir string) {
			writeShards(t, dir)
			Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), []Tensor{tensor("a"), tensor("b"), tensor("d"), tensor("e")}, nil)
		}, []string{`"a"`, "two shards", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}},
		{"bad shard", func(t *testing.T, dir string) {
			writeShards(t, dir)
			os.WriteFile(filepath.Join(dir, "model-00001-of-00002.safetensors"), []byte{1}, 0o644)
		}, []string{"model-00001-of-00002.safetensors", "shorter than"}},
		{"shard outside dir", func(t *testing.T, dir string) {
			WriteIndex(dir, map[string]string{"a": "../evil.safetensors"}, 4)
		}, []string{"not a file name"}},
		{"invalid index JSON", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, IndexFileName), []byte(`{"weight_map":`), 0o644)
		}, []string{IndexFileName, "invalid JSON"}},
		{"empty weight_map", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, IndexFileName), []byte(`{"metadata":{"total_size":0}}`), 0o644)
		}, []string{IndexFileName, "weight_map"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			c, err := OpenDir(dir)
			if err == nil {
				c.Close()
				t.Fatalf("OpenDir succeeded, want error containing %q", tt.want)
			}
			for _, w := range append([]string{dir}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// modelsDir holds the shared test checkpoints, relative to this package.
const modelsDir = "../../../shared/testdata/models"

// openModel opens a shared test checkpoint, skipping if it is absent.
func openModel(t *testing.T, name string) *Checkpoint {
	t.Helper()
	dir := filepath.Join(modelsDir, name)
	if _, err := os.Stat(filepath.Join(dir, ModelFileName)); err != nil {
		t.Skipf("test checkpoint not available: %v", err)
	}
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func TestRealCheckpoints(t *testing.T) {
	tiny := openModel(t, "tiny")
	bf16 := openModel(t, "tiny-bf16")
	gocoder := openModel(t, "gocoder")

	if !slices.Equal(tiny.Names(), bf16.Names()) {
		t.Fatalf("tiny and tiny-bf16 tensor names differ:\n%v\n%v", tiny.Names(), bf16.Names())
	}
	for _, name := range tiny.Names() {
		a, _ := tiny.Tensor(name)
		b, _ := bf16.Tensor(name)
		if a.DType != F32 || b.DType != BF16 {
			t.Errorf("%s: dtypes %s, %s; want F32, BF16", name, a.DType, b.DType)
		}
		if !slices.Equal(a.Shape, b.Shape) {
			t.Errorf("%s: shapes %v, %v differ", name, a.Shape, b.Shape)
		}
		af, err := a.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		bf, err := b.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		// tiny's weights were rounded to bf16-representable values, so the
		// two files must decode bit for bit identically.
		if !slices.Equal(af, bf) {
			t.Errorf("%s: tiny and tiny-bf16 values differ", name)
		}
	}
	if emb, ok := tiny.Tensor("model.embed_tokens.weight"); !ok || !slices.Equal(emb.Shape, []int{512, 64}) {
		t.Errorf("tiny embed_tokens = %v, %v", emb.Shape, ok)
	}
	if md := tiny.Metadata(); md["format"] != "pt" {
		t.Errorf("tiny metadata = %v", md)
	}

	emb, ok := gocoder.Tensor("model.embed_tokens.weight")
	if !ok || emb.DType != BF16 || !slices.Equal(emb.Shape, []int{4096, 256}) {
		t.Fatalf("gocoder embed_tokens = %s %v, %v", emb.DType, emb.Shape, ok)
	}
	for _, name := range gocoder.Names() {
		tt, _ := gocoder.Tensor(name)
		if tt.DType != BF16 {
			t.Errorf("gocoder %s: dtype %s, want BF16", name, tt.DType)
		}
		vals, err := tt.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		if len(vals) != tt.Elems() {
			t.Errorf("gocoder %s: %d values, want %d", name, len(vals), tt.Elems())
		}
	}
}
