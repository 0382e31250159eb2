package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
)

// maxDims is GGML_MAX_DIMS: a tensor has 1 to 4 dimensions.
const maxDims = 4

// File is a parsed GGUF file. Tensor data aliases the bytes it was parsed
// from (for Open, a read-only memory mapping).
type File struct {
	Version uint32
	// Alignment is general.alignment, or DefaultAlignment.
	Alignment int
	// KV is the metadata in file order.
	KV []KV
	// Tensors are the tensor infos in file order.
	Tensors []TensorInfo
	// DataOffset is where the data section starts in the file.
	DataOffset uint64
	// HeaderSize is the number of bytes the header, metadata and tensor
	// infos take (DataOffset less the alignment padding).
	HeaderSize uint64

	path     string // for messages; "" for Parse
	data     []byte
	mapped   bool
	kvIndex  map[string]int
	tensorIx map[string]int
}

// ErrMissingKey is wrapped by the accessors' error for an absent key.
var ErrMissingKey = errors.New("missing metadata key")

// reader decodes little-endian values from a byte slice, reporting
// truncation as an error with the offset and what was being read.
type reader struct {
	b   []byte
	off int
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) need(n uint64, what string) error {
	if n > uint64(r.left()) {
		return fmt.Errorf("truncated header: %s at byte %d needs %d bytes, only %d left", what, r.off, n, r.left())
	}
	return nil
}

