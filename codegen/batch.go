package codegen

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/types"
	"github.com/llir/llvm/ir/value"
)

// A batched decode step runs one token of each of up to B sequences. Its
// rows share the weights and nothing else: row t has its own position and
// its own KV cache. The kernels that care (Rope, Attention with Rows set,
// and KVStoreRows) read them from two places:
//
//   - the batch scalars, i64 {unused, n_valid, pos[0], …, pos[B−1]}: the
//     ordinary {pos, n_valid} block followed by each row's position, so
//     every kernel that only reads n_valid runs unchanged;
//   - per-row pointer tables: a KV argument is an array of B pointers, row
//     t's cache of that layer. The engine fills them for the rows of each
//     step; rows ≥ n_valid are never read.

// MaxBatch bounds the rows a batched decode step is compiled for. Up to
// maxBatchRows rows its matmuls hold every row in one register tile
// (weights read and widened once); more rows take the prefill tiles.
const MaxBatch = 64

// BatchScalarsLen is the number of i64 of the scalars block of a batched
// step of b rows.
func BatchScalarsLen(b int) int { return 2 + b }

// rowPos loads row t's position from the batch scalars args[i].
func (g *gen) rowPos(i int, t value.Value) value.Value {
	return g.load(tI64, g.argPtr(i, tI64), g.addc(t, 2))
}

// rowPtr loads row t's pointer from the per-row table args[i], as elem*.
func (g *gen) rowPtr(i int, t value.Value, elem types.Type) value.Value {
	p := g.load(tI8P, g.argPtr(i, tI8P), t)
	return g.b.NewBitCast(p, ptrT(elem))
}

// KVStoreRows writes the keys and values of a batched step into each row's
// own cache: row t goes to slot pos[t] mod CacheLen of its caches.
//
// Args: kcache and vcache (tables of T pointers to f32[CacheLen×HKV×D]), k
// f32[T×HKV×D], v (same), batch scalars. Items: T rows (rows ≥ n_valid are
// skipped).
type KVStoreRows struct {
	T, HKV, D, CacheLen int
	KV                  gir.DType // the caches' element type (0: f32)
}

func (s KVStoreRows) Name() string {
	return fmt.Sprintf("kv_store_rows_t%d_hkv%d_d%d_c%d", s.T, s.HKV, s.D, s.CacheLen) + kvSuffix(s.KV)
}
func (s KVStoreRows) Items() int64   { return int64(s.T) }
func (s KVStoreRows) Granule() int64 { return 1 }
func (s KVStoreRows) Args() []string { return []string{"kcache", "vcache", "k", "v", "scalars"} }
func (s KVStoreRows) Validate() error {
	if err := checkKV(s.KV); err != nil {
		return err
	}
	return positive("T, HKV, D and CacheLen", s.T, s.HKV, s.D, s.CacheLen)
}

func (s KVStoreRows) emit(g *gen) {
	k, v := g.argPtr(2, tF32), g.argPtr(3, tF32)
	_, nvalid := g.scalars(4)
	row := int64(s.HKV * s.D)
	g.forRange(g.lo, g.smin(g.hi, nvalid), 1, func(t value.Value) {
		et := elemType(kvType(s.KV))
		kc, vc := g.rowPtr(0, t, et), g.rowPtr(1, t, et)
		slot := g.b.NewSRem(g.rowPos(4, t), ci64(int64(s.CacheLen)))
		so, do := g.mulc(t, row), g.mulc(slot, row)
		g.storeKV(kc, do, k, so, int(row), s.KV)
		g.storeKV(vc, do, v, so, int(row), s.KV)
	})
}
