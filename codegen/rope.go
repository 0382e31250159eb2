package codegen

import (
	"fmt"

	"github.com/llir/llvm/ir/value"
)

// Rope applies rotate-half rotary embeddings (and a scale) per head:
// for i < D/2, a = x[i], b = x[i+D/2], p = pos + row:
// out[i] = (a·cos − b·sin)·scale, out[i+D/2] = (b·cos + a·sin)·scale,
// with cos = cs[p·D + i], sin = cs[p·D + D/2 + i].
//
// With Rows, row r is at its own position, p = pos[r] of the batch scalars
// (a batched decode step: see rowPos).
//
// Args: out f32[R×NH×D] (may alias x), x f32[R×NH×D], cs f32[P×D], scalars.
// Items: R·NH (item = row·NH + head); rows ≥ n_valid are skipped.
type Rope struct {
	R, NH, D int
	Scale    float64
	Rows     bool
}

func (s Rope) Name() string {
	n := fmt.Sprintf("rope_r%d_nh%d_d%d_scale%s", s.R, s.NH, s.D, fname(s.Scale))
	if s.Rows {
		n += "_rows"
	}
	return n
}
func (s Rope) Items() int64   { return int64(s.R * s.NH) }
func (s Rope) Granule() int64 { return 1 }
func (s Rope) Args() []string { return []string{"out", "x", "cs", "scalars"} }
func (s Rope) Validate() error {
	if err := positive("R, NH and D", s.R, s.NH, s.D); err != nil {
		return err
	}
	if s.D%2 != 0 {
		return fmt.Errorf("head dim D=%d must be even", s.D)
	}
	return nil
}

func (s Rope) emit(g *gen) {
	out, x, cs := g.argPtr(0, tF32), g.argPtr(1, tF32), g.argPtr(2, tF32)
	pos, nvalid := g.scalars(3)
	half := s.D / 2
	sc := cf(g.vf(), s.Scale)
	end := g.smin(g.hi, g.mulc(nvalid, int64(s.NH)))
	g.forRange(g.lo, end, 1, func(item value.Value) {
		row := g.b.NewSDiv(item, ci64(int64(s.NH)))
		var p value.Value
		if s.Rows {
			p = g.rowPos(3, row)
		} else {
			p = g.add(pos, row)
		}
		csb := g.mulc(p, int64(s.D))
		base := g.mulc(item, int64(s.D))
		g.vecLoop(half, nil, func(off, mask value.Value, _ []value.Value) []value.Value {
			ia := g.add(base, off)
			ib := g.addc(ia, int64(half))
			a := g.loadF(x, ia, mask)
			b := g.loadF(x, ib, mask)
			ic := g.add(csb, off)
			cos := g.loadF(cs, ic, mask)
			sin := g.loadF(cs, g.addc(ic, int64(half)), mask)
			oa := g.fsub(g.fmul(a, cos), g.fmul(b, sin))
			ob := g.fma(a, sin, g.fmul(b, cos))
			g.storeVec(g.fmul(oa, sc), out, ia, mask)
			g.storeVec(g.fmul(ob, sc), out, ib, mask)
			return nil
		})
	})
}

// RoPE is another name for Rope (codegen/cpu uses it).
type RoPE = Rope
