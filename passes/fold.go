package passes

import (
	"fmt"

	"github.com/gemmac/gemmac/ir"
)

// Fold moves constants into the ops and weights that can absorb them:
//   - the +1 of Gemma's RMSNorm scale into the weight, materialised at load
//     (Derived), so norms compute x·rsqrt(...)·w;
//   - the embedding's sqrt(hidden) into the gather;
//   - the query's 1/sqrt(query_pre_attn_scalar) into the query's RoPE, so
//     attention computes plain q·kᵀ.
func Fold(g *ir.Graph) error {
	u := users(g)
	for _, v := range g.Values {
		switch v.Op {
		case ir.OpRMSNorm:
			if err := foldNormOffset(u, v); err != nil {
				return err
			}
		case ir.OpScale:
			foldEmbedScale(g, u, v)
		case ir.OpAttention:
			foldQueryScale(g, u, v)
		}
	}
	deadCode(g)
	return nil
}

func foldNormOffset(u map[*ir.Value][]*ir.Value, norm *ir.Value) error {
	a := norm.Aux.(ir.RMSNorm)
	w := norm.Args[1]
	if a.Offset == 0 || w.Op != ir.OpWeight {
		return nil
	}
	if _, derived := w.Aux.(ir.Derived); derived {
		return fmt.Errorf("%v: weight %q is already derived", norm, w.Name)
	}
	for _, user := range u[w] {
		if user.Op != ir.OpRMSNorm || user.Aux.(ir.RMSNorm).Offset != a.Offset {
			return nil // shared with something else: leave it be
		}
	}
	w.Aux = ir.Derived{Offset: a.Offset}
	w.DType = ir.F32
	for _, user := range u[w] {
		ua := user.Aux.(ir.RMSNorm)
		ua.Offset = 0
		user.Aux = ua
	}
	return nil
}

func foldEmbedScale(g *ir.Graph, u map[*ir.Value][]*ir.Value, s *ir.Value) {
	e := s.Args[0]
	if e.Op != ir.OpEmbed || !singleUse(g, u, e) {
		return
	}
	factor := s.Aux.(ir.Scalar).C
	if a, ok := e.Aux.(ir.Embed); ok {
		factor *= a.Factor()
	}
	e.Aux = ir.Embed{Scale: factor}
	replaceUses(g, s, e)
}

func foldQueryScale(g *ir.Graph, u map[*ir.Value][]*ir.Value, attn *ir.Value) {
	a := attn.Aux.(ir.Attention)
	q := attn.Args[0]
	if a.Scale == 1 || q.Op != ir.OpRoPE || !singleUse(g, u, q) {
		return
	}
	r := q.Aux.(ir.RoPE)
	r.Scale = r.Factor() * a.Scale
	q.Aux = r
	a.Scale = 1
	attn.Aux = a
}
