package safetensors

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Spec declares one tensor to be written by a Writer.
type Spec struct {
	Name  string
	DType DType
	Shape []int
}

// Writer streams a safetensors file to disk one tensor at a time, so that
// checkpoints larger than memory (a 2B model in F32 is about 10 GB) can be
// produced. The file appears at its final path only when Close succeeds.
type Writer struct {
	path  string
	tmp   *os.File
	bw    *bufio.Writer
	specs []Spec  // sorted by name
	sizes []int64 // byte size of each spec
	next  int     // index of the next tensor to write
	err   error   // sticky: once set, the file is abandoned
}

// Create starts writing a safetensors file at path holding the tensors
// described by specs, which the caller then supplies with WriteTensor in
// name order. Tensors are laid out sorted by name, and the header is padded
// with spaces (as the Hugging Face writer does) so the data buffer starts at
// an 8-byte aligned offset. Output goes to a temporary file in the same
// directory that Close renames into place, so readers never see a partial
// checkpoint.
func Create(path string, specs []Spec, metadata map[string]string) (*Writer, error) {
	specs = slices.Clone(specs)
	slices.SortFunc(specs, func(a, b Spec) int { return cmp.Compare(a.Name, b.Name) })
	sizes := make([]int64, len(specs))
	for i, s := range specs {
		n, err := specBytes(s)
		if err != nil {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", path, s.Name, err)
		}
		if i > 0 && specs[i-1].Name == s.Name {
			return nil, fmt.Errorf("safetensors: %s: duplicate tensor name %q", path, s.Name)
		}
		sizes[i] = n
	}
	header, err := encodeHeader(specs, sizes, metadata)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	w := &Writer{path: path, tmp: tmp, bw: bufio.NewWriterSize(tmp, 1<<20), specs: specs, sizes: sizes}
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(header)))
	if _, err := w.bw.Write(prefix[:]); err != nil {
		return nil, w.fail(err)
	}
	if _, err := w.bw.Write(header); err != nil {
		return nil, w.fail(err)
	}
	return w, nil
}

// specBytes validates s and returns its data size in bytes.
func specBytes(s Spec) (int64, error) {
	if s.Name == "" {
		return 0, fmt.Errorf("empty tensor name")
	}
	if s.Name == metadataKey {
		return 0, fmt.Errorf("name is reserved for metadata")
	}
	size := int64(s.DType.Size())
	if size == 0 {
		return 0, fmt.Errorf("unknown dtype %q", s.DType)
	}
	n := size
	for _, d := range s.Shape {
		if d < 0 {
			return 0, fmt.Errorf("negative shape dim %d in %v", d, s.Shape)
		}
		if d != 0 && n > math.MaxInt64/int64(d) {
			return 0, fmt.Errorf("shape %v overflows", s.Shape)
		}
		n *= int64(d)
	}
	return n, nil
}

// encodeHeader renders the JSON header, padded with trailing spaces to a
// multiple of 8 bytes. It is built by hand rather than by marshalling a map
// so that "__metadata__" comes first and tensors follow in file order, which
// makes the header readable with `head -c`.
func encodeHeader(specs []Spec, sizes []int64, metadata map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	sep := ""
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata) // sorts keys
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&buf, "%q:%s", metadataKey, m)
		sep = ","
	}
	var off int64
	for i, s := range specs {
		name, err := json.Marshal(s.Name)
		if err != nil {
			return nil, err
		}
		shape := s.Shape
		if shape == nil {
			shape = []int{} // a scalar: the format wants [] rather than null
		}
		sh, err := json.Marshal(shape)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&buf, `%s%s:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, sep, name, s.DType, sh, off, off+sizes[i])
		sep = ","
		off += sizes[i]
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	return buf.Bytes(), nil
}

// WriteTensor writes the data of the next tensor. Tensors must be written in
// name order, each exactly once, with len(data) matching its spec.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.next >= len(w.specs) {
		return w.fail(fmt.Errorf("tensor %q: all %d declared tensors already written", name, len(w.specs)))
	}
	s := w.specs[w.next]
	if name != s.Name {
		return w.fail(fmt.Errorf("tensor %q written out of order: expected %q next (tensors go in name order)", name, s.Name))
	}
	if int64(len(data)) != w.sizes[w.next] {
		return w.fail(fmt.Errorf("tensor %q: got %d bytes, shape %v of %s needs %d", name, len(data), s.Shape, s.DType, w.sizes[w.next]))
	}
	if _, err := w.bw.Write(data); err != nil {
		return w.fail(err)
	}
	w.next++
	return nil
}

// Close finishes the file and moves it into place. If any tensor is missing
// or an earlier call failed, the temporary file is removed and no file is
// created at the destination.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.next != len(w.specs) {
		return w.fail(fmt.Errorf("closed after %d of %d tensors; next missing is %q", w.next, len(w.specs), w.specs[w.next].Name))
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail(err)
	}
	// Sync before rename so a crash cannot leave a complete-looking name
	// pointing at unwritten blocks.
	if err := w.tmp.Sync(); err != nil {
		return w.fail(err)
	}
	if err := w.tmp.Chmod(0o644); err != nil { // CreateTemp uses 0600
		return w.fail(err)
	}
	if err := w.tmp.Close(); err != nil {
		return w.fail(err)
	}
	if err := os.Rename(w.tmp.Name(), w.path); err != nil {
		return w.fail(err)
	}
	w.err = fmt.Errorf("safetensors: %s: writer already closed", w.path)
	return nil
}

// Abort abandons the file, removing the temporary output. It is safe to call
// after Close, making `defer w.Abort()` a convenient cleanup.
func (w *Writer) Abort() {
	if w.err == nil {
		w.fail(fmt.Errorf("aborted"))
	}
}

// fail records err, discards the temporary file and returns the wrapped
// error.
func (w *Writer) fail(err error) error {
	w.err = fmt.Errorf("safetensors: %s: %w", w.path, err)
	w.tmp.Close()
	os.Remove(w.tmp.Name())
	return w.err
}

// Write writes tensors (in any order) to a new safetensors file at path,
// atomically. Each tensor's Data must hold exactly the bytes its DType and
// Shape require.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	specs := make([]Spec, len(tensors))
	byName := make(map[string][]byte, len(tensors))
	for i, t := range tensors {
		specs[i] = Spec{Name: t.Name, DType: t.DType, Shape: t.Shape}
		byName[t.Name] = t.Data
	}
	w, err := Create(path, specs, metadata)
	if err != nil {
		return err
	}
	for _, s := range w.specs {
		if err := w.WriteTensor(s.Name, byName[s.Name]); err != nil {
			return err
		}
	}
	return w.Close()
}

// WriteIndex writes model.safetensors.index.json into dir for a sharded
// checkpoint. weightMap maps each tensor name to its shard's file name and
// totalSize is the summed tensor data size, as the Hugging Face tools record.
func WriteIndex(dir string, weightMap map[string]string, totalSize int64) error {
	idx := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": totalSize}, weightMap}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("safetensors: index: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, IndexFileName), append(b, '\n'))
}

// writeFileAtomic writes data to path through a temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	return nil
}
