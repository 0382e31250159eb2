package codegen

import (
	"fmt"

	"github.com/llir/llvm/ir/value"
)

// ElemOp is the operation of an Elementwise kernel.
type ElemOp int

const (
	OpAdd     ElemOp = iota + 1 // out = a + b
	OpMul                       // out = a · b
	OpScale                     // out = a · C
	OpSoftcap                   // out = C · tanh(a / C)
	OpGelu                      // out = gelu_tanh(a)
)

var elemOpNames = map[ElemOp]string{OpAdd: "add", OpMul: "mul", OpScale: "scale", OpSoftcap: "softcap", OpGelu: "gelu_tanh"}

func (o ElemOp) String() string {
	if s, ok := elemOpNames[o]; ok {
		return s
	}
	return fmt.Sprintf("elemop(%d)", int(o))
}

// Binary reports whether the op reads a second input b.
func (o ElemOp) Binary() bool { return o == OpAdd || o == OpMul }

// Elementwise is a generic f32 element-wise kernel (fallback lowering).
//
// Args: out f32[N], a f32[N] (and b f32[N] for add/mul); out may alias a or b.
// Items: N elements.
type Elementwise struct {
	N  int
	Op ElemOp
	C  float64 // constant of scale/softcap
}

func (s Elementwise) Name() string {
	n := fmt.Sprintf("ew_%s_n%d", s.Op, s.N)
	if s.Op == OpScale || s.Op == OpSoftcap {
		n += "_c" + fname(s.C)
	}
	return n
}
func (s Elementwise) Items() int64   { return int64(s.N) }
func (s Elementwise) Granule() int64 { return 16 }
func (s Elementwise) Args() []string {
	if s.Op.Binary() {
		return []string{"out", "a", "b"}
	}
	return []string{"out", "a"}
}
func (s Elementwise) Validate() error {
	if _, ok := elemOpNames[s.Op]; !ok {
		return fmt.Errorf("unknown op %d", int(s.Op))
	}
	if s.Op == OpSoftcap && s.C <= 0 {
		return fmt.Errorf("softcap constant must be > 0")
	}
	return positive("N", s.N)
}

func (s Elementwise) apply(g *gen, a, b value.Value) value.Value {
	switch s.Op {
	case OpAdd:
		return g.fadd(a, b)
	case OpMul:
		return g.fmul(a, b)
	case OpScale:
		return g.fmulc(a, s.C)
	case OpSoftcap:
		return g.softcap(a, s.C)
	default:
		return g.gelu(a)
	}
}

func (s Elementwise) emit(g *gen) {
	out, a := g.argPtr(0, tF32), g.argPtr(1, tF32)
	var b value.Value
	if s.Op.Binary() {
		b = g.argPtr(2, tF32)
	}
	L := int64(g.L())
	hi := g.smin(g.hi, ci64(int64(s.N)))
	i := g.forRange(g.lo, g.addc(hi, -(L-1)), L, func(i value.Value) {
		av := g.loadF(a, i, nil)
		var bv value.Value
		if b != nil {
			bv = g.loadF(b, i, nil)
		}
		g.storeVec(s.apply(g, av, bv), out, i, nil)
	})
	g.forRange(i, hi, 1, func(i value.Value) {
		av := g.load(tF32, a, i)
		var bv value.Value
		if b != nil {
			bv = g.load(tF32, b, i)
		}
		g.store(s.apply(g, av, bv), out, i)
	})
}
