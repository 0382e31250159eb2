package ptx

import (
	"strings"
	"testing"

	gir "github.com/gemmac/gemmac/ir"
)

// TestSplitRanges checks the CPU model of the split decode attention: the
// S ranges of a query tile exactly the keys it sees, and the non-empty ones
// are the first used(n) (the only partials the combine reads).
func TestSplitRanges(t *testing.T) {
	for _, S := range []int{2, 3, 4, 32} {
		for _, w := range []int{0, 1, 8, 100, 4096} {
			for i := 0; i < 600; i++ {
				first := 0
				if w > 0 {
					first = max(0, i-w+1)
				}
				next := first
				for s := 0; s < S; s++ {
					lo, hi, used := splitRange(i, w, S, s)
					if (lo < hi) != (s < used) {
						t.Fatalf("S=%d w=%d i=%d s=%d: [%d,%d) but used=%d", S, w, i, s, lo, hi, used)
					}
					if lo < hi {
						if lo != next {
							t.Fatalf("S=%d w=%d i=%d s=%d: starts at %d, want %d", S, w, i, s, lo, next)
						}
						next = hi
					}
				}
				if next != i+1 {
					t.Fatalf("S=%d w=%d i=%d: keys end at %d", S, w, i, next)
				}
			}
		}
	}
	if attnSplits(4096, 2048) != 32 || attnSplits(8, 8) != 2 || attnSplits(0, 64) != 4 {
		t.Errorf("splits %d %d %d", attnSplits(4096, 2048), attnSplits(8, 8), attnSplits(0, 64))
	}
}

// TestMatvecChunks checks the CPU model of the matvec's chunk assignment:
// every chunk of a row is taken exactly once, by the warps of its group,
// and the tail needs no more than U accumulator sets.
func TestMatvecChunks(t *testing.T) {
	for _, U := range []int{4, mvUnroll, 16} {
		testMatvecChunks(t, U)
	}
}

func testMatvecChunks(t *testing.T, mvUnroll int) {
	for _, kw := range []int{1, 2, 4, 8} {
		for nch := 1; nch <= 3000; nch++ {
			seen := make([]int, nch)
			super := 32 * mvUnroll * kw
			full := nch / super
			for wk := 0; wk < kw; wk++ {
				for lane := 0; lane < 32; lane++ {
					for g := 0; g < full; g++ {
						for u := 0; u < mvUnroll; u++ {
							seen[g*super+wk*32*mvUnroll+lane+32*u]++
						}
					}
					rest := nch - full*super
					for u := 0; u*32*kw < rest; u++ {
						if u >= mvUnroll {
							t.Fatalf("kw=%d nch=%d: tail step %d", kw, nch, u)
						}
						c := full*super + u*32*kw + wk*32 + lane
						if (u+1)*32*kw <= rest && c >= nch {
							t.Fatalf("kw=%d nch=%d: unpredicated chunk %d", kw, nch, c)
						}
						if c < nch {
							seen[c]++
						}
					}
				}
			}
			for c, n := range seen {
				if n != 1 {
					t.Fatalf("kw=%d nch=%d: chunk %d taken %d times", kw, nch, c, n)
				}
			}
		}
	}
	for _, c := range []struct{ k, n, kw int }{{2304, 1024, 4}, {9216, 2304, 4}, {2048, 2304, 4}, {2304, 2048, 4}, {2304, 9216, 1}, {2304, 256000, 1}} {
		if got := (Matvec{R: 1, K: c.k, N: c.n, WType: gir.BF16}).kw(); got != c.kw {
			t.Errorf("K=%d N=%d: kw %d, want %d", c.k, c.n, got, c.kw)
		}
	}
}

func TestNormRow(t *testing.T) {
	for _, c := range []struct{ h, vw, nt, per int }{{2304, 4, 576, 1}, {64, 4, 32, 1}, {256, 4, 64, 1}, {8192, 4, 1024, 2}, {30, 1, 32, 1}, {3001, 1, 1024, 3}, {3000, 4, 768, 1}} {
		if l := newNormRow(c.h); l.vw != c.vw || l.nt != c.nt || l.per != c.per || l.nv*l.vw != c.h || l.nt*l.per < l.nv {
			t.Errorf("H=%d: %+v", c.h, l)
		}
	}
}

