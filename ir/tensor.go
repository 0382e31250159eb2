package ir

import (
	"fmt"
	"unsafe"
)

// Tensor is host data bound to a weight: raw little-endian bytes of DType,
// usually a read-only slice of a memory-mapped checkpoint.
type Tensor struct {
	DType DType
	Shape Shape
	Data  []byte
}

// Check reports whether the data length fits the dtype and shape (for the
// quantised dtypes: whole blocks per row).
func (t Tensor) Check() error {
	want, err := t.DType.TensorBytes(t.Shape)
	if err != nil {
		return err
	}
	if len(t.Data) != want {
		return fmt.Errorf("%v%v needs %d bytes, has %d", t.DType, t.Shape, want, len(t.Data))
	}
	return nil
}

// F32s views the data of an F32 tensor as []float32 without copying when the
// bytes are aligned (mmapped checkpoints are), else copies.
func (t Tensor) F32s() []float32 { return viewAs[float32](t.Data) }

// U16s views BF16 or F16 data as raw 16-bit words.
func (t Tensor) U16s() []uint16 { return viewAs[uint16](t.Data) }

func viewAs[T float32 | uint16](b []byte) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	n := len(b) / size
	if n == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%uintptr(size) == 0 {
		return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]T, n)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), n*size), b)
	return out
}

// Float32s decodes any float or quantised tensor into a new []float32.
func (t Tensor) Float32s() ([]float32, error) {
	if err := t.Check(); err != nil {
		return nil, err
	}
	out := make([]float32, t.Shape.Elems())
	return out, t.DecodeInto(out)
}

// DecodeInto decodes any float or quantised tensor into dst, which holds
// its t.Shape.Elems() values.
func (t Tensor) DecodeInto(dst []float32) error {
	if err := t.Check(); err != nil {
		return err
	}
	if len(dst) != t.Shape.Elems() {
		return fmt.Errorf("decoding %v%v into %d floats", t.DType, t.Shape, len(dst))
	}
	switch t.DType {
	case F32:
		copy(dst, t.F32s())
		return nil
	case BF16, F16:
		widen := BF16ToF32
		if t.DType == F16 {
			widen = F16ToF32
		}
		for i, w := range t.U16s() {
			dst[i] = widen(w)
		}
		return nil
	case Q8_0, Q4_0:
		return DequantizeRow(t.DType, t.Data, dst)
	}
	return fmt.Errorf("cannot decode %v as floats", t.DType)
}
