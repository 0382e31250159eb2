package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// WriteTensor is a tensor for Write.
type WriteTensor struct {
	Name string
	// Dims innermost first, as GGUF stores them (HF's [N, K] is [K, N]).
	Dims []uint64
	Type GGMLType
	Data []byte
}

// Write writes a GGUF v3 file: kv in order, then the tensor infos, then the
// data of each tensor in order, each aligned to general.alignment (a uint32
// entry of kv) or DefaultAlignment. It checks what Parse would reject.
func Write(w io.Writer, kv []KV, tensors []WriteTensor) error {
	align := uint64(DefaultAlignment)
	seen := map[string]bool{}
	for _, e := range kv {
		if seen[e.Key] {
			return fmt.Errorf("gguf write: duplicate key %q", e.Key)
		}
		seen[e.Key] = true
		if e.Key == KeyAlignment {
			a, ok := e.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("gguf write: %s must be a uint32 power of two, is %v", KeyAlignment, e.Value)
			}
			align = uint64(a)
		}
	}
	offsets := make([]uint64, len(tensors))
	var off uint64
	names := map[string]bool{}
	for i, t := range tensors {
		if names[t.Name] {
			return fmt.Errorf("gguf write: duplicate tensor %q", t.Name)
		}
		names[t.Name] = true
		info := TensorInfo{Name: t.Name, Dims: t.Dims, Type: t.Type}
		if len(t.Dims) == 0 || len(t.Dims) > maxDims {
			return fmt.Errorf("gguf write: tensor %q has %d dimensions, want 1 to %d", t.Name, len(t.Dims), maxDims)
		}
		if !t.Type.Known() {
			return fmt.Errorf("gguf write: tensor %q has unknown ggml type %d", t.Name, uint32(t.Type))
		}
		bs := uint64(t.Type.BlockSize())
		if t.Dims[0]%bs != 0 {
			return fmt.Errorf("gguf write: tensor %q: rows of %d are not whole %v blocks", t.Name, t.Dims[0], t.Type)
		}
		if want := info.Elems() / bs * uint64(t.Type.BlockBytes()); uint64(len(t.Data)) != want {
			return fmt.Errorf("gguf write: tensor %q %v %v needs %d bytes, has %d", t.Name, t.Type, t.Dims, want, len(t.Data))
		}
		offsets[i] = off
		off = alignUp(off+uint64(len(t.Data)), align)
	}

	bw := bufio.NewWriter(w)
	e := &encoder{w: bw}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kv)))
	for _, entry := range kv {
		e.str(entry.Key)
		e.u32(uint32(entry.Type))
		if err := e.value(entry.Type, entry.Value); err != nil {
			return fmt.Errorf("gguf write: metadata %s: %w", entry.Key, err)
		}
	}
	for i, t := range tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(offsets[i])
	}
	e.pad(align)
	start := e.n
	for i, t := range tensors {
		e.raw(make([]byte, start+offsets[i]-e.n))
		e.raw(t.Data)
	}
	if e.err != nil {
		return fmt.Errorf("gguf write: %w", e.err)
	}
	return bw.Flush()
}

type encoder struct {
	w   io.Writer
	n   uint64
	err error
	buf [8]byte
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(b)
	e.n += uint64(len(b))
}

