package mmap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestRelease(t *testing.T) {
	const size = 1 << 20
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i*7 + i>>12)
	}
	path := filepath.Join(t.TempDir(), "w")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	data, mapped, err := ReadOnly(path, 8)
	if err != nil || !mapped {
		t.Fatalf("ReadOnly: mapped %v, %v", mapped, err)
	}
	defer Unmap(data)
	if !bytes.Equal(data, want) {
		t.Fatal("mapped data differ from the file")
	}
	resident := func() int64 {
		n, err := Resident(data)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := resident(); n < size {
		t.Fatalf("after reading every page: %d bytes resident, want %d", n, size)
	}
	// Not page-aligned at either end: only the whole pages inside go.
	page := int64(os.Getpagesize())
	Release(data[100 : size-100])
	if n := resident(); n > 2*page {
		t.Errorf("after Release: %d bytes resident, want at most the two partial pages (%d)", n, 2*page)
	}
	if !bytes.Equal(data, want) {
		t.Error("released pages read back different data")
	}
	Release(nil) // nothing to drop
	if _, err := Resident(make([]byte, 1)[:0]); err == nil {
		t.Error("Resident of an empty slice: no error")
	}
}
