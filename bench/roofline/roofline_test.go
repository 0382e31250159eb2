package roofline

import (
	"path/filepath"
	"testing"
)

// TestProbe checks the probes run and give physically sensible numbers:
// some GB/s of bandwidth (one pass, and a sample), and an FMA rate between
// one scalar FMA per nanosecond and the widest vector unit at 6 GHz.
func TestProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 256 MiB four times")
	}
	p, err := Open(2, filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	read, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	if read < 0.5 || read > 2000 {
		t.Errorf("read bandwidth %.1f GB/s is implausible", read)
	}
	if fma := p.FMA(); fma < 2 || fma > 2*2*16*2*6 {
		t.Errorf("FMA rate %.1f GFLOP/s is implausible for 2 threads", fma)
	}
	s, err := p.ReadSample()
	if err != nil {
		t.Fatal(err)
	}
	if s < 0.5 || s > 2000 {
		t.Errorf("read sample %.1f GB/s is implausible", s)
	}
}