// TestDecodePlan checks the 2B decode program's structure: split attention
// (partial then combine, no separate cache store), the scratch inside the
// arena and past the graph's values, and the GEMV configurations.
func TestDecodePlan(t *testing.T) {
	cfg, dt := preset2B(t)
	c, err := Build(cfg, dt, Options{Context: 2048, Chunk: 512})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Artifact.Programs["decode"]
	counts := map[string]int{}
	for i, s := range p.Steps {
		name := c.Artifact.Kernels[s.Kernel]
		kind := name[:strings.IndexAny(name, "_0123456789")]
		switch {
		case strings.HasPrefix(name, "attn_partial"):
			kind = "partial"
			if l := c.Launches["decode"][i]; l.Grid != [3]uint32{32, 8, 1} || l.Block[0] != 128 {
				t.Errorf("%s: launch %+v", name, l)
			}
			if s.Args[0].Offset < 0 || s.Args[0].Offset+AttnScratchBytes(8, 256, 32) > p.ArenaBytes {
				t.Errorf("scratch at %d outside the arena of %d", s.Args[0].Offset, p.ArenaBytes)
			}
			if nxt := c.Artifact.Kernels[p.Steps[i+1].Kernel]; !strings.HasPrefix(nxt, "attn_combine") || p.Steps[i+1].Args[1] != s.Args[0] {
				t.Errorf("%s is followed by %s", name, nxt)
			}
		case strings.HasPrefix(name, "attn_combine"):
			kind = "combine"
		case strings.HasPrefix(name, "matvec3_r1_k2304_n4096_bf16_2048_1024_1024"):
			kind = "qkv"
			if l := c.Launches["decode"][i]; l.Grid[0] != 2048 || l.Block[0] != 128 || len(s.Args) != 6 {
				t.Errorf("%s: launch %+v, %d args", name, l, len(s.Args))
			}
			if s.Args[0].Offset+4096*4 > p.ArenaBytes {
				t.Errorf("projection scratch at %d outside the arena", s.Args[0].Offset)
			}
		case strings.HasPrefix(name, "rope2_r1_nh8_4_d256"):
			kind = "rope2"
			q, k := s.Args[1].Offset, s.Args[3].Offset
			if prev := p.Steps[i-1]; k != q+2048*4 || q != prev.Args[0].Offset {
				t.Errorf("%s reads %d and %d after a projection into %d", name, q, k, prev.Args[0].Offset)
			}
			if nxt := p.Steps[i+1]; nxt.Args[3].Offset != q+3072*4 {
				t.Errorf("attention reads v at %d, want %d", nxt.Args[3].Offset, q+3072*4)
			}
		case strings.HasPrefix(name, "kv_store"), strings.HasPrefix(name, "attention"), strings.HasPrefix(name, "rope_"):
			t.Errorf("decode still runs %s", name)
		case strings.HasPrefix(name, "add_rmsnorm"):
			if l := c.Launches["decode"][i]; l.Block[0] != 576 {
				t.Errorf("%s: launch %+v", name, l)
			}
		}
		counts[kind]++
	}
	for i, st := range c.Artifact.Programs["prefill"].Steps {
		name := c.Artifact.Kernels[st.Kernel]
		if strings.HasPrefix(name, "mma_") || strings.HasPrefix(name, "geglu_mma_") {
			if l := c.Launches["prefill"][i]; l.Grid[0] != 8 || l.Grid[1] < 2 || l.Block[0] != 128 {
				t.Errorf("prefill %s: launch %+v", name, l)
			}
		}
	}
	L := cfg.NumHiddenLayers
	if counts["partial"] != L || counts["combine"] != L || counts["qkv"] != L || counts["rope2"] != L || len(p.Steps) != 9*L+3 {
		t.Errorf("kernel counts %v, %d steps", counts, len(p.Steps))
	}
}
