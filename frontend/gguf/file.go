package gguf

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Open memory-maps the GGUF file at path read-only and parses its header in
// place. Tensor data is never read into the heap: Data returns slices of the
// mapping, valid until Close.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	// The mapping stays valid after the descriptor is closed.
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("gguf: %s: not a regular file", path)
	}
	size := st.Size()
	if size < 8 {
		// Mapping zero bytes fails; let the parser name what is missing.
		buf := make([]byte, size)
		if _, err := fd.ReadAt(buf, 0); err != nil {
			return nil, fmt.Errorf("gguf: %s: %w", path, err)
		}
		_, err := parse(buf)
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	if size > math.MaxInt {
		return nil, fmt.Errorf("gguf: %s: file of %d bytes too large to map", path, size)
	}
	mapping, err := unix.Mmap(int(fd.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: mmap: %w", path, err)
	}
	f, err := parse(mapping)
	if err != nil {
		_ = unix.Munmap(mapping)
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	f.path, f.mapped = path, true
	return f, nil
}

// Close unmaps a file from Open; tensor data taken from it must not be used
// afterwards. It is a no-op for Parse's files and on a second call.
func (f *File) Close() error {
	if !f.mapped || f.data == nil {
		return nil
	}
	err := unix.Munmap(f.data)
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
