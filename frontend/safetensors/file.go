package safetensors

import (
	"fmt"
	"slices"

	"github.com/gemmac/gemmac/frontend/mmap"
)

// Tensor is one tensor of a checkpoint.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	// Data is the tensor's raw little-endian bytes. For tensors obtained from
	// an open File it is a slice of the read-only memory mapping: writing to
	// it faults, and it must not be used after the File is closed.
	Data []byte
	// File is the path of the file the tensor was read from, for messages.
	File string
}

// File is one memory-mapped .safetensors file.
type File struct {
	path     string
	mapping  []byte // the whole file; nil once closed
	metadata map[string]string
	tensors  []Tensor // sorted by name
	byName   map[string]int
}

// Open memory-maps the safetensors file at path read-only and validates its
// header. The file is never read into the heap: the header is parsed from the
// mapping and tensor data aliases it.
func Open(path string) (*File, error) {
	mapping, mapped, err := mmap.ReadOnly(path, 8)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	// A file shorter than 8 bytes is read, not mapped, and always fails
	// ParseHeader, which names what is missing.
	h, err := ParseHeader(mapping, int64(len(mapping)))
	if err != nil {
		if mapped {
			_ = mmap.Unmap(mapping)
		}
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}

	f := &File{
		path:     path,
		mapping:  mapping,
		metadata: h.Metadata,
		tensors:  make([]Tensor, len(h.Tensors)),
		byName:   make(map[string]int, len(h.Tensors)),
	}
	for i, ti := range h.Tensors {
		lo, hi := h.DataOffset+ti.Begin, h.DataOffset+ti.End
		f.tensors[i] = Tensor{
			Name:  ti.Name,
			DType: ti.DType,
			Shape: ti.Shape,
			// Cap the slice so an append can never reach a neighbour's bytes.
			Data: mapping[lo:hi:hi],
			File: path,
		}
		f.byName[ti.Name] = i
	}
	return f, nil
}

// Path returns the path the file was opened from.
func (f *File) Path() string { return f.path }

// Tensors returns all tensors sorted by name. The slice is a copy; the Shape
// and Data of each tensor are shared and must not be modified.
func (f *File) Tensors() []Tensor { return slices.Clone(f.tensors) }

// Names returns the tensor names, sorted.
func (f *File) Names() []string {
	names := make([]string, len(f.tensors))
	for i, t := range f.tensors {
		names[i] = t.Name
	}
	return names
}

// Tensor returns the named tensor.
func (f *File) Tensor(name string) (Tensor, bool) {
	i, ok := f.byName[name]
	if !ok {
		return Tensor{}, false
	}
	return f.tensors[i], true
}

// Metadata returns the file's "__metadata__" map (empty if absent). It must
// not be modified.
func (f *File) Metadata() map[string]string { return f.metadata }

// Close unmaps the file. Tensor data obtained from f must not be accessed
// afterwards. Closing twice is a no-op.
func (f *File) Close() error {
	if f.mapping == nil {
		return nil
	}
	m := f.mapping
	f.mapping = nil
	if err := mmap.Unmap(m); err != nil {
		return fmt.Errorf("safetensors: %s: munmap: %w", f.path, err)
	}
	return nil
}
