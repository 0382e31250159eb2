// Package cpu runs models compiled by gemmac's CPU code generator: it binds
// the checkpoint's weights, fills the RoPE table, and executes a plan's
// kernel calls, splitting each over a pool of threads.
package cpu

import (
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Kernels are native entry points with the kernel ABI of package codegen:
// void kernel(i8** args, i64 lo, i64 hi).
type Kernels struct {
	fns   []uintptr
	names []string
}

// NewKernels takes the entry points of a linked kernel table (table points at
// n function pointers, as the generated gemmac_kernels symbol does).
func NewKernels(table unsafe.Pointer, names []string) *Kernels {
	fns := unsafe.Slice((*uintptr)(table), len(names))
	return &Kernels{fns: append([]uintptr(nil), fns...), names: names}
}

// LoadKernels opens a shared object built from a kernel module (tests and
// `gemmac run` use this; built binaries link their kernels in).
func LoadKernels(path string, names []string) (*Kernels, error) {
	lib, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("loading kernels %s: %w", path, err)
	}
	k := &Kernels{names: names}
	for _, name := range names {
		fn, err := purego.Dlsym(lib, name)
		if err != nil {
			return nil, fmt.Errorf("kernels %s: %w", path, err)
		}
		k.fns = append(k.fns, fn)
	}
	return k, nil
}

// call runs kernel i on items [lo, hi). args points at off-heap memory.
func (k *Kernels) call(i int, args unsafe.Pointer, lo, hi int64) {
	purego.SyscallN(k.fns[i], uintptr(args), uintptr(lo), uintptr(hi))
}

// index is the table index of the kernel called name, or -1.
func (k *Kernels) index(name string) int {
	for i, n := range k.names {
		if n == name {
			return i
		}
	}
	return -1
}
