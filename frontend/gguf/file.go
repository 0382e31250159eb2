package gguf

import (
	"fmt"
	"strconv"

	"github.com/gemmac/gemmac/frontend/mmap"
)

// Open memory-maps the GGUF file at path read-only and parses its header in
// place. Tensor data is never read into the heap: Data returns slices of the
// mapping, valid until Close.
func Open(path string) (*File, error) {
	data, mapped, err := mmap.ReadOnly(path, 8)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := parse(data)
	if err != nil {
		if mapped {
			_ = mmap.Unmap(data)
		}
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	f.path, f.mapped = path, mapped
	return f, nil
}

// Close unmaps a file from Open; tensor data taken from it must not be used
// afterwards. It is a no-op for Parse's files and on a second call.
func (f *File) Close() error {
	if !f.mapped || f.data == nil {
		return nil
	}
	err := mmap.Unmap(f.data)
	f.data = nil
	if err != nil {
		return fmt.Errorf("gguf: %s: munmap: %w", f.path, err)
	}
	return nil
}

// shortest widens a float32 through its shortest decimal representation.
func shortest(x float32) float64 {
	v, err := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
	if err != nil {
		return float64(x)
	}
	return v
}
