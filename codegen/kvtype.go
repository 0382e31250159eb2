package codegen

// The KV cache may hold bfloat16 instead of f32 (half the memory and half
// the bytes attention reads per token): KVStore and KVStoreRows round the
// chunk's keys and values as they store them, Attention widens them as it
// reads. The interpreter rounds the same way (ir.RoundTo), so the two agree.

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// kvType is the cache element type of a spec's KV field: F32 when unset.
func kvType(dt gir.DType) gir.DType {
	if dt == 0 {
		return gir.F32
	}
	return dt
}

func checkKV(dt gir.DType) error {
	if t := kvType(dt); t != gir.F32 && t != gir.BF16 {
		return fmt.Errorf("KV cache of %v (want f32 or bf16)", t)
	}
	return nil
}

// kvSuffix names a kernel's cache type when it is not f32.
func kvSuffix(dt gir.DType) string {
	if t := kvType(dt); t != gir.F32 {
		return "_kv" + t.String()
	}
	return ""
}

// narrowBF16 rounds f32 lanes to bfloat16 bits, to nearest even (as
// ir.F32ToBF16 does for every number).
func (g *gen) narrowBF16(v value.Value) value.Value {
	n := int(v.Type().(*types.VectorType).Len)
	vi := vecT(n, tI32)
	bits := g.b.NewBitCast(v, vi)
	odd := g.b.NewAnd(g.b.NewLShr(bits, ci(vi, 16)), ci(vi, 1))
	rounded := g.add(g.add(bits, ci(vi, 0x7fff)), odd)
	return g.b.NewTrunc(g.b.NewLShr(rounded, ci(vi, 16)), vecT(n, tI16))
}

// storeKV copies n f32 from src[so:] into the cache dst[do:] (elements of
// dt: dst is an elemType(dt) pointer).
func (g *gen) storeKV(dst, do, src, so value.Value, n int, dt gir.DType) {
	if kvType(dt) == gir.F32 {
		g.copyF(dst, do, src, so, n)
		return
	}
	g.vecLoop(n, nil, func(off, mask value.Value, _ []value.Value) []value.Value {
		g.storeVecRaw(tI16, g.narrowBF16(g.loadF(src, g.add(so, off), mask)), dst, g.add(do, off), mask)
		return nil
	})
}
