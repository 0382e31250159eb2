package interp

import (
	"fmt"
	"math"

	"github.com/gemmac/gemmac/ir"
)

// Cache is one sequence's static KV cache: per layer, CacheLen slots of
// [kv heads, head dim] keys and values. Global layers hold every position;
// sliding layers a ring where position p lives in slot p mod CacheLen.
// Because RoPE is applied before caching, the ring holds exactly what
// Hugging Face's shifting sliding-window cache holds.
type Cache struct {
	layers  map[int]*layerCache
	context int
}

type layerCache struct {
	slots, heads, dim int
	k, v              []float32
}

// NewCache allocates the cache every attention op of the given graphs needs;
// graphs sharing a layer must agree on its layout.
func NewCache(context int, graphs ...*ir.Graph) (*Cache, error) {
	c := &Cache{layers: map[int]*layerCache{}, context: context}
	for _, g := range graphs {
		for _, v := range g.Values {
			if v.Op != ir.OpAttention {
				continue
			}
			a := v.Aux.(ir.Attention)
			heads, dim := v.Args[1].Shape[1], v.Args[1].Shape[2]
			if l, ok := c.layers[a.Layer]; ok {
				if l.slots != a.CacheLen || l.heads != heads || l.dim != dim {
					return nil, fmt.Errorf("graph %s: layer %d cache %dx%dx%d differs from another graph's %dx%dx%d",
						g.Name, a.Layer, a.CacheLen, heads, dim, l.slots, l.heads, l.dim)
				}
				continue
			}
			n := a.CacheLen * heads * dim
			c.layers[a.Layer] = &layerCache{slots: a.CacheLen, heads: heads, dim: dim, k: make([]float32, n), v: make([]float32, n)}
		}
	}
	return c, nil
}

// Bytes is the memory the cache holds.
func (c *Cache) Bytes() int64 {
	var n int64
	for _, l := range c.layers {
		n += int64(len(l.k)+len(l.v)) * 4
	}
	return n
}

// fits checks a call before any kernel runs: positions must lie inside the
// context every global layer was sized for.
func (c *Cache) fits(g *ir.Graph, pos, n int) error {
	if pos < 0 {
		return fmt.Errorf("negative position %d", pos)
	}
	if pos+n > c.context {
		return fmt.Errorf("positions %d..%d run past the context of %d tokens", pos, pos+n-1, c.context)
	}
	for _, v := range g.Values {
		if v.Op == ir.OpAttention {
			if _, ok := c.layers[v.Aux.(ir.Attention).Layer]; !ok {
				return fmt.Errorf("cache has no layer %d", v.Aux.(ir.Attention).Layer)
			}
		}
	}
	return nil
}

// attention attends each valid query of the chunk to the keys it may see:
// earlier positions from the cache, the chunk's own from its k and v. The
// chunk is written to the cache only afterwards, so a chunk longer than a
// sliding ring never overwrites keys its own early queries still need. With
// per-row positions, row t is a sequence of its own: its cache is
// r.caches[t] and its only chunk key is its own.
func (r *run) attention(dst []float32, v *ir.Value) error {
	a := v.Aux.(ir.Attention)
	q, k, val := r.vals[v.Args[0].ID], r.vals[v.Args[1].ID], r.vals[v.Args[2].ID]
	if kv := a.KVType(); kv != ir.F32 {
		// The chunk's keys and values as the cache will hold them: every
		// query sees the same keys however the sequence was split.
		k, val = rounded(k, kv), rounded(val, kv)
	}
	T, Hq, D := v.Shape[0], v.Shape[1], v.Shape[2]
	Hkv := v.Args[1].Shape[1]
	group := Hq / Hkv
	perRow := ir.PerRow(v.Args[3])

	// row t's sequence: its cache, and where its part of the chunk starts
	// (position and row).
	seq := func(t int) (lc *layerCache, p0, row0 int) {
		if perRow {
			return r.caches[t].layers[a.Layer], r.pos[t], t
		}
		return r.caches[0].layers[a.Layer], r.pos[0], 0
	}
	parallelFor(r.nValid*Hq, r.p.threads, func(lo, hi int) {
		scores := make([]float32, 0, r.pos[0]+T)
		acc := make([]float64, D)
		for item := lo; item < hi; item++ {
			t, h := item/Hq, item%Hq
			lc, p0, row0 := seq(t)
			keyAt := func(j, h int) (key, value []float32) {
				if j >= p0 {
					off := ((j-p0+row0)*Hkv + h) * D
					return k[off : off+D], val[off : off+D]
				}
				off := ((j%lc.slots)*Hkv + h) * D
				return lc.k[off : off+D], lc.v[off : off+D]
			}
			i := r.pos[t]
			first := 0
			if a.Window > 0 {
				first = max(0, i-a.Window+1)
			}
			qv := q[(t*Hq+h)*D : (t*Hq+h+1)*D]
			scores = scores[:0]
			for j := first; j <= i; j++ {
				key, _ := keyAt(j, h/group)
				s := dotF32(qv, key) * a.Scale
				if a.Softcap > 0 {
					s = a.Softcap * float32(math.Tanh(float64(s/a.Softcap)))
				}
				scores = append(scores, s)
			}
			softmax(scores, scores)
			clear(acc)
			for n, j := 0, first; j <= i; n, j = n+1, j+1 {
				_, value := keyAt(j, h/group)
				p := float64(scores[n])
				for d := range acc {
					acc[d] += p * float64(value[d])
				}
			}
			out := dst[(t*Hq+h)*D : (t*Hq+h+1)*D]
			for d := range out {
				out[d] = float32(acc[d])
			}
		}
	})

	for t := 0; t < r.nValid; t++ {
		lc, _, _ := seq(t)
		slot := r.pos[t] % lc.slots
		copy(lc.k[slot*Hkv*D:(slot+1)*Hkv*D], k[t*Hkv*D:(t+1)*Hkv*D])
		copy(lc.v[slot*Hkv*D:(slot+1)*Hkv*D], val[t*Hkv*D:(t+1)*Hkv*D])
	}
	return nil
}

// rounded returns x rounded to kv, in f32 (the cache holds its values
// widened back).
func rounded(x []float32, kv ir.DType) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = ir.RoundTo(v, kv)
	}
	return out
}
