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
// position·Theta^(-2i/D).
type RoPE struct{ Theta float32 }

func (a RoPE) String() string { return fmt.Sprintf("theta=%g", a.Theta) }

// Attention is scaled dot-product attention over a static KV cache. The op
// writes the chunk's keys and values into the cache of Layer, then attends
// from each query to the cached keys it may see.
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
}

func (a Attention) String() string {
	return fmt.Sprintf("layer=%d scale=%g softcap=%g window=%d cache=%d", a.Layer, a.Scale, a.Softcap, a.Window, a.CacheLen)
}

// Const holds the data of an OpConst value, always as f32 in row-major order.
type Const struct{ Data []float32 }

func (a *Const) String() string { return fmt.Sprintf("%d elems", len(a.Data)) }