func (e *encoder) u8(v uint8) { e.raw([]byte{v}) }
func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], v)
	e.raw(e.buf[:2])
}
func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], v)
	e.raw(e.buf[:4])
}
func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.raw(e.buf[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.raw([]byte(s))
}
func (e *encoder) pad(align uint64) { e.raw(make([]byte, alignUp(e.n, align)-e.n)) }

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// value encodes v, which must have the Go type KV documents for t.
func (e *encoder) value(t ValueType, v any) error {
	bad := func() error { return fmt.Errorf("value %T does not match type %v", v, t) }
	switch t {
	case TypeUint8:
		x, ok := v.(uint8)
		if !ok {
			return bad()
		}
		e.u8(x)
	case TypeInt8:
		x, ok := v.(int8)
		if !ok {
			return bad()
		}
		e.u8(uint8(x))
	case TypeUint16:
		x, ok := v.(uint16)
		if !ok {
			return bad()
		}
		e.u16(x)
	case TypeInt16:
		x, ok := v.(int16)
		if !ok {
			return bad()
		}
		e.u16(uint16(x))
	case TypeUint32:
		x, ok := v.(uint32)
		if !ok {
			return bad()
		}
		e.u32(x)
	case TypeInt32:
		x, ok := v.(int32)
		if !ok {
			return bad()
		}
		e.u32(uint32(x))
	case TypeFloat32:
		x, ok := v.(float32)
		if !ok {
			return bad()
		}
		e.u32(math.Float32bits(x))
	case TypeBool:
		x, ok := v.(bool)
		if !ok {
			return bad()
		}
		e.u8(b2u(x))
	case TypeString:
		x, ok := v.(string)
		if !ok {
			return bad()
		}
		e.str(x)
	case TypeUint64:
		x, ok := v.(uint64)
		if !ok {
			return bad()
		}
		e.u64(x)
	case TypeInt64:
		x, ok := v.(int64)
		if !ok {
			return bad()
		}
		e.u64(uint64(x))
	case TypeFloat64:
		x, ok := v.(float64)
		if !ok {
			return bad()
		}
		e.u64(math.Float64bits(x))
	case TypeArray:
		a, ok := v.(Array)
		if !ok {
			return bad()
		}
		return e.array(a)
	default:
		return fmt.Errorf("unknown value type %d", uint32(t))
	}
	return nil
}

func (e *encoder) array(a Array) error {
	if a.Elem == TypeArray || a.Elem >= numValueTypes {
		return fmt.Errorf("arrays of %v are not supported", a.Elem)
	}
	e.u32(uint32(a.Elem))
	switch v := a.Values.(type) {
	case []uint8:
		return e.elems(a.Elem, TypeUint8, len(v), func(i int) { e.u8(v[i]) })
	case []int8:
		return e.elems(a.Elem, TypeInt8, len(v), func(i int) { e.u8(uint8(v[i])) })
	case []uint16:
		return e.elems(a.Elem, TypeUint16, len(v), func(i int) { e.u16(v[i]) })
	case []int16:
		return e.elems(a.Elem, TypeInt16, len(v), func(i int) { e.u16(uint16(v[i])) })
	case []uint32:
		return e.elems(a.Elem, TypeUint32, len(v), func(i int) { e.u32(v[i]) })
	case []int32:
		return e.elems(a.Elem, TypeInt32, len(v), func(i int) { e.u32(uint32(v[i])) })
	case []float32:
		return e.elems(a.Elem, TypeFloat32, len(v), func(i int) { e.u32(math.Float32bits(v[i])) })
	case []bool:
		return e.elems(a.Elem, TypeBool, len(v), func(i int) { e.u8(b2u(v[i])) })
	case []string:
		return e.elems(a.Elem, TypeString, len(v), func(i int) { e.str(v[i]) })
	case []uint64:
		return e.elems(a.Elem, TypeUint64, len(v), func(i int) { e.u64(v[i]) })
	case []int64:
		return e.elems(a.Elem, TypeInt64, len(v), func(i int) { e.u64(uint64(v[i])) })
	case []float64:
		return e.elems(a.Elem, TypeFloat64, len(v), func(i int) { e.u64(math.Float64bits(v[i])) })
	}
	return fmt.Errorf("array values %T are not a slice of a GGUF type", a.Values)
}

func (e *encoder) elems(declared, actual ValueType, n int, put func(int)) error {
	if declared != actual {
		return fmt.Errorf("array declared of %v holds %vs", declared, actual)
	}
	e.u64(uint64(n))
	for i := 0; i < n; i++ {
		put(i)
	}
	return nil
}
