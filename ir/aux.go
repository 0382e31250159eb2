package ir

import "fmt"

// Aux is an op's parameters. Each op takes one concrete Aux type (or none).
type Aux interface{ String() string }

// Scalar is the constant of OpScale (multiply) and OpSoftcap (c·tanh(x/c)).
type Scalar struct{ C float32 }

func (a Scalar) String() string { return fmt.Sprintf("c=%g", a.C) }

// RMSNorm is x · rsqrt(mean(x²) + Eps) · (Offset + w). Gemma stores w - 1 in
// its checkpoints, so the frontend sets Offset 1; the fold pass moves it into
// the weight and sets Offset 0.
type RMSNorm struct {
	Eps    float32
	Offset float32
}

func (a RMSNorm) String() string { return fmt.Sprintf("eps=%g offset=%g", a.Eps, a.Offset) }

// RoPE rotates pairs (i, i+D/2) of every head ("rotate half") by
// position·Theta^(-2i/D), then multiplies by Scale (0 means 1) — where the
// fold pass puts the query's 1/sqrt(query_pre_attn_scalar).
type RoPE struct {
	Theta float32
	Scale float32
}

func (a RoPE) String() string {
	if a.Scale != 0 && a.Scale != 1 {
		return fmt.Sprintf("theta=%g scale=%g", a.Theta, a.Scale)
	}
	return fmt.Sprintf("theta=%g", a.Theta)
}

// Factor is Scale with 0 read as 1.
func (a RoPE) Factor() float32 {
	if a.Scale == 0 {
		return 1
	}
	return a.Scale
}

// Embed scales the gathered rows (0 means 1): the fold pass moves Gemma's
// sqrt(hidden) here.
type Embed struct{ Scale float32 }

func (a Embed) String() string { return fmt.Sprintf("scale=%g", a.Scale) }

// Factor is Scale with 0 read as 1.
func (a Embed) Factor() float32 {
	if a.Scale == 0 {
		return 1
	}
	return a.Scale
}

// MatMul carries an epilogue fused into the matmul: when Softcap is not 0,
// each result y becomes Softcap·tanh(y/Softcap).
type MatMul struct{ Softcap float32 }

func (a MatMul) String() string { return fmt.Sprintf("softcap=%g", a.Softcap) }

// Part selects one result of a fused op with several (OpAddRMSNorm).
type Part struct{ Index int }

func (a Part) String() string { return fmt.Sprintf("index=%d", a.Index) }

// Derived marks a weight the engine materialises as f32 at load time as
// w·Scale + Offset (Scale 0 means 1): the fold pass rewrites Gemma's (1 + w)
// norm scales this way. Computing it at load, not at build, keeps a compiled
// binary valid for any checkpoint of the same shape (a fine-tune, say).
type Derived struct {
	Scale, Offset float32
}

func (a Derived) String() string { return fmt.Sprintf("derived: w·%g + %g", a.factor(), a.Offset) }

func (a Derived) factor() float32 {
	if a.Scale == 0 {
		return 1
	}
	return a.Scale
}

// Apply materialises a derived weight.
func (a Derived) Apply(t Tensor) ([]float32, error) {
	data, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	for i, x := range data {
		data[i] = x*a.factor() + a.Offset
	}
	return data, nil
}

// Attention is scaled dot-product attention over a static KV cache. The op
// writes the chunk's keys and values into the cache of Layer, then attends
// from each query to the cached keys it may see. With per-row positions
// (PerRow) each row is a sequence of its own with its own cache, and its
// query sees its own cached keys and its own new key.
type Attention struct {
	Layer int
	// Scale multiplies q·k before the softcap (1 when folded into q).
	Scale float32
	// Softcap, when not 0, maps scores s to Softcap·tanh(s/Softcap).
	Softcap float32
	// Window, when not 0, lets query i see only keys j with i-Window < j ≤ i.
	Window int
	// CacheLen is the number of cache slots: the context for global layers,
	// min(Window, context) for sliding ones, used as a ring (slot = pos mod
	// CacheLen).
	CacheLen int
	// KV is the cache's element type: F32 (or 0), or BF16, which rounds
	// every key and value as it is stored and halves the cache.
	KV DType
}

// KVType is the cache's element type, F32 when unset.
func (a Attention) KVType() DType {
	if a.KV == 0 {
		return F32
	}
	return a.KV
}

func (a Attention) String() string {
	s := fmt.Sprintf("layer=%d scale=%g softcap=%g window=%d cache=%d", a.Layer, a.Scale, a.Softcap, a.Window, a.CacheLen)
	if a.KVType() != F32 {
		s += " kv=" + a.KVType().String()
	}
	return s
}

// Const holds the data of an OpConst value, always as f32 in row-major order.
type Const struct{ Data []float32 }

func (a *Const) String() string { return fmt.Sprintf("%d elems", len(a.Data)) }
