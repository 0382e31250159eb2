package codegen

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/value"
)

// Embed is out[r] = table[ids[r]] · scale.
//
// Args: out f32[R×H], table TType[V×H], ids i32[R], scalars. Items: rows
// (< n_valid). Ids are validated by the runtime. TType may be q8_0 or q4_0
// (H a multiple of 32): rows are dequantised, then scaled.
type Embed struct {
	R, H, V int
	TType   gir.DType
	Scale   float64
}

func (s Embed) Name() string {
	return fmt.Sprintf("embed_r%d_h%d_v%d_%s_scale%s", s.R, s.H, s.V, s.TType, fname(s.Scale))
}
func (s Embed) Items() int64   { return int64(s.R) }
func (s Embed) Granule() int64 { return 1 }
func (s Embed) Args() []string { return []string{"out", "table", "ids", "scalars"} }
func (s Embed) Validate() error {
	if err := positive("R, H and V", s.R, s.H, s.V); err != nil {
		return err
	}
	if s.TType.IsQuantized() {
		return checkQuant(s.TType, s.H)
	}
	return checkWeightType(s.TType)
}

func (s Embed) emit(g *gen) {
	if s.TType.IsQuantized() {
		emitQEmbed(g, s)
		return
	}
	out := g.argPtr(0, tF32)
	table := g.argPtr(1, elemType(s.TType))
	ids := g.argPtr(2, tI32)
	_, nvalid := g.scalars(3)
	sc := cf(g.vf(), s.Scale)
	g.forRange(g.lo, g.smin(g.hi, nvalid), 1, func(r value.Value) {
		id := g.b.NewSExt(g.load(tI32, ids, r), tI64)
		src := g.mulc(id, int64(s.H))
		dst := g.mulc(r, int64(s.H))
		g.vecLoop(s.H, nil, func(off, mask value.Value, _ []value.Value) []value.Value {
			v := g.loadVec(s.TType, g.L(), table, g.add(src, off), mask)
			g.storeVec(g.fmul(v, sc), out, g.add(dst, off), mask)
			return nil
		})
	})
}
