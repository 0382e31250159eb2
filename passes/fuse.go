package passes

import (
	"github.com/gemmac/gemmac/ir"
)

// Fuse merges chains of ops that kernels compute in one pass over memory:
//   - gelu_tanh(x·gateᵀ)·(x·upᵀ) into one GeGLU, which streams both weight
//     rows against the same x;
//   - a residual add of a normalised branch followed by the next RMSNorm
//     into one AddRMSNorm (s = x + norm(a)·w₁; n = norm(s)·w₂);
//   - a softcap after a matmul into the matmul's epilogue (the LM head).
//
// Attention is a single op from the frontend on: q·kᵀ, its scale, the
// softcap, the sliding or causal mask, the f32 softmax and ·V are the
// parameters of one op, which engines compute flash-style.
func Fuse(g *ir.Graph) error {
	for _, fuse := range []func(*ir.Graph) error{fuseGeGLU, fuseAddRMSNorm, fuseSoftcap} {
		if err := fuse(g); err != nil {
			return err
		}
		deadCode(g)
	}
	return nil
}

func fuseGeGLU(g *ir.Graph) error {
	u := users(g)
	for _, m := range append([]*ir.Value(nil), g.Values...) {
		if m.Op != ir.OpMul {
			continue
		}
		gelu, up := m.Args[0], m.Args[1]
		if gelu.Op != ir.OpGeluTanh {
			gelu, up = up, gelu
		}
		if gelu.Op != ir.OpGeluTanh || up.Op != ir.OpMatMul || up.Aux != nil || !singleUse(g, u, gelu) || !singleUse(g, u, up) {
			continue
		}
		gate := gelu.Args[0]
		if gate.Op != ir.OpMatMul || gate.Aux != nil || !singleUse(g, u, gate) || gate.Args[0] != up.Args[0] {
			continue
		}
		fused, err := newValue(ir.OpGeGLU, m.Name, nil, up.Args[0], gate.Args[1], up.Args[1])
		if err != nil {
			return err
		}
		insertBefore(g, m, fused)
		replaceUses(g, m, fused)
	}
	return nil
}

func fuseAddRMSNorm(g *ir.Graph) error {
	u := users(g)
	for _, next := range append([]*ir.Value(nil), g.Values...) {
		if next.Op != ir.OpRMSNorm {
			continue
		}
		sum := next.Args[0]
		if sum.Op != ir.OpAdd {
			continue
		}
		x, post := sum.Args[0], sum.Args[1]
		if post.Op != ir.OpRMSNorm {
			x, post = post, x
		}
		if post.Op != ir.OpRMSNorm || !singleUse(g, u, post) || post.Aux != next.Aux {
			continue
		}
		fused, err := newValue(ir.OpAddRMSNorm, sum.Name, next.Aux, x, post.Args[0], post.Args[1], next.Args[1])
		if err != nil {
			return err
		}
		s, err := newValue(ir.OpPart, sum.Name, ir.Part{Index: 0}, fused)
		if err != nil {
			return err
		}
		n, err := newValue(ir.OpPart, next.Name, ir.Part{Index: 1}, fused)
		if err != nil {
			return err
		}
		insertBefore(g, next, fused, s, n)
		replaceUses(g, next, n)
		replaceUses(g, sum, s)
		u = users(g)
	}
	return nil
}

func fuseSoftcap(g *ir.Graph) error {
	u := users(g)
	for _, c := range g.Values {
		if c.Op != ir.OpSoftcap {
			continue
		}
		mm := c.Args[0]
		if mm.Op != ir.OpMatMul || mm.Aux != nil || !singleUse(g, u, mm) {
			continue
		}
		mm.Aux = ir.MatMul{Softcap: c.Aux.(ir.Scalar).C}
		replaceUses(g, c, mm)
	}
	return nil
}
