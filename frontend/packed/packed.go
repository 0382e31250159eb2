// Package packed reads and writes gemmac's packed weights file: the tensors
// a built binary reads, in the dtypes its kernels were compiled for, written
// once by `gemmac build --dtype` and memory-mapped at start.
//
// Layout (little-endian):
//
//	[0, 8)    magic "GEMMACW\x00"
//	[8, 12)   format version (uint32)
//	[12, 16)  CRC-32C of the index
//	[16, 24)  index offset (uint64)
//	[24, 32)  index length (uint64)
//	[32, ...) tensor data, each tensor 64-byte aligned
//	index     JSON: the build fingerprint and, per tensor, its name, dtype,
//	          shape, offset, length and the CRC-32C of its bytes
//
// The index sits at the end so the writer streams tensors as it converts
// them; a truncated file loses it and says so.
package packed

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/gemmac/gemmac/frontend/mmap"
	"github.com/gemmac/gemmac/ir"
)

// Magic starts every packed weights file.
const Magic = "GEMMACW\x00"

// Version is the format version this package reads and writes.
const Version = 1

const (
	headerBytes = 32
	alignment   = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Index describes the file's tensors.
type Index struct {
	// Fingerprint identifies the build the weights belong to (config and
	// each tensor's name, dtype and shape); a binary refuses another's.
	Fingerprint string        `json:"fingerprint"`
	Tensors     []TensorEntry `json:"tensors"`
}

// TensorEntry locates one tensor in the file.
type TensorEntry struct {
	Name   string `json:"name"`
	DType  string `json:"dtype"`
	Shape  []int  `json:"shape"`
	Offset int64  `json:"offset"`
	Bytes  int64  `json:"bytes"`
	CRC32C uint32 `json:"crc32c"`
}

// Writer streams tensors into a new packed file.
type Writer struct {
	f     *os.File
	path  string
	off   int64
	index Index
}

// Create starts a packed file at path for the build identified by fingerprint.
func Create(path, fingerprint string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := &Writer{f: f, path: path, off: headerBytes, index: Index{Fingerprint: fingerprint}}
	if _, err := f.Write(make([]byte, headerBytes)); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Add appends one tensor.
func (w *Writer) Add(name string, t ir.Tensor) error {
	if err := t.Check(); err != nil {
		return fmt.Errorf("%s: tensor %s: %w", w.path, name, err)
	}
	if pad := (alignment - w.off%alignment) % alignment; pad != 0 {
		if _, err := w.f.Write(make([]byte, pad)); err != nil {
			return err
		}
		w.off += pad
	}
	if _, err := w.f.Write(t.Data); err != nil {
		return fmt.Errorf("%s: %w", w.path, err)
	}
	w.index.Tensors = append(w.index.Tensors, TensorEntry{
		Name: name, DType: t.DType.String(), Shape: slices.Clone([]int(t.Shape)),
		Offset: w.off, Bytes: int64(len(t.Data)), CRC32C: crc32.Checksum(t.Data, castagnoli),
	})
	w.off += int64(len(t.Data))
	return nil
}

// Close writes the index and the header and closes the file.
func (w *Writer) Close() error {
	index, err := json.Marshal(w.index)
	if err != nil {
		w.f.Close()
		return err
	}
	header := make([]byte, headerBytes)
	copy(header, Magic)
	binary.LittleEndian.PutUint32(header[8:], Version)
	binary.LittleEndian.PutUint32(header[12:], crc32.Checksum(index, castagnoli))
	binary.LittleEndian.PutUint64(header[16:], uint64(w.off))
	binary.LittleEndian.PutUint64(header[24:], uint64(len(index)))
	_, err = w.f.Write(index)
	if err == nil {
		_, err = w.f.WriteAt(header, 0)
	}
	return errors.Join(err, w.f.Close())
}

// Abort closes and removes a file that will not be finished.
func (w *Writer) Abort() {
	w.f.Close()
	os.Remove(w.path)
}

// File is an opened, verified packed weights file.
type File struct {
	Path        string
	Fingerprint string
	// Tensors alias the file's memory map.
	Tensors map[string]ir.Tensor
	mapping []byte
}

// Open memory-maps the packed file at path and checks its header, index and
// every tensor's checksum (in parallel: it reads the file once).
func Open(path string) (*File, error) {
	data, mapped, err := mmap.ReadOnly(path, headerBytes)
	if err != nil {
		return nil, fmt.Errorf("packed weights: %w", err)
	}
	if !mapped {
		return nil, fmt.Errorf("packed weights %s: %d bytes, too short for the %d-byte header (truncated?)", path, len(data), headerBytes)
	}
	f, err := parse(path, data)
	if err != nil {
		_ = mmap.Unmap(data)
		return nil, err
	}
	return f, nil
}

func parse(path string, data []byte) (*File, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("packed weights %s: %s", path, fmt.Sprintf(format, args...))
	}
	if string(data[:8]) != Magic {
		return nil, bad("not a gemmac weights file (magic %q, want %q)", data[:8], Magic)
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != Version {
		return nil, bad("format version %d, this gemmac reads %d: rebuild the binary", v, Version)
	}
	size := uint64(len(data))
	indexOff, indexLen := binary.LittleEndian.Uint64(data[16:]), binary.LittleEndian.Uint64(data[24:])
	if indexOff < headerBytes || indexOff > size || indexLen > size-indexOff {
		return nil, bad("index at [%d, +%d) lies outside the file's %d bytes (truncated?)", indexOff, indexLen, size)
	}
	raw := data[indexOff : indexOff+indexLen]
	if crc := crc32.Checksum(raw, castagnoli); crc != binary.LittleEndian.Uint32(data[12:]) {
		return nil, bad("index checksum mismatch (damaged file)")
	}
	var index Index
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, bad("index: %v", err)
	}
	f := &File{Path: path, Fingerprint: index.Fingerprint, Tensors: map[string]ir.Tensor{}, mapping: data}
	for _, e := range index.Tensors {
		dt, err := ir.ParseDType(e.DType)
		if err != nil {
			return nil, bad("tensor %s: %v", e.Name, err)
		}
		want, err := dt.TensorBytes(e.Shape)
		if err != nil {
			return nil, bad("tensor %s: %v", e.Name, err)
		}
		if e.Bytes != int64(want) {
			return nil, bad("tensor %s: %d bytes for %v%v, want %d", e.Name, e.Bytes, dt, e.Shape, want)
		}
		if e.Offset < headerBytes || e.Offset > int64(indexOff) || e.Bytes > int64(indexOff)-e.Offset {
			return nil, bad("tensor %s at [%d, +%d) overlaps the header or the index", e.Name, e.Offset, e.Bytes)
		}
		if _, dup := f.Tensors[e.Name]; dup {
			return nil, bad("tensor %s appears twice", e.Name)
		}
		end := e.Offset + e.Bytes
		f.Tensors[e.Name] = ir.Tensor{DType: dt, Shape: ir.Shape(e.Shape), Data: data[e.Offset:end:end]}
	}
	if err := verify(index.Tensors, f.Tensors); err != nil {
		return nil, bad("%v", err)
	}
	return f, nil
}

// verify compares every tensor's CRC-32C with the index, all CPUs reading.
func verify(entries []TensorEntry, tensors map[string]ir.Tensor) error {
	errs := make([]error, len(entries))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				e := entries[i]
				if crc := crc32.Checksum(tensors[e.Name].Data, castagnoli); crc != e.CRC32C {
					errs[i] = fmt.Errorf("tensor %s fails its checksum (damaged file)", e.Name)
				}
			}
		}()
	}
	for i := range entries {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// Close unmaps the file; its tensors die with it.
func (f *File) Close() error {
	if f.mapping == nil {
		return nil
	}
	err := mmap.Unmap(f.mapping)
	f.mapping = nil
	return err
}
