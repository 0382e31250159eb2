package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

// Elems returns the number of elements of t: the product of its shape, 1 for
// a scalar (empty shape).
func (t Tensor) Elems() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Float32s decodes an F32, BF16 or F16 tensor into a new []float32. The
// conversion is exact: every BF16 and F16 value is representable in F32.
func (t Tensor) Float32s() ([]float32, error) {
	n := t.Elems()
	if size := t.DType.Size(); size == 0 || len(t.Data) != n*size {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: %d bytes of data for shape %v of %s",
			t.File, t.Name, len(t.Data), t.Shape, t.DType)
	}
	// encoding/binary rather than an unsafe cast: Data need not be aligned
	// (tensors are packed back to back) and the cost is negligible next to
	// compilation.
	out := make([]float32, n)
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case BF16:
		// BF16 is the top half of an F32.
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(t.Data[2*i:])) << 16)
		}
	case F16:
		for i := range out {
			out[i] = float16.Frombits(binary.LittleEndian.Uint16(t.Data[2*i:])).Float32()
		}
	default:
		return nil, fmt.Errorf("safetensors: %s: tensor %q: cannot convert %s to float32", t.File, t.Name, t.DType)
	}
	return out, nil
}

// EncodeFloat32s encodes vals as little-endian bytes of dtype F32, BF16 or
// F16, rounding to nearest even where the target is narrower. It is the
// inverse of Tensor.Float32s for values representable in dtype.
func EncodeFloat32s(dtype DType, vals []float32) ([]byte, error) {
	size := dtype.Size()
	switch dtype {
	case F32, BF16, F16:
	default:
		return nil, fmt.Errorf("safetensors: cannot encode float32 as %q", dtype)
	}
	out := make([]byte, len(vals)*size)
	for i, v := range vals {
		switch dtype {
		case F32:
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		case BF16:
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToBF16(v))
		case F16:
			binary.LittleEndian.PutUint16(out[2*i:], float16.Fromfloat32(v).Bits())
		}
	}
	return out, nil
}

// Float32ToBF16 converts v to bfloat16 bits with round-to-nearest-even, as
// PyTorch does. NaNs stay NaN (quieted) instead of rounding to infinity.
func Float32ToBF16(v float32) uint16 {
	b := math.Float32bits(v)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
