package cpu

import (
	"fmt"
	"unsafe"

	"github.com/gemmac/gemmac/frontend/mmap"
	"golang.org/x/sys/unix"
)

// region is memory outside the Go heap: native code may keep pointers into
// it and the garbage collector never scans or moves it. Anonymous mappings
// are page-aligned and zeroed.
type region struct {
	mem []byte
}

func allocRegion(bytes int64) (*region, error) {
	if bytes <= 0 {
		bytes = 1
	}
	mem, err := unix.Mmap(-1, 0, int(bytes), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("allocating %d bytes: %w", bytes, err)
	}
	return &region{mem: mem}, nil
}

func (r *region) ptr(off int64) unsafe.Pointer { return unsafe.Pointer(&r.mem[off]) }

func (r *region) free() error {
	if r == nil || r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	return err
}

func (r *region) f32s(off int64, n int) []float32 {
	return unsafe.Slice((*float32)(r.ptr(off)), n)
}

// touch writes every page so the first token does not pay for page faults.
func (r *region) touch() {
	for i := 0; i < len(r.mem); i += 4096 {
		r.mem[i] = 0
	}
}

// allocHuge is allocRegion asking for transparent huge pages (mmap.Anon).
func allocHuge(bytes int64) (*region, error) {
	mem, err := mmap.Anon(int(bytes))
	if err != nil {
		return nil, err
	}
	return &region{mem: mem}, nil
}
