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
)

var dtypeNames = map[DType]string{F32: "f32", BF16: "bf16", F16: "f16", I32: "i32"}

func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the number of bytes one element occupies.
func (d DType) Size() int {
	switch d {
	case F32, I32:
		return 4
	case BF16, F16:
		return 2
	}
	return 0
}

// IsFloat reports whether d holds floating-point numbers.
func (d DType) IsFloat() bool { return d == F32 || d == BF16 || d == F16 }

// ParseDType accepts the names String prints ("f32", "bf16", ...).
func ParseDType(s string) (DType, error) {
	for d, name := range dtypeNames {
		if name == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("unknown dtype %q (want f32, bf16, f16 or i32)", s)
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
