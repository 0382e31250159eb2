package passes

import (
	"sort"

	"github.com/gemmac/gemmac/ir"
)

// arenaAlign is the alignment of every buffer: a cache line, and the widest
// vector load.
const arenaAlign = 64

// MemPlan gives every intermediate an offset in one arena. A buffer lives
// from the op that writes it to the last op that reads it or a view of it;
// afterwards its bytes are reused (first fit, lowest offset). Results live to
// the end. Leaves (inputs, weights, consts) live outside the arena.
func MemPlan(g *ir.Graph) error {
	owner := map[*ir.Value]*ir.Value{} // view → the value owning its storage
	end := map[*ir.Value]int{}
	for i, v := range g.Values {
		if v.Op.IsLeaf() {
			continue
		}
		switch {
		case !v.Op.IsView():
			owner[v] = v
			end[v] = i
		case !storageOf(owner, v.Args[0]).Op.IsLeaf():
			// A view of a leaf (a reshaped weight) stays outside the arena.
			owner[v] = storageOf(owner, v.Args[0])
		}
		for _, a := range v.Args {
			if o, ok := owner[a]; ok {
				end[o] = max(end[o], i)
			}
		}
	}
	for _, o := range g.Outputs {
		if s, ok := owner[o]; ok {
			end[s] = len(g.Values)
		}
	}

	type block struct {
		off, size int64
		end       int
	}
	var live []block // sorted by offset
	plan := &ir.MemPlan{Offsets: map[int]int64{}}
	for i, v := range g.Values {
		if owner[v] != v {
			continue
		}
		// Free what died before this op; what this op reads is still live.
		kept := live[:0]
		for _, b := range live {
			if b.end >= i {
				kept = append(kept, b)
			}
		}
		live = kept
		size := align(int64(v.Shape.Elems()*v.DType.Size()), arenaAlign)
		off := int64(0)
		for _, b := range live {
			if off+size <= b.off {
				break
			}
			off = max(off, b.off+b.size)
		}
		live = append(live, block{off, size, end[v]})
		sort.Slice(live, func(a, b int) bool { return live[a].off < live[b].off })
		plan.Offsets[v.ID] = off
		plan.Bytes = max(plan.Bytes, off+size)
		plan.Naive += size
	}
	for v, o := range owner {
		if v != o {
			plan.Offsets[v.ID] = plan.Offsets[o.ID] + viewOffset(v)
		}
	}
	g.Mem = plan
	return nil
}

// storageOf follows views to the value that owns the bytes.
func storageOf(owner map[*ir.Value]*ir.Value, v *ir.Value) *ir.Value {
	if o, ok := owner[v]; ok {
		return o
	}
	return v
}

// viewOffset is where a view starts inside its source's storage.
func viewOffset(v *ir.Value) int64 {
	var off int64
	for v.Op.IsView() {
		if p, ok := v.Aux.(ir.Part); ok {
			off += int64(p.Index * v.Shape.Elems() * v.DType.Size())
		}
		v = v.Args[0]
	}
	return off
}
