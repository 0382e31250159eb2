package ir

import "fmt"

// Op is what a value computes. Every op except the leaves (input, weight,
// const) works on f32 activations; weights may be any float dtype.
type Op uint8

const (
	OpInvalid Op = iota
	// Leaves.
	OpInput  // a run-time input: token ids, or an i32 scalar (pos, n_valid)
	OpWeight // a checkpoint tensor bound by Name
	OpConst  // data computed at build time (Aux *Const)
	// Model ops.
	OpEmbed     // (table [V,H], ids i32[T]) → [T,H]: gather rows
	OpMatMul    // (x [..,K], w [N,K]) → [..,N]: x·wᵀ, w in checkpoint layout
	OpRMSNorm   // (x [..,H], w [H]) → x (Aux RMSNorm)
	OpRoPE      // (x [T,N,D], pos) → x rotated for positions pos..pos+T-1, or pos[t] per row (Aux RoPE)
	OpAttention // (q [T,Hq,D], k [T,Hkv,D], v [T,Hkv,D], pos, n_valid) → [T,Hq,D] (Aux Attention); see PerRow
	OpSelectRow // (x [T,H], n_valid) → [1,H]: the last valid row
	// Elementwise and shape ops.
	OpAdd      // (a, b) same shape
	OpMul      // (a, b) same shape
	OpScale    // x·C (Aux Scalar)
	OpSoftcap  // C·tanh(x/C) (Aux Scalar)
	OpGeluTanh // the tanh approximation of GELU
	OpSoftmax  // over the last axis
	OpReshape  // same elements, new shape (Aux Reshape)
	// Fused ops, made by the passes.
	OpGeGLU      // (x [..,K], gate [F,K], up [F,K]) → [..,F]: gelu_tanh(x·gateᵀ)·(x·upᵀ)
	OpAddRMSNorm // (x, a, w_post [H], w_next [H]) → [2,..]: s = x + rmsnorm(a)·w_post, then (s, rmsnorm(s)·w_next)
	OpPart       // (tuple [N,..]) → [..]: part Aux Part of a fused op's results, a view
	numOps
)

// Reshape is the target shape of OpReshape.
type Reshape struct{ To Shape }

func (a Reshape) String() string { return "to=" + a.To.String() }

type opInfo struct {
	name string
	// arity is the number of args; -1 for leaves, which take none and whose
	// shape is declared rather than inferred.
	arity int
	// infer computes the result's shape and dtype from the args and Aux, or
	// says why they are ill-typed. Both the builder and the verifier use it.
	infer func(args []*Value, aux Aux) (Shape, DType, error)
}

var opTable = [numOps]opInfo{
	OpInput:      {"input", -1, nil},
	OpWeight:     {"weight", -1, nil},
	OpConst:      {"const", -1, nil},
	OpEmbed:      {"embed", 2, inferEmbed},
	OpMatMul:     {"matmul", 2, inferMatMul},
	OpRMSNorm:    {"rmsnorm", 2, inferRMSNorm},
	OpRoPE:       {"rope", 2, inferRoPE},
	OpAttention:  {"attention", 5, inferAttention},
	OpSelectRow:  {"select_row", 2, inferSelectRow},
	OpAdd:        {"add", 2, inferBinary},
	OpMul:        {"mul", 2, inferBinary},
	OpScale:      {"scale", 1, inferScalarUnary},
	OpSoftcap:    {"softcap", 1, inferScalarUnary},
	OpGeluTanh:   {"gelu_tanh", 1, inferUnary},
	OpSoftmax:    {"softmax", 1, inferUnary},
	OpReshape:    {"reshape", 1, inferReshape},
	OpGeGLU:      {"geglu", 3, inferGeGLU},
	OpAddRMSNorm: {"add_rmsnorm", 4, inferAddRMSNorm},
	OpPart:       {"part", 1, inferPart},
}

// IsView reports whether the op's result shares its argument's storage.
func (o Op) IsView() bool { return o == OpReshape || o == OpPart }

