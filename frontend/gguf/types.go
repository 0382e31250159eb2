// Package gguf reads and writes GGUF v3 files, the single-file checkpoint
// format of llama.cpp and ggml.
//
// A file is a header (magic "GGUF", version, tensor and key-value counts),
// typed key-value metadata, tensor infos (name, dimensions innermost first,
// ggml type, offset) and, from the next multiple of general.alignment (32 by
// default), the tensor data. Open memory-maps the file and parses the header
// in place; tensor data is never copied into the heap. Parse validates
// everything a reader relies on (sizes, extents, overlaps, types) and reports
// bad input as an error naming what is wrong and where, never a panic.
package gguf

import "fmt"

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version this package reads and writes.
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that overrides DefaultAlignment.
const KeyAlignment = "general.alignment"

// ValueType is the type of a metadata value (gguf_type).
type ValueType uint32

const (
	TypeUint8 ValueType = iota
	TypeInt8
	TypeUint16
	TypeInt16
	TypeUint32
	TypeInt32
	TypeFloat32
	TypeBool
	TypeString
	TypeArray
	TypeUint64
	TypeInt64
	TypeFloat64
	numValueTypes
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32",
	"float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if t < numValueTypes {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("gguf_type(%d)", uint32(t))
}

// size is the encoded size of a fixed-size value, 0 for string and array.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// GGMLType is a tensor's element type (ggml_type).
type GGMLType uint32

// The ggml types with a fixed block layout. Numbers missing here (4, 5, 31–33,
// 36–38) were removed from ggml and are rejected.
const (
	F32     GGMLType = 0
	F16     GGMLType = 1
	Q4_0    GGMLType = 2
	Q4_1    GGMLType = 3
	Q5_0    GGMLType = 6
	Q5_1    GGMLType = 7
	Q8_0    GGMLType = 8
	Q8_1    GGMLType = 9
	Q2_K    GGMLType = 10
	Q3_K    GGMLType = 11
	Q4_K    GGMLType = 12
	Q5_K    GGMLType = 13
	Q6_K    GGMLType = 14
	Q8_K    GGMLType = 15
	IQ2_XXS GGMLType = 16
	IQ2_XS  GGMLType = 17
	IQ3_XXS GGMLType = 18
	IQ1_S   GGMLType = 19
	IQ4_NL  GGMLType = 20
	IQ3_S   GGMLType = 21
	IQ2_S   GGMLType = 22
	IQ4_XS  GGMLType = 23
	I8      GGMLType = 24
	I16     GGMLType = 25
	I32     GGMLType = 26
	I64     GGMLType = 27
	F64     GGMLType = 28
	IQ1_M   GGMLType = 29
	BF16    GGMLType = 30
	TQ1_0   GGMLType = 34
	TQ2_0   GGMLType = 35
	MXFP4   GGMLType = 39
)

// typeTraits is a ggml type's name and block layout: Block elements take
// Bytes bytes, and rows (the first, innermost dimension) are whole blocks.
type typeTraits struct {
	name         string
	block, bytes int
}

var ggmlTypes = map[GGMLType]typeTraits{
	F32: {"f32", 1, 4}, F16: {"f16", 1, 2}, BF16: {"bf16", 1, 2}, F64: {"f64", 1, 8},
	I8: {"i8", 1, 1}, I16: {"i16", 1, 2}, I32: {"i32", 1, 4}, I64: {"i64", 1, 8},
	Q4_0: {"q4_0", 32, 18}, Q4_1: {"q4_1", 32, 20}, Q5_0: {"q5_0", 32, 22}, Q5_1: {"q5_1", 32, 24},
	Q8_0: {"q8_0", 32, 34}, Q8_1: {"q8_1", 32, 36},
	Q2_K: {"q2_K", 256, 84}, Q3_K: {"q3_K", 256, 110}, Q4_K: {"q4_K", 256, 144},
	Q5_K: {"q5_K", 256, 176}, Q6_K: {"q6_K", 256, 210}, Q8_K: {"q8_K", 256, 292},
	IQ2_XXS: {"iq2_xxs", 256, 66}, IQ2_XS: {"iq2_xs", 256, 74}, IQ3_XXS: {"iq3_xxs", 256, 98},
	IQ1_S: {"iq1_s", 256, 50}, IQ4_NL: {"iq4_nl", 32, 18}, IQ3_S: {"iq3_s", 256, 110},
	IQ2_S: {"iq2_s", 256, 82}, IQ4_XS: {"iq4_xs", 256, 136}, IQ1_M: {"iq1_m", 256, 56},
	TQ1_0: {"tq1_0", 256, 54}, TQ2_0: {"tq2_0", 256, 66}, MXFP4: {"mxfp4", 32, 17},
}

func (t GGMLType) String() string {
	if tr, ok := ggmlTypes[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// Known reports whether the package knows t's block layout.
func (t GGMLType) Known() bool { _, ok := ggmlTypes[t]; return ok }

// BlockSize is the number of elements in one block of t (1 for f32).
func (t GGMLType) BlockSize() int { return ggmlTypes[t].block }

// BlockBytes is the size of one block of t in bytes.
func (t GGMLType) BlockBytes() int { return ggmlTypes[t].bytes }

// KV is one metadata entry. Value holds, by Type: uint8, int8, uint16, int16,
// uint32, int32, float32, bool, string, uint64, int64, float64, or for an
// array an Array.
type KV struct {
	Key   string
	Type  ValueType
	Value any
}

// Array is an array value: Values is a typed slice ([]string, []float32,
// []int32, ... or []Array for arrays of arrays) of element type Elem.
type Array struct {
	Elem   ValueType
	Values any
}

// Len is the number of elements.
func (a Array) Len() int {
	switch v := a.Values.(type) {
	case []uint8:
		return len(v)
	case []int8:
		return len(v)
	case []uint16:
		return len(v)
	case []int16:
		return len(v)
	case []uint32:
		return len(v)
	case []int32:
		return len(v)
	case []float32:
		return len(v)
	case []bool:
		return len(v)
	case []string:
		return len(v)
	case []uint64:
		return len(v)
	case []int64:
		return len(v)
	case []float64:
		return len(v)
	case []Array:
		return len(v)
	}
	return 0
}

// TensorInfo describes one tensor.
type TensorInfo struct {
	Name string
	// Dims are the dimensions as GGUF stores them, innermost (contiguous)
	// first: a matrix of N rows of K elements is [K, N].
	Dims []uint64
	Type GGMLType
	// Offset is where the data starts, relative to the data section.
	Offset uint64
	// Size is the data's length in bytes.
	Size uint64
}

// Shape is Dims outermost first, as row-major shapes (and Hugging Face's
// checkpoints) write it: [K, N] becomes [N, K].
func (t *TensorInfo) Shape() []int {
	s := make([]int, len(t.Dims))
	for i, d := range t.Dims {
		s[len(t.Dims)-1-i] = int(d)
	}
	return s
}

// Elems is the number of elements.
func (t *TensorInfo) Elems() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}
