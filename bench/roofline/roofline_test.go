package roofline

import (
	"path/filepath"
	"testing"
)

// TestMeasure checks the probes run and give physically sensible numbers:
// some GB/s of bandwidth, and an FMA rate between one scalar FMA per
// nanosecond and the widest vector unit at 6 GHz.
func TestMeasure(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 256 MiB eight times")
	}
	m, err := Measure(2, filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", m)
	if m.ReadGBs < 0.5 || m.ReadGBs > 2000 {
		t.Errorf("read bandwidth %.1f GB/s is implausible", m.ReadGBs)
	}
	if m.FMAGFLOP < 2 || m.FMAGFLOP > 2*2*16*2*6 {
		t.Errorf("FMA rate %.1f GFLOP/s is implausible for 2 threads", m.FMAGFLOP)
	}
	p, err := Open(2, filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := p.ReadSample()
	if err != nil {
		t.Fatal(err)
	}
	if s < 0.5 || s > 2000 {
		t.Errorf("read sample %.1f GB/s is implausible", s)
	}
}