func (r *reader) bytes(n int, what string) ([]byte, error) {
	if err := r.need(uint64(n), what); err != nil {
		return nil, err
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b, nil
}

func (r *reader) u8(what string) (uint8, error) {
	b, err := r.bytes(1, what)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *reader) u16(what string) (uint16, error) {
	b, err := r.bytes(2, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (r *reader) u32(what string) (uint32, error) {
	b, err := r.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) u64(what string) (uint64, error) {
	b, err := r.bytes(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// str reads a u64 length and that many bytes.
func (r *reader) str(what string) (string, error) {
	at := r.off
	n, err := r.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(r.left()) {
		return "", fmt.Errorf("%s at byte %d: length %d runs past the end of the file (%d bytes left)", what, at, n, r.left())
	}
	b, _ := r.bytes(int(n), what)
	return string(b), nil
}

// Parse parses a whole GGUF file held in data and validates every tensor's
// extent against it. The returned File's tensor data aliases data.
func Parse(data []byte) (*File, error) {
	f, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	return f, nil
}

func parse(data []byte) (*File, error) {
	r := &reader{b: data}
	magic, err := r.bytes(4, "magic")
	if err != nil {
		return nil, err
	}
	if string(magic) != Magic {
		return nil, fmt.Errorf("not a GGUF file: magic %q, want %q", magic, Magic)
	}
	version, err := r.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version == Version:
	case version == 1 || version == 2:
		return nil, fmt.Errorf("GGUF version %d is not supported (gemmac reads version 3; convert the model again with a current llama.cpp)", version)
	case bits.ReverseBytes32(version) <= Version:
		return nil, fmt.Errorf("big-endian GGUF (version %d byte-swapped) is not supported", bits.ReverseBytes32(version))
	default:
		return nil, fmt.Errorf("unknown GGUF version %d (gemmac reads version 3)", version)
	}
	nTensors, err := r.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := r.u64("metadata count")
	if err != nil {
		return nil, err
	}
	// Each entry takes a minimum number of bytes, so a count the file cannot
	// hold is caught before anything is allocated for it.
	const minKV, minTensor = 8 + 4 + 1, 8 + 4 + 8 + 4 + 8
	if nKV > uint64(r.left())/minKV {
		return nil, fmt.Errorf("metadata count %d is impossible: the file has %d bytes left for them", nKV, r.left())
	}
	if nTensors > uint64(r.left())/minTensor {
		return nil, fmt.Errorf("tensor count %d is impossible: the file has %d bytes left for them", nTensors, r.left())
	}

	f := &File{
		Version:   version,
		Alignment: DefaultAlignment,
		KV:        make([]KV, 0, nKV),
		Tensors:   make([]TensorInfo, 0, nTensors),
		data:      data,
		kvIndex:   make(map[string]int, nKV),
		tensorIx:  make(map[string]int, nTensors),
	}
	for i := uint64(0); i < nKV; i++ {
		at := r.off
		kv, err := readKV(r, i)
		if err != nil {
			return nil, err
		}
		if _, dup := f.kvIndex[kv.Key]; dup {
			return nil, fmt.Errorf("metadata entry %d at byte %d: duplicate key %q", i, at, kv.Key)
		}
		if kv.Key == KeyAlignment {
			a, ok := kv.Value.(uint32)
			if !ok {
				return nil, fmt.Errorf("metadata %s at byte %d is %v, want uint32", kv.Key, at, kv.Type)
			}
			if a == 0 || a&(a-1) != 0 || a > 1<<30 {
				return nil, fmt.Errorf("metadata %s is %d, want a power of two", kv.Key, a)
			}
			f.Alignment = int(a)
		}
		f.kvIndex[kv.Key] = len(f.KV)
		f.KV = append(f.KV, kv)
	}
	for i := uint64(0); i < nTensors; i++ {
		t, err := readTensorInfo(r, i, f.Alignment)
		if err != nil {
			return nil, err
		}
		if j, dup := f.tensorIx[t.Name]; dup {
			return nil, fmt.Errorf("tensor %d: duplicate name %q (also tensor %d)", i, t.Name, j)
		}
		f.tensorIx[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	f.HeaderSize = uint64(r.off)
	f.DataOffset = alignUp(uint64(r.off), uint64(f.Alignment))
	return f, f.checkExtents()
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

func readKV(r *reader, i uint64) (KV, error) {
	at := r.off
	where := fmt.Sprintf("metadata entry %d", i)
	key, err := r.str(where + " key")
	if err != nil {
		return KV{}, err
	}
	where = fmt.Sprintf("metadata %q", key)
	t, err := r.u32(where + " type")
	if err != nil {
		return KV{}, err
	}
	vt := ValueType(t)
	if vt >= numValueTypes {
		return KV{}, fmt.Errorf("%s at byte %d: unknown value type %d", where, at, t)
	}
	v, err := readValue(r, vt, where)
	if err != nil {
		return KV{}, err
	}
	return KV{Key: key, Type: vt, Value: v}, nil
}

func readValue(r *reader, t ValueType, where string) (any, error) {
	switch t {
	case TypeUint8:
		return r.u8(where)
	case TypeInt8:
		v, err := r.u8(where)
		return int8(v), err
	case TypeUint16:
		return r.u16(where)
	case TypeInt16:
		v, err := r.u16(where)
		return int16(v), err
	case TypeUint32:
		return r.u32(where)
	case TypeInt32:
		v, err := r.u32(where)
		return int32(v), err
	case TypeFloat32:
		v, err := r.u32(where)
		return math.Float32frombits(v), err
	case TypeBool:
		at := r.off
		v, err := r.u8(where)
		if err == nil && v > 1 {
			return nil, fmt.Errorf("%s at byte %d: bool is %d, want 0 or 1", where, at, v)
		}
		return v == 1, err
	case TypeString:
		return r.str(where)
	case TypeUint64:
		return r.u64(where)
	case TypeInt64:
		v, err := r.u64(where)
		return int64(v), err
	case TypeFloat64:
		v, err := r.u64(where)
		return math.Float64frombits(v), err
	case TypeArray:
		return readArray(r, where)
	}
	return nil, fmt.Errorf("%s: unknown value type %d", where, uint32(t))
}

func readArray(r *reader, where string) (Array, error) {
	at := r.off
	et, err := r.u32(where + " array type")
	if err != nil {
		return Array{}, err
	}
	elem := ValueType(et)
	switch {
	case elem >= numValueTypes:
		return Array{}, fmt.Errorf("%s at byte %d: array of unknown value type %d", where, at, et)
	case elem == TypeArray:
		return Array{}, fmt.Errorf("%s at byte %d: arrays of arrays are not supported", where, at)
	}
	n, err := r.u64(where + " array length")
	if err != nil {
		return Array{}, err
	}
	minSize := uint64(elem.size())
	if elem == TypeString {
		minSize = 8
	}
	if n > uint64(r.left())/minSize {
		return Array{}, fmt.Errorf("%s at byte %d: array of %d %vs runs past the end of the file (%d bytes left)", where, at, n, elem, r.left())
	}
	a := Array{Elem: elem}
	if elem == TypeString {
		s := make([]string, n)
		for i := range s {
			if s[i], err = r.str(fmt.Sprintf("%s[%d]", where, i)); err != nil {
				return Array{}, err
			}
		}
		a.Values = s
		return a, nil
	}
	b, _ := r.bytes(int(n*minSize), where)
	le := binary.LittleEndian
	switch elem {
	case TypeUint8:
		a.Values = append(make([]uint8, 0, n), b...)
	case TypeInt8:
		v := make([]int8, n)
		for i := range v {
			v[i] = int8(b[i])
		}
		a.Values = v
	case TypeBool:
		v := make([]bool, n)
		for i := range v {
			if b[i] > 1 {
				return Array{}, fmt.Errorf("%s[%d]: bool is %d, want 0 or 1", where, i, b[i])
			}
			v[i] = b[i] == 1
		}
		a.Values = v
	case TypeUint16:
		a.Values = decode(b, 2, le.Uint16)
	case TypeInt16:
		a.Values = decode(b, 2, func(b []byte) int16 { return int16(le.Uint16(b)) })
	case TypeUint32:
		a.Values = decode(b, 4, le.Uint32)
	case TypeInt32:
		a.Values = decode(b, 4, func(b []byte) int32 { return int32(le.Uint32(b)) })
	case TypeFloat32:
		a.Values = decode(b, 4, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) })
	case TypeUint64:
		a.Values = decode(b, 8, le.Uint64)
	case TypeInt64:
		a.Values = decode(b, 8, func(b []byte) int64 { return int64(le.Uint64(b)) })
	case TypeFloat64:
		a.Values = decode(b, 8, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) })
	}
	return a, nil
}

// decode reads len(b)/size little-endian values of one fixed size.
func decode[T any](b []byte, size int, read func([]byte) T) []T {
	v := make([]T, len(b)/size)
	for i := range v {
		v[i] = read(b[size*i:])
	}
	return v
}

func readTensorInfo(r *reader, i uint64, alignment int) (TensorInfo, error) {
	at := r.off
	name, err := r.str(fmt.Sprintf("tensor info %d name", i))
	if err != nil {
		return TensorInfo{}, err
	}
	where := fmt.Sprintf("tensor %q (info %d at byte %d)", name, i, at)
	nd, err := r.u32(where + " dimension count")
	if err != nil {
		return TensorInfo{}, err
	}
	if nd == 0 || nd > maxDims {
		return TensorInfo{}, fmt.Errorf("%s: %d dimensions, want 1 to %d", where, nd, maxDims)
	}
	t := TensorInfo{Name: name, Dims: make([]uint64, nd)}
	for d := range t.Dims {
		if t.Dims[d], err = r.u64(fmt.Sprintf("%s dimension %d", where, d)); err != nil {
			return TensorInfo{}, err
		}
		if t.Dims[d] == 0 || t.Dims[d] > math.MaxInt64 {
			return TensorInfo{}, fmt.Errorf("%s: dimension %d is %d", where, d, int64(t.Dims[d]))
		}
	}
	typ, err := r.u32(where + " type")
	if err != nil {
		return TensorInfo{}, err
	}
	t.Type = GGMLType(typ)
	if !t.Type.Known() {
		return TensorInfo{}, fmt.Errorf("%s: unsupported ggml type %d", where, typ)
	}
	if t.Offset, err = r.u64(where + " offset"); err != nil {
		return TensorInfo{}, err
	}
	if t.Offset%uint64(alignment) != 0 {
		return TensorInfo{}, fmt.Errorf("%s: data offset %d is not a multiple of the alignment %d", where, t.Offset, alignment)
	}
	// Element count and byte size, refusing anything that overflows int64
	// (Go indexes with int).
	elems := uint64(1)
	for d, n := range t.Dims {
		hi, lo := bits.Mul64(elems, n)
		if hi != 0 || lo > math.MaxInt64 {
			return TensorInfo{}, fmt.Errorf("%s: dimensions %v overflow (at dimension %d)", where, t.Dims, d)
		}
		elems = lo
	}
	block := uint64(t.Type.BlockSize())
	if t.Dims[0]%block != 0 {
		return TensorInfo{}, fmt.Errorf("%s: rows of %d elements are not whole %v blocks of %d", where, t.Dims[0], t.Type, block)
	}
	hi, size := bits.Mul64(elems/block, uint64(t.Type.BlockBytes()))
	if hi != 0 || size > math.MaxInt64 {
		return TensorInfo{}, fmt.Errorf("%s: dimensions %v overflow the %v data size", where, t.Dims, t.Type)
	}
	t.Size = size
	return t, nil
}

// checkExtents checks that every tensor's data lies inside the file and that
// no two tensors overlap.
func (f *File) checkExtents() error {
	avail := uint64(0)
	if n := uint64(len(f.data)); n > f.DataOffset {
		avail = n - f.DataOffset
	}
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
		t := &f.Tensors[i]
		if t.Offset > avail || t.Size > avail-t.Offset {
			return fmt.Errorf("tensor %q: data [%d, %d) of the data section at byte %d runs past the end of the file (%d bytes; truncated?)",
				t.Name, t.Offset, t.Offset+t.Size, f.DataOffset, len(f.data))
		}
	}
	sort.Slice(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	for k := 1; k < len(order); k++ {
		p, t := &f.Tensors[order[k-1]], &f.Tensors[order[k]]
		if p.Offset+p.Size > t.Offset {
			return fmt.Errorf("tensors %q [%d, %d) and %q [%d, %d) overlap", p.Name, p.Offset, p.Offset+p.Size, t.Name, t.Offset, t.Offset+t.Size)
		}
	}
	return nil
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tensorIx[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// Data is the tensor's bytes: a slice of the mapping (read-only for Open),
// capped so an append cannot reach a neighbour. It is invalid after Close.
func (f *File) Data(t *TensorInfo) []byte {
	lo := f.DataOffset + t.Offset
	hi := lo + t.Size
	return f.data[lo:hi:hi]
}

// Path is the file's path ("" for Parse).
func (f *File) Path() string { return f.path }

// Get returns the metadata entry for key.
func (f *File) Get(key string) (KV, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return KV{}, false
	}
	return f.KV[i], true
}

// Has reports whether key is present.
func (f *File) Has(key string) bool { _, ok := f.kvIndex[key]; return ok }

func (f *File) lookup(key string) (KV, error) {
	kv, ok := f.Get(key)
	if !ok {
		return KV{}, fmt.Errorf("%w %s", ErrMissingKey, key)
	}
	return kv, nil
}

// Uint returns an unsigned or non-negative integer value as uint64.
func (f *File) Uint(key string) (uint64, error) {
	kv, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	var v int64
	switch x := kv.Value.(type) {
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case uint64:
		return x, nil
	case int8:
		v = int64(x)
	case int16:
		v = int64(x)
	case int32:
		v = int64(x)
	case int64:
		v = x
	default:
		return 0, fmt.Errorf("metadata %s is %v, want an integer", key, kv.Type)
	}
	if v < 0 {
		return 0, fmt.Errorf("metadata %s is %d, want a non-negative integer", key, v)
	}
	return uint64(v), nil
}

// Int returns an integer value that fits in an int, for sizes and ids.
func (f *File) Int(key string) (int, error) {
	v, err := f.Uint(key)
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt32 {
		return 0, fmt.Errorf("metadata %s is %d, too large", key, v)
	}
	return int(v), nil
}

// Float returns a float32 or float64 value as float64. A float32 is widened
// through its shortest decimal form, so 1e-6 stored as float32 reads 1e-06,
// not 9.99999997e-07: the number the converter was given.
func (f *File) Float(key string) (float64, error) {
	kv, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	switch x := kv.Value.(type) {
	case float32:
		return shortest(x), nil
	case float64:
		return x, nil
	}
	return 0, fmt.Errorf("metadata %s is %v, want a float", key, kv.Type)
}

// String returns a string value.
func (f *File) String(key string) (string, error) {
	kv, err := f.lookup(key)
	if err != nil {
		return "", err
	}
	s, ok := kv.Value.(string)
	if !ok {
		return "", fmt.Errorf("metadata %s is %v, want a string", key, kv.Type)
	}
	return s, nil
}

// Bool returns a bool value.
func (f *File) Bool(key string) (bool, error) {
	kv, err := f.lookup(key)
	if err != nil {
		return false, err
	}
	b, ok := kv.Value.(bool)
	if !ok {
		return false, fmt.Errorf("metadata %s is %v, want a bool", key, kv.Type)
	}
	return b, nil
}

func (f *File) array(key string, elem ValueType) (any, error) {
	kv, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	a, ok := kv.Value.(Array)
	if !ok || a.Elem != elem {
		got := kv.Type.String()
		if ok {
			got = "array of " + a.Elem.String()
		}
		return nil, fmt.Errorf("metadata %s is %s, want an array of %v", key, got, elem)
	}
	return a.Values, nil
}

// Strings returns an array of strings.
func (f *File) Strings(key string) ([]string, error) {
	v, err := f.array(key, TypeString)
	if err != nil {
		return nil, err
	}
	return v.([]string), nil
}

// Float32s returns an array of float32.
func (f *File) Float32s(key string) ([]float32, error) {
	v, err := f.array(key, TypeFloat32)
	if err != nil {
		return nil, err
	}
	return v.([]float32), nil
}

// Int32s returns an array of int32 (as token types are stored).
func (f *File) Int32s(key string) ([]int32, error) {
	v, err := f.array(key, TypeInt32)
	if err != nil {
		return nil, err
	}
	return v.([]int32), nil
}
