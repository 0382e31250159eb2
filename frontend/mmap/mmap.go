// Package mmap maps checkpoint and weight files read-only, so tensors are
// slices of the page cache and never copied into the heap.
package mmap

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"unsafe"

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

// Unmap releases a mapping from ReadOnly or Anon.
func Unmap(data []byte) error { return unix.Munmap(data) }

// Anon maps n bytes of zeroed anonymous memory outside the Go heap, asking
// for transparent huge pages: weights read through 2 MiB pages stream at
// full memory bandwidth, through 4 KiB pages the TLB misses cost most of it.
// Native code may keep pointers into it; Unmap frees it.
func Anon(n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("allocating %d bytes: not a positive size", n)
	}
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("allocating %d bytes: %w", n, err)
	}
	unix.Madvise(mem, unix.MADV_HUGEPAGE) // advisory: fine if refused
	return mem, nil
}

// Release drops the whole pages of b, a slice of a mapping from ReadOnly,
// from the process's resident set once their data has been copied or
// converted elsewhere. They stay in the page cache and fault back in if read
// again; b must not be heap memory, whose pages the kernel would zero.
func Release(b []byte) {
	if len(b) == 0 {
		return
	}
	page := os.Getpagesize()
	skip := (page - int(uintptr(unsafe.Pointer(&b[0]))%uintptr(page))) % page
	if pages := (len(b) - skip) / page; pages > 0 {
		unix.Madvise(b[skip:skip+pages*page], unix.MADV_DONTNEED)
	}
}

// Resident is how many bytes of the mapping that holds b are in the
// process's resident set, from /proc/self/smaps (Linux): what Release
// drops, for checking that it did.
func Resident(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("mmap.Resident: empty slice")
	}
	addr := uint64(uintptr(unsafe.Pointer(&b[0])))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				in = start <= addr && addr < end
				continue
			}
		}
		if in && fields[0] == "Rss:" && len(fields) >= 2 {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			return kb << 10, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("mmap.Resident: no mapping holds %#x", addr)
}
