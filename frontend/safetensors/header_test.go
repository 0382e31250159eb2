package safetensors

import (
	"cmp"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// rawFile assembles a file from a JSON header and dataLen zero bytes of data,
// with a correct length prefix.
func rawFile(header string, dataLen int) []byte {
	return rawFileLen(uint64(len(header)), header, dataLen)
}

// rawFileLen is rawFile with an arbitrary (possibly lying) length prefix.
func rawFileLen(n uint64, header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, n)
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

func TestOpenBadInput(t *testing.T) {
	tests := []struct {
		name string
		file []byte
		want []string // substrings the error must contain
	}{
		{"empty file", nil, []string{"shorter than the 8-byte"}},
		{"short file", []byte{1, 2, 3}, []string{"3 bytes", "shorter than the 8-byte"}},
		{"header past EOF", rawFileLen(1000, `{}`, 0), []string{"header length 1000", "past end of file"}},
		{"header absurdly large", rawFileLen(1<<40, `{}`, 0), []string{"exceeds", "limit"}},
		{"invalid JSON", rawFile(`{"a":`, 0), []string{"invalid JSON"}},
		{"JSON null", rawFile(`null`, 0), []string{"not a JSON object"}},
		{"JSON array", rawFile(`[]`, 0), []string{"not a JSON object"}},
		{"trailing garbage", rawFile(`{} x`, 0), []string{"invalid JSON"}},
		{"entry not object", rawFile(`{"w":3}`, 0), []string{`"w"`, "invalid entry"}},
		{"missing dtype", rawFile(`{"w":{"shape":[1],"data_offsets":[0,4]}}`, 4), []string{`"w"`, "missing dtype"}},
		{"missing shape", rawFile(`{"w":{"dtype":"F32","data_offsets":[0,4]}}`, 4), []string{`"w"`, "missing shape"}},
		{"null shape", rawFile(`{"w":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, 4), []string{`"w"`, "missing shape"}},
		{"missing data_offsets", rawFile(`{"w":{"dtype":"F32","shape":[1]}}`, 4), []string{`"w"`, "missing data_offsets"}},
		{"unknown dtype", rawFile(`{"w":{"dtype":"Q4_0","shape":[1],"data_offsets":[0,4]}}`, 4), []string{`"w"`, "unknown dtype", "Q4_0"}},
		{"negative dim", rawFile(`{"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,4]}}`, 4), []string{`"w"`, "negative shape dim -1"}},
		{"overflowing dims", rawFile(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), []string{`"w"`, "overflows"}},
		{"overflowing bytes", rawFile(`{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}}`, 4), []string{`"w"`, "overflows"}},
		{"dim not integer", rawFile(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), []string{`"w"`, "invalid entry"}},
		{"dim beyond int64", rawFile(`{"w":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4]}}`, 4), []string{`"w"`, "invalid entry"}},
		{"offsets wrong length", rawFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, 4), []string{`"w"`, "2 elements"}},
		{"negative offsets", rawFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, 4), []string{`"w"`, "negative data_offsets"}},
		{"begin after end", rawFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`, 8), []string{`"w"`, "begin 8 > end 4"}},
		{"end past data", rawFile(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), []string{`"w"`, "end 8 past end of data buffer (4 bytes)"}},
		{"size mismatch", rawFile(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), []string{`"w"`, "span 8 bytes", "needs 12"}},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12),
			[]string{`"a"`, `"b"`, "overlaps"}},
		{"zero-size inside other", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}`, 8),
			[]string{`"a"`, `"b"`, "overlaps"}},
		{"hole", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}`, 20),
			[]string{"hole", "[8, 12)", `"b"`}},
		{"leading hole", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), []string{"hole", "[0, 4)", `"a"`}},
		{"trailing bytes", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 12), []string{"hole", "trailing bytes [8, 12)"}},
		{"bad metadata", rawFile(`{"__metadata__":{"k":1}}`, 0), []string{"__metadata__", "strings to strings"}},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad"+string(rune('a'+i))+".safetensors")
			if err := os.WriteFile(path, tt.file, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want error containing %q", tt.want)
			}
			for _, w := range append([]string{path}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestOpenMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.safetensors")
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open(missing) = %v, want error naming %s", err, path)
	}
}

func TestParseHeaderValid(t *testing.T) {
	// Deliberately out of order in the JSON, with padding, an empty tensor
	// and a scalar: the result is sorted by name regardless.
	hdr := `{"z":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},` +
		`"__metadata__":{"format":"pt"},` +
		`"e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},` +
		`"a":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}   `
	b := rawFile(hdr, 8)
	h, err := ParseHeader(b, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Metadata["format"]; got != "pt" {
		t.Errorf("metadata format = %q, want pt", got)
	}
	if h.DataOffset != int64(8+len(hdr)) {
		t.Errorf("DataOffset = %d, want %d", h.DataOffset, 8+len(hdr))
	}
	var names []string
	for _, ti := range h.Tensors {
		names = append(names, ti.Name)
	}
	if !slices.Equal(names, []string{"a", "e", "z"}) {
		t.Errorf("names = %v, want [a e z]", names)
	}
	if a := h.Tensors[0]; a.DType != F32 || len(a.Shape) != 0 || a.Begin != 4 || a.End != 8 {
		t.Errorf("a = %+v", a)
	}
}

func TestParseHeaderEmpty(t *testing.T) {
	b := rawFile(`{}`, 0)
	h, err := ParseHeader(b, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Tensors) != 0 || h.Metadata == nil {
		t.Errorf("got %+v, want no tensors and non-nil metadata", h)
	}
}

func TestDTypeSize(t *testing.T) {
	for dt, want := range map[DType]int{F32: 4, BF16: 2, F16: 2, I32: 4, I64: 8, F64: 8, U8: 1, BOOL: 1, F8E4M3: 1, "F4": 0, "": 0, "f32": 0} {
		if got := dt.Size(); got != want {
			t.Errorf("%q.Size() = %d, want %d", dt, got, want)
		}
	}
}

// FuzzParseHeader checks that ParseHeader never panics and that whatever it
// accepts is safe to slice: every range inside the file, none overlapping.
// The fuzzer mutates the JSON; the length prefix is derived from it (unless
// raw is set) so mutations are not all rejected by the length check.
func FuzzParseHeader(f *testing.F) {
	seeds := []string{
		`{}`,
		`{"__metadata__":{"format":"pt"}}`,
		`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`,
		`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]}}`,
		`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`,
		`{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"I8","shape":[],"data_offsets":[0,1]}}`,
		`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}`,
		`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`,
		`{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`,
		`{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`,
		`{"w":{"dtype":"F32"}}`,
		`{"w":`,
		`null`,
	}
	specs := []Spec{{"a", F32, []int{2, 3}}, {"b", BF16, []int{5}}, {"c", F16, nil}}
	sizes := []int64{24, 10, 2}
	valid, err := encodeHeader(specs, sizes, map[string]string{"format": "pt"})
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, string(valid))
	for _, s := range seeds {
		f.Add([]byte(s), uint32(8), false)
		f.Add([]byte(s), uint32(36), false)
		f.Add(rawFile(s, 8), uint32(0), true)
	}
	f.Fuzz(func(t *testing.T, header []byte, dataLen uint32, raw bool) {
		b := header
		if !raw {
			b = rawFile(string(header), 0)
		}
		fileSize := int64(len(b)) + int64(dataLen)
		h, err := ParseHeader(b, fileSize)
		if err != nil {
			return
		}
		if h.DataOffset < 8 || h.DataOffset > fileSize || h.DataOffset > int64(len(b)) {
			t.Fatalf("DataOffset %d outside file of %d bytes", h.DataOffset, fileSize)
		}
		ts := slices.Clone(h.Tensors)
		slices.SortFunc(ts, func(a, b TensorInfo) int { return cmp.Or(cmp.Compare(a.Begin, b.Begin), cmp.Compare(a.End, b.End)) })
		var pos int64
		for _, ti := range ts {
			if ti.Begin < 0 || ti.Begin > ti.End || h.DataOffset+ti.End > fileSize {
				t.Fatalf("tensor %q range [%d, %d) outside file (data at %d, size %d)", ti.Name, ti.Begin, ti.End, h.DataOffset, fileSize)
			}
			if ti.Begin < pos {
				t.Fatalf("tensor %q [%d, %d) overlaps previous ending at %d", ti.Name, ti.Begin, ti.End, pos)
			}
			pos = max(pos, ti.End)
			if ti.DType.Size() == 0 {
				t.Fatalf("tensor %q has unknown dtype %q", ti.Name, ti.DType)
			}
		}
	})
}
