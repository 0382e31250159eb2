package passes

import (
	"fmt"

	"github.com/gemmac/gemmac/ir"
)

// kvAlign keeps every cache region on a cache line.
const kvAlign = 64

// KVCache fixes the static hybrid cache: one buffer holding, for each
// attention layer, Slots × heads × dim keys and as many values, of the
// attention's KV type (f32 or bf16). Global layers get the whole context;
// sliding layers a ring of min(window, context) slots.
func KVCache(g *ir.Graph) error {
	context := g.Meta["context"]
	layout := &ir.KVLayout{}
	for _, v := range g.Values {
		if v.Op != ir.OpAttention {
			continue
		}
		a := v.Aux.(ir.Attention)
		heads, dim := v.Args[1].Shape[1], v.Args[1].Shape[2]
		want := context
		if a.Window > 0 {
			want = min(a.Window, context)
		}
		if context > 0 && a.CacheLen != want {
			return fmt.Errorf("%v: layer %d has %d cache slots, want %d for window %d and context %d", v, a.Layer, a.CacheLen, want, a.Window, context)
		}
		if l := layout.Layer(a.Layer); l != nil {
			if l.Slots != a.CacheLen || l.Heads != heads || l.Dim != dim {
				return fmt.Errorf("%v: layer %d's cache is laid out twice, differently", v, a.Layer)
			}
			continue
		}
		size := int64(a.CacheLen*heads*dim) * int64(a.KVType().Size())
		l := ir.KVLayer{Layer: a.Layer, Slots: a.CacheLen, Heads: heads, Dim: dim}
		l.KOffset = layout.Bytes
		l.VOffset = align(l.KOffset+size, kvAlign)
		layout.Bytes = align(l.VOffset+size, kvAlign)
		layout.Layers = append(layout.Layers, l)
	}
	g.KV = layout
	return nil
}

func align(n, to int64) int64 { return (n + to - 1) / to * to }
