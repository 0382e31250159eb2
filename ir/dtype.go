package ir

import (
	"fmt"
	"math"

	"github.com/x448/float16"
)

// DType is the element type of a value.
type DType uint8

const (
	F32 DType = iota + 1
	BF16
	F16
	I32
	// Q8_0 and Q4_0 are llama.cpp's block-quantised weight types (GGUF
	// layouts, 32 weights per block; see quant.go). They hold weights only,
	// never activations, and a block never straddles a row.
	Q8_0
	Q4_0
)

var dtypeNames = map[DType]string{F32: "f32", BF16: "bf16", F16: "f16", I32: "i32", Q8_0: "q8_0", Q4_0: "q4_0"}

func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the number of bytes one element occupies. It is 0 for unknown
// dtypes and for the block-quantised ones, whose elements take a fraction of
// a byte each: use BytesFor or TensorBytes to size data of any dtype.
func (d DType) Size() int {
	switch d {
	case F32, I32:
		return 4
	case BF16, F16:
		return 2
	}
	return 0
}

// Known reports whether d is one of the dtypes above.
func (d DType) Known() bool { _, ok := dtypeNames[d]; return ok }

// IsQuantized reports whether d stores weights in blocks with a shared scale.
func (d DType) IsQuantized() bool { return d == Q8_0 || d == Q4_0 }

// BlockSize is the number of elements one block holds: QK for the quantised
// dtypes, 1 for the others.
func (d DType) BlockSize() int {
	if d.IsQuantized() {
		return QK
	}
	return 1
}

// BlockBytes is the number of bytes one block occupies (Size for the
// unquantised dtypes).
func (d DType) BlockBytes() int {
	switch d {
	case Q8_0:
		return q8Block
	case Q4_0:
		return q4Block
	}
	return d.Size()
}

// BytesFor is the number of bytes elems elements occupy, or -1 when elems is
// negative, not a whole number of blocks or d is unknown.
func (d DType) BytesFor(elems int) int {
	bs, bb := d.BlockSize(), d.BlockBytes()
	if bb == 0 || elems < 0 || elems%bs != 0 {
		return -1
	}
	return elems / bs * bb
}

// TensorBytes is the size of a tensor of d with the given shape. Blocks of
// the quantised dtypes never straddle rows, so the last dimension must be a
// whole number of blocks.
func (d DType) TensorBytes(s Shape) (int, error) {
	if !d.Known() {
		return 0, fmt.Errorf("unknown dtype %v", d)
	}
	if bs := d.BlockSize(); bs > 1 && (len(s) == 0 || s.Last()%bs != 0) {
		return 0, fmt.Errorf("%v%v: rows must be whole blocks of %d elements", d, s, bs)
	}
	return d.BytesFor(s.Elems()), nil
}

// IsFloat reports whether d holds floating-point numbers (unquantised).
func (d DType) IsFloat() bool { return d == F32 || d == BF16 || d == F16 }

// ParseDType accepts the names String prints ("f32", "bf16", ...).
func ParseDType(s string) (DType, error) {
	for d, name := range dtypeNames {
		if name == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("unknown dtype %q (want f32, bf16, f16, i32, q8_0 or q4_0)", s)
}

// BF16ToF32 widens a bfloat16: it is the top half of an f32.
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F32ToBF16 rounds to the nearest bfloat16, ties to even, keeping NaN a NaN.
func F32ToBF16(f float32) uint16 {
	bits := math.Float32bits(f)
	if f != f {
		return uint16(bits>>16) | 0x40
	}
	rounding := uint32(0x7fff) + (bits>>16)&1
	return uint16((bits + rounding) >> 16)
}

// RoundTo rounds f to the nearest value representable in d.
func RoundTo(f float32, d DType) float32 {
	switch d {
	case BF16:
		return BF16ToF32(F32ToBF16(f))
	case F16:
		return float16.Fromfloat32(f).Float32()
	}
	return f
}

// F16ToF32 widens an IEEE half.
func F16ToF32(h uint16) float32 { return float16.Frombits(h).Float32() }

// F32ToF16 rounds to the nearest IEEE half.
func F32ToF16(f float32) uint16 { return float16.Fromfloat32(f).Bits() }
