// Package safetensors reads and writes checkpoints in the Hugging Face
// safetensors format.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// JSON header, then a data buffer. The header maps each tensor name to its
// dtype, shape and [begin, end) byte range inside the data buffer; the
// optional "__metadata__" entry maps strings to strings.
//
// Files are memory-mapped read-only, so opening a multi-gigabyte checkpoint
// costs no heap and tensor data is paged in lazily by the kernel.
package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// MaxHeaderSize is the largest JSON header accepted, in bytes. It matches the
// limit of the reference Rust implementation and keeps a corrupt length
// prefix from making us trust (or allocate) gigabytes of "header".
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header entry holding free-form string metadata.
const metadataKey = "__metadata__"

// DType is a tensor element type, spelled as in the file ("F32", "BF16", ...).
type DType string

// Element types defined by the safetensors format.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

// Size returns the size of one element in bytes, or 0 for an unknown dtype.
// Sub-byte types (e.g. F4) are deliberately unknown: their byte size is not
// elems*size, and no Gemma checkpoint uses them.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E4M3, F8E5M2:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// TensorInfo describes one tensor as listed in a header.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are byte offsets relative to the start of the data
	// buffer, i.e. relative to Header.DataOffset in the file.
	Begin, End int64
}

// Header is a parsed and validated safetensors header.
type Header struct {
	// Tensors sorted by name.
	Tensors []TensorInfo
	// Metadata from the "__metadata__" entry; never nil.
	Metadata map[string]string
	// DataOffset is the absolute file offset of the data buffer (8 + N).
	DataOffset int64
}

// rawInfo is the JSON shape of one tensor entry. Pointers distinguish a
// missing field from a zero value.
type rawInfo struct {
	DType   *string  `json:"dtype"`
	Shape   *[]int64 `json:"shape"`
	Offsets *[]int64 `json:"data_offsets"`
}

