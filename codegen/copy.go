package codegen

import (
	"fmt"

	gir "github.com/gemmac/gemmac/ir"
	"github.com/llir/llvm/ir/value"
)

// SelectRow copies row n_valid−1 of x to out (the last real token's hidden
// state, for the LM head).
//
// Args: out f32[H], x f32[R×H], scalars. Items: 1.
type SelectRow struct{ R, H int }

func (s SelectRow) Name() string    { return fmt.Sprintf("select_row_r%d_h%d", s.R, s.H) }
func (s SelectRow) Items() int64    { return 1 }
func (s SelectRow) Granule() int64  { return 1 }
func (s SelectRow) Args() []string  { return []string{"out", "x", "scalars"} }
func (s SelectRow) Validate() error { return positive("R and H", s.R, s.H) }

func (s SelectRow) emit(g *gen) {
	out, x := g.argPtr(0, tF32), g.argPtr(1, tF32)
	_, nvalid := g.scalars(2)
	g.ifThen(g.slt(g.lo, g.hi), func() {
		row := g.smax(g.smin(g.addc(nvalid, -1), ci64(int64(s.R-1))), ci64(0))
		src := g.mulc(row, int64(s.H))
		g.copyF(out, ci64(0), x, src, s.H)
	})
}

// copyF copies n f32 from src[so:] to dst[do:].
func (g *gen) copyF(dst, do, src, so value.Value, n int) {
	g.vecLoop(n, nil, func(off, mask value.Value, _ []value.Value) []value.Value {
		g.storeVec(g.loadF(src, g.add(so, off), mask), dst, g.add(do, off), mask)
		return nil
	})
}

// KVStore writes the chunk's keys and values into the KV cache: row t goes
// to slot (pos+t) mod CacheLen. Rows that a later row of the same chunk
// overwrites (t < n_valid − CacheLen) are skipped, so any split of the rows
// across threads gives the same result.
//
// Args: kcache f32[CacheLen×HKV×D], vcache (same), k f32[T×HKV×D], v (same),
// scalars. Items: T rows (rows ≥ n_valid are skipped).
type KVStore struct {
	T, HKV, D, CacheLen int
	KV                  gir.DType // the cache's element type (0: f32)
}

func (s KVStore) Name() string {
	return fmt.Sprintf("kv_store_t%d_hkv%d_d%d_c%d", s.T, s.HKV, s.D, s.CacheLen) + kvSuffix(s.KV)
}
func (s KVStore) Items() int64   { return int64(s.T) }
func (s KVStore) Granule() int64 { return 1 }
func (s KVStore) Args() []string { return []string{"kcache", "vcache", "k", "v", "scalars"} }
func (s KVStore) Validate() error {
	if err := checkKV(s.KV); err != nil {
		return err
	}
	return positive("T, HKV, D and CacheLen", s.T, s.HKV, s.D, s.CacheLen)
}

func (s KVStore) emit(g *gen) {
	et := elemType(kvType(s.KV))
	kc, vc := g.argPtr(0, et), g.argPtr(1, et)
	k, v := g.argPtr(2, tF32), g.argPtr(3, tF32)
	pos, nvalid := g.scalars(4)
	row := int64(s.HKV * s.D)
	first := g.smax(g.lo, g.addc(nvalid, -int64(s.CacheLen)))
	g.forRange(first, g.smin(g.hi, nvalid), 1, func(t value.Value) {
		slot := g.b.NewSRem(g.add(pos, t), ci64(int64(s.CacheLen)))
		so, do := g.mulc(t, row), g.mulc(slot, row)
		g.storeKV(kc, do, k, so, int(row), s.KV)
		g.storeKV(vc, do, v, so, int(row), s.KV)
	})
}