func (o Op) String() string {
	if o > OpInvalid && o < numOps {
		return opTable[o].name
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// IsLeaf reports whether the op takes no args and declares its shape.
func (o Op) IsLeaf() bool { return o > OpInvalid && o < numOps && opTable[o].arity < 0 }

func wantF32(what string, v *Value) error {
	if v.DType != F32 {
		return fmt.Errorf("%s %v is %v, want f32", what, v, v.DType)
	}
	return nil
}

func wantFloat(what string, v *Value) error {
	if !v.DType.IsFloat() {
		return fmt.Errorf("%s %v is %v, want a float type", what, v, v.DType)
	}
	return nil
}

func wantScalarI32(what string, v *Value) error {
	if v.DType != I32 || len(v.Shape) != 0 {
		return fmt.Errorf("%s %v is %v%v, want an i32 scalar", what, v, v.DType, v.Shape)
	}
	return nil
}

// PerRow reports whether pos, the position argument of OpRoPE or
// OpAttention, is an i32[T] vector rather than a scalar. A scalar is the
// position of a chunk's first token, the chunk being consecutive tokens of
// one sequence. A vector makes every row its own sequence — one token at
// position pos[t] — as in a batched decode step: RoPE rotates row t for
// pos[t], and attention reads and writes row t's own KV cache.
func PerRow(pos *Value) bool { return len(pos.Shape) == 1 }

// wantPositions checks pos for a chunk of tokens rows: an i32 scalar, or
// i32[tokens] (PerRow).
func wantPositions(pos *Value, tokens int) error {
	if pos.DType == I32 && (len(pos.Shape) == 0 || len(pos.Shape) == 1 && pos.Shape[0] == tokens) {
		return nil
	}
	return fmt.Errorf("pos %v is %v%v, want an i32 scalar or i32[%d]", pos, pos.DType, pos.Shape, tokens)
}

func wantRank(what string, v *Value, rank int) error {
	if len(v.Shape) != rank {
		return fmt.Errorf("%s %v has shape %v, want rank %d", what, v, v.Shape, rank)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func inferEmbed(args []*Value, aux Aux) (Shape, DType, error) {
	if _, ok := aux.(Embed); aux != nil && !ok {
		return nil, 0, fmt.Errorf("aux is %T, want Embed or none", aux)
	}
	table, ids := args[0], args[1]
	if err := firstErr(wantWeight("table", table), wantRank("table", table, 2), wantRank("ids", ids, 1)); err != nil {
		return nil, 0, err
	}
	if ids.DType != I32 {
		return nil, 0, fmt.Errorf("ids %v is %v, want i32", ids, ids.DType)
	}
	return Shape{ids.Shape[0], table.Shape[1]}, F32, nil
}

func inferMatMul(args []*Value, aux Aux) (Shape, DType, error) {
	if _, ok := aux.(MatMul); aux != nil && !ok {
		return nil, 0, fmt.Errorf("aux is %T, want MatMul or none", aux)
	}
	x, w := args[0], args[1]
	if err := firstErr(wantF32("x", x), wantWeight("w", w), wantRank("w", w, 2)); err != nil {
		return nil, 0, err
	}
	if len(x.Shape) == 0 || x.Shape.Last() != w.Shape[1] {
		return nil, 0, fmt.Errorf("x %v%v and w %v%v: inner dimensions differ", x, x.Shape, w, w.Shape)
	}
	out := append(Shape{}, x.Shape[:len(x.Shape)-1]...)
	return append(out, w.Shape[0]), F32, nil
}

func inferRMSNorm(args []*Value, aux Aux) (Shape, DType, error) {
	x, w := args[0], args[1]
	if _, ok := aux.(RMSNorm); !ok {
		return nil, 0, fmt.Errorf("aux is %T, want RMSNorm", aux)
	}
	if err := firstErr(wantF32("x", x), wantFloat("w", w), wantRank("w", w, 1)); err != nil {
		return nil, 0, err
	}
	if x.Shape.Last() != w.Shape[0] {
		return nil, 0, fmt.Errorf("x %v%v and weight %v%v differ in the last dimension", x, x.Shape, w, w.Shape)
	}
	return x.Shape, F32, nil
}

func inferRoPE(args []*Value, aux Aux) (Shape, DType, error) {
	x, pos := args[0], args[1]
	if _, ok := aux.(RoPE); !ok {
		return nil, 0, fmt.Errorf("aux is %T, want RoPE", aux)
	}
	if err := firstErr(wantF32("x", x), wantRank("x", x, 3)); err != nil {
		return nil, 0, err
	}
	if err := wantPositions(pos, x.Shape[0]); err != nil {
		return nil, 0, err
	}
	if x.Shape[2]%2 != 0 {
		return nil, 0, fmt.Errorf("x %v has odd head dimension %d", x, x.Shape[2])
	}
	return x.Shape, F32, nil
}

func inferAttention(args []*Value, aux Aux) (Shape, DType, error) {
	q, k, v := args[0], args[1], args[2]
	a, ok := aux.(Attention)
	if !ok {
		return nil, 0, fmt.Errorf("aux is %T, want Attention", aux)
	}
	if err := firstErr(
		wantF32("q", q), wantF32("k", k), wantF32("v", v),
		wantRank("q", q, 3), wantRank("k", k, 3), wantRank("v", v, 3),
		wantScalarI32("n_valid", args[4])); err != nil {
		return nil, 0, err
	}
	if err := wantPositions(args[3], q.Shape[0]); err != nil {
		return nil, 0, err
	}
	if !k.Shape.Equal(v.Shape) {
		return nil, 0, fmt.Errorf("k %v%v and v %v%v differ", k, k.Shape, v, v.Shape)
	}
	if q.Shape[0] != k.Shape[0] || q.Shape[2] != k.Shape[2] {
		return nil, 0, fmt.Errorf("q %v%v and k %v%v differ in tokens or head dim", q, q.Shape, k, k.Shape)
	}
	if k.Shape[1] == 0 || q.Shape[1]%k.Shape[1] != 0 {
		return nil, 0, fmt.Errorf("%d query heads do not group over %d kv heads", q.Shape[1], k.Shape[1])
	}
	if a.CacheLen <= 0 || a.Window < 0 || (a.Window > 0 && a.CacheLen < min(a.Window, a.CacheLen)) {
		return nil, 0, fmt.Errorf("bad cache length %d for window %d", a.CacheLen, a.Window)
	}
	if a.Window == 0 && !PerRow(args[3]) && a.CacheLen < q.Shape[0] {
		return nil, 0, fmt.Errorf("cache of %d slots is shorter than the chunk of %d tokens", a.CacheLen, q.Shape[0])
	}
	return q.Shape, F32, nil
}

func inferSelectRow(args []*Value, _ Aux) (Shape, DType, error) {
	x := args[0]
	if err := firstErr(wantF32("x", x), wantRank("x", x, 2), wantScalarI32("n_valid", args[1])); err != nil {
		return nil, 0, err
	}
	return Shape{1, x.Shape[1]}, F32, nil
}

func inferBinary(args []*Value, _ Aux) (Shape, DType, error) {
	a, b := args[0], args[1]
	if err := firstErr(wantF32("a", a), wantF32("b", b)); err != nil {
		return nil, 0, err
	}
	if !a.Shape.Equal(b.Shape) {
		return nil, 0, fmt.Errorf("operands %v%v and %v%v differ in shape", a, a.Shape, b, b.Shape)
	}
	return a.Shape, F32, nil
}

func inferUnary(args []*Value, _ Aux) (Shape, DType, error) {
	if err := wantF32("x", args[0]); err != nil {
		return nil, 0, err
	}
	return args[0].Shape, F32, nil
}

func inferScalarUnary(args []*Value, aux Aux) (Shape, DType, error) {
	if _, ok := aux.(Scalar); !ok {
		return nil, 0, fmt.Errorf("aux is %T, want Scalar", aux)
	}
	return inferUnary(args, aux)
}

func inferReshape(args []*Value, aux Aux) (Shape, DType, error) {
	r, ok := aux.(Reshape)
	if !ok {
		return nil, 0, fmt.Errorf("aux is %T, want Reshape", aux)
	}
	if r.To.Elems() != args[0].Shape.Elems() {
		return nil, 0, fmt.Errorf("cannot reshape %v%v to %v", args[0], args[0].Shape, r.To)
	}
	return r.To, args[0].DType, nil
}

func inferGeGLU(args []*Value, _ Aux) (Shape, DType, error) {
	gate, up := args[1], args[2]
	if !gate.Shape.Equal(up.Shape) {
		return nil, 0, fmt.Errorf("gate %v%v and up %v%v differ", gate, gate.Shape, up, up.Shape)
	}
	return inferMatMul(args[:2], nil)
}

func inferAddRMSNorm(args []*Value, aux Aux) (Shape, DType, error) {
	x, a := args[0], args[1]
	if _, _, err := inferBinary([]*Value{x, a}, nil); err != nil {
		return nil, 0, err
	}
	for _, w := range args[2:] {
		if _, _, err := inferRMSNorm([]*Value{x, w}, aux); err != nil {
			return nil, 0, err
		}
	}
	return append(Shape{2}, x.Shape...), F32, nil
}

func inferPart(args []*Value, aux Aux) (Shape, DType, error) {
	p, ok := aux.(Part)
	if !ok {
		return nil, 0, fmt.Errorf("aux is %T, want Part", aux)
	}
	t := args[0]
	if len(t.Shape) < 2 || p.Index < 0 || p.Index >= t.Shape[0] {
		return nil, 0, fmt.Errorf("no part %d of %v%v", p.Index, t, t.Shape)
	}
	return t.Shape[1:], t.DType, nil
}