// ParseHeader parses and validates the header of a safetensors file. b holds
// the beginning of the file (at least the 8-byte length prefix and the JSON
// header; it may hold more, e.g. the whole mapping) and fileSize is the size
// of the whole file.
//
// On success every tensor's range lies within the data buffer, ranges do not
// overlap, and together they cover the data buffer without holes, as the
// format requires. Errors do not name the file; callers add that.
func ParseHeader(b []byte, fileSize int64) (Header, error) {
	if fileSize < 8 {
		return Header{}, fmt.Errorf("file is %d bytes, shorter than the 8-byte header length prefix", fileSize)
	}
	if len(b) < 8 {
		return Header{}, fmt.Errorf("header truncated: have %d bytes, need the 8-byte length prefix", len(b))
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if n > MaxHeaderSize {
		return Header{}, fmt.Errorf("header length %d exceeds the %d byte limit (corrupt or not a safetensors file)", n, MaxHeaderSize)
	}
	dataOffset := 8 + int64(n)
	if dataOffset > fileSize {
		return Header{}, fmt.Errorf("header length %d runs past end of file (%d bytes)", n, fileSize)
	}
	if int64(len(b)) < dataOffset {
		return Header{}, fmt.Errorf("header truncated: have %d bytes, header length says %d", len(b)-8, n)
	}
	js := b[8:dataOffset]
	// The format requires a JSON object; checking explicitly also rejects
	// "null", which encoding/json would happily decode into a nil map.
	if t := bytes.TrimLeft(js, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Header{}, fmt.Errorf("invalid JSON header: not a JSON object")
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(js, &entries); err != nil {
		return Header{}, fmt.Errorf("invalid JSON header: %v", err)
	}

	h := Header{Metadata: map[string]string{}, DataOffset: dataOffset}
	dataLen := fileSize - dataOffset
	for name, raw := range entries {
		if name == metadataKey {
			if err := json.Unmarshal(raw, &h.Metadata); err != nil {
				return Header{}, fmt.Errorf("invalid %s: must map strings to strings: %v", metadataKey, err)
			}
			if h.Metadata == nil { // "__metadata__": null
				h.Metadata = map[string]string{}
			}
			continue
		}
		ti, err := parseTensorInfo(name, raw, dataLen)
		if err != nil {
			return Header{}, fmt.Errorf("tensor %q: %w", name, err)
		}
		h.Tensors = append(h.Tensors, ti)
	}
	if err := checkLayout(h.Tensors, dataLen); err != nil {
		return Header{}, err
	}
	slices.SortFunc(h.Tensors, func(a, b TensorInfo) int { return cmp.Compare(a.Name, b.Name) })
	return h, nil
}

// parseTensorInfo validates one tensor entry in isolation: fields present,
// known dtype, sane shape, and a byte range inside the data buffer whose
// length matches the shape.
func parseTensorInfo(name string, raw json.RawMessage, dataLen int64) (TensorInfo, error) {
	var ri rawInfo
	if err := json.Unmarshal(raw, &ri); err != nil {
		return TensorInfo{}, fmt.Errorf("invalid entry: %v", err)
	}
	switch {
	case ri.DType == nil:
		return TensorInfo{}, fmt.Errorf("missing dtype")
	case ri.Shape == nil:
		return TensorInfo{}, fmt.Errorf("missing shape")
	case ri.Offsets == nil:
		return TensorInfo{}, fmt.Errorf("missing data_offsets")
	}
	dt := DType(*ri.DType)
	size := dt.Size()
	if size == 0 {
		return TensorInfo{}, fmt.Errorf("unknown dtype %q", *ri.DType)
	}

	shape := make([]int, len(*ri.Shape))
	elems := int64(1)
	for i, d := range *ri.Shape {
		if d < 0 {
			return TensorInfo{}, fmt.Errorf("negative shape dim %d in %v", d, *ri.Shape)
		}
		if int64(int(d)) != d { // only matters where int is 32 bits
			return TensorInfo{}, fmt.Errorf("shape dim %d overflows int", d)
		}
		if d != 0 && elems > math.MaxInt64/d {
			return TensorInfo{}, fmt.Errorf("shape %v overflows: too many elements", *ri.Shape)
		}
		elems *= d
		shape[i] = int(d)
	}
	if elems > math.MaxInt64/int64(size) {
		return TensorInfo{}, fmt.Errorf("shape %v overflows: byte size too large", *ri.Shape)
	}
	nbytes := elems * int64(size)

	offs := *ri.Offsets
	if len(offs) != 2 {
		return TensorInfo{}, fmt.Errorf("data_offsets must have 2 elements, got %d", len(offs))
	}
	begin, end := offs[0], offs[1]
	switch {
	case begin < 0 || end < 0:
		return TensorInfo{}, fmt.Errorf("negative data_offsets [%d, %d]", begin, end)
	case begin > end:
		return TensorInfo{}, fmt.Errorf("data_offsets begin %d > end %d", begin, end)
	case end > dataLen:
		return TensorInfo{}, fmt.Errorf("data_offsets end %d past end of data buffer (%d bytes)", end, dataLen)
	case end-begin != nbytes:
		return TensorInfo{}, fmt.Errorf("data_offsets [%d, %d] span %d bytes, but shape %v of %s needs %d",
			begin, end, end-begin, shape, dt, nbytes)
	}
	return TensorInfo{Name: name, DType: dt, Shape: shape, Begin: begin, End: end}, nil
}

// checkLayout verifies that the tensors tile the data buffer exactly: no
// overlaps (which would let one tensor's writes alias another) and no holes
// or trailing bytes (the spec requires the buffer be entirely indexed, so a
// gap signals a corrupt or truncated header).
func checkLayout(ts []TensorInfo, dataLen int64) error {
	byBegin := slices.Clone(ts)
	slices.SortFunc(byBegin, func(a, b TensorInfo) int {
		return cmp.Or(cmp.Compare(a.Begin, b.Begin), cmp.Compare(a.End, b.End), cmp.Compare(a.Name, b.Name))
	})
	var pos int64
	prev := ""
	for _, t := range byBegin {
		switch {
		case t.Begin < pos:
			return fmt.Errorf("tensor %q [%d, %d) overlaps tensor %q ending at %d", t.Name, t.Begin, t.End, prev, pos)
		case t.Begin > pos:
			return fmt.Errorf("hole in data buffer: bytes [%d, %d) before tensor %q are not covered by any tensor", pos, t.Begin, t.Name)
		}
		// Zero-size tensors leave pos and prev as they are, so an overlap
		// report still names the tensor that actually owns the bytes.
		if t.End > pos {
			pos, prev = t.End, t.Name
		}
	}
	if pos != dataLen {
		return fmt.Errorf("hole in data buffer: trailing bytes [%d, %d) are not covered by any tensor", pos, dataLen)
	}
	return nil
}
