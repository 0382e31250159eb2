// Package mmap maps checkpoint and weight files read-only, so tensors are
// slices of the page cache and never copied into the heap.
package mmap

import (
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// ReadOnly maps the regular file at path read-only. A file shorter than
// short bytes is read into the heap instead (mapped is false): mapping zero
// bytes fails, and the callers' parsers report what a short file lacks.
// Errors name the path; callers add the format.
func ReadOnly(path string, short int64) (data []byte, mapped bool, err error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	// The mapping stays valid after the descriptor is closed.
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, false, err
	}
	if !st.Mode().IsRegular() {
		return nil, false, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
	if size < short {
		buf := make([]byte, size)
		if _, err := fd.ReadAt(buf, 0); err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return buf, false, nil
	}
	if size > math.MaxInt {
		return nil, false, fmt.Errorf("%s: file of %d bytes too large to map", path, size)
	}
	data, err = unix.Mmap(int(fd.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, false, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return data, true, nil
}

// Unmap releases a mapping from ReadOnly.
func Unmap(data []byte) error { return unix.Munmap(data) }
