package cpu

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/gemmac/gemmac/runtime/model"
	"github.com/gemmac/gemmac/runtime/plan"
)

var _ model.BatchEngine = (*Engine)(nil)

// steps runs p's kernel calls for n valid tokens (rows), args being its
// resolved argument block.
func (e *Engine) steps(p *plan.Program, args *region, n int) {
	// Unprofiled, the runner makes every call in one native call.
	runner := e.profile == nil && e.pool.runner >= 0
	argi := 0
	for i, st := range p.Steps {
		stepArgs, items := args.ptr(int64(argi*8)), st.ItemsFor(n)
		argi += len(st.Args)
		if runner {
			e.pool.setCall(i, e.kernels, st.Kernel, stepArgs, items, st.Granule)
			continue
		}
		var start time.Time
		if e.profile != nil {
			start = time.Now()
		}
		e.pool.run(e.kernels, st.Kernel, stepArgs, items, st.Granule)
		if e.profile != nil {
			name := e.art.Kernels[st.Kernel]
			k := e.profile[name]
			if k == nil {
				k = &KernelTime{Kernel: name}
				e.profile[name] = k
			}
			k.Calls++
			k.Time += time.Since(start)
		}
	}
	if runner {
		e.pool.runAll(e.kernels, len(p.Steps))
	}
}

// batchRun is what the batched decode step (plan.BatchProgram) runs in:
// the engine's, not a state's, since its rows belong to different states.
type batchRun struct {
	p     *plan.Program
	arena *region
	// io holds the batch scalars, i64 {0, n_valid, pos[0..B)}, then the
	// token ids, i32[B].
	io *region
	// tables holds one table of B row pointers per distinct kv_rows offset,
	// in the order of offsets.
	tables  *region
	offsets []int64
	args    *region
}

// MaxBatch is the rows of the compiled batched decode step; 0 when the
// binary was built without one (gemmac build --batch).
func (e *Engine) MaxBatch() int { return compiledBatch(e.art) }

func compiledBatch(art *plan.Artifact) int {
	if p := art.Programs[plan.BatchProgram]; p != nil {
		return p.Batch
	}
	return 0
}

// batch prepares the batched step's buffers on first use. e.mu is held.
func (e *Engine) batch() (*batchRun, error) {
	if e.batchRun != nil {
		return e.batchRun, nil
	}
	p := e.art.Programs[plan.BatchProgram]
	if p == nil || p.Batch < 1 {
		return nil, fmt.Errorf("the compiled model has no batched decode step (build it with --batch)")
	}
	b := &batchRun{p: p}
	index := map[int64]int{}
	for _, st := range p.Steps {
		for _, a := range st.Args {
			if _, ok := index[a.Offset]; a.Kind == plan.ArgKVRows && !ok {
				index[a.Offset] = len(b.offsets)
				b.offsets = append(b.offsets, a.Offset)
			}
		}
	}
	var err error
	alloc := func(bytes int64) *region {
		if err != nil {
			return nil
		}
		var r *region
		if r, err = allocRegion(bytes); err == nil {
			e.owned = append(e.owned, r)
		}
		return r
	}
	b.arena = alloc(p.ArenaBytes)
	b.io = alloc(int64(8*(2+p.Batch) + 4*p.Batch))
	b.tables = alloc(int64(8 * p.Batch * max(len(b.offsets), 1)))
	b.args = alloc(int64(8 * argCount(p)))
	if err != nil {
		return nil, err
	}
	b.arena.touch()
	err = e.bindArgs(p, b.args, func(a plan.Arg) unsafe.Pointer {
		switch a.Kind {
		case plan.ArgArena:
			return b.arena.ptr(a.Offset)
		case plan.ArgKVRows:
			return b.tables.ptr(int64(8 * p.Batch * index[a.Offset]))
		case plan.ArgTokens:
			return b.io.ptr(int64(8 * (2 + p.Batch)))
		case plan.ArgScalars:
			return b.io.ptr(0)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.batchRun = b
	return b, nil
}

// DecodeBatch runs one token of each row's sequence as one batched step:
// the weights are read once for all rows. Every row is checked here — its
// state one of this engine's and no other row's, its token in the
// vocabulary, its position inside the context — before the kernels see any.
// Only the rows given write their caches.
func (e *Engine) DecodeBatch(rows []model.BatchRow) ([][]float32, error) {
	n := len(rows)
	if n == 0 {
		return nil, fmt.Errorf("no rows to run")
	}
	if limit := e.MaxBatch(); n > limit {
		return nil, fmt.Errorf("%d rows exceed the compiled batch of %d", n, limit)
	}
	vocab, context := e.art.Config.VocabSize, e.art.Context
	states := make([]*state, n)
	for i, r := range rows {
		s, ok := r.State.(*state)
		if !ok || s.e != e {
			return nil, fmt.Errorf("row %d: the state is not one of this engine's", i)
		}
		for j := range i {
			if states[j] == s {
				return nil, fmt.Errorf("rows %d and %d are the same sequence", j, i)
			}
		}
		states[i] = s
		if r.Token < 0 || int(r.Token) >= vocab {
			return nil, fmt.Errorf("row %d: token %d is outside the vocabulary of %d", i, r.Token, vocab)
		}
		if r.Pos < 0 || r.Pos+1 > context {
			return nil, fmt.Errorf("row %d: %w", i, &model.ContextError{Tokens: r.Pos + 1, Context: context})
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := e.batch()
	if err != nil {
		return nil, err
	}
	B := b.p.Batch
	scalars := unsafe.Slice((*int64)(b.io.ptr(0)), 2+B)
	ids := unsafe.Slice((*int32)(b.io.ptr(int64(8*(2+B)))), B)
	tables := unsafe.Slice((*unsafe.Pointer)(b.tables.ptr(0)), B*max(len(b.offsets), 1))
	scalars[0], scalars[1] = 0, int64(n)
	for t := 0; t < B; t++ {
		scalars[2+t], ids[t] = 0, 0
		for k, off := range b.offsets {
			tables[k*B+t] = nil // rows ≥ n_valid are never read
			if t < n {
				tables[k*B+t] = states[t].kv.ptr(off)
			}
		}
		if t < n {
			scalars[2+t], ids[t] = int64(rows[t].Pos), rows[t].Token
		}
	}
	e.steps(b.p, b.args, n)
	cols := b.p.Output.Cols
	out := make([][]float32, n)
	for i, r := range rows {
		if out[i] = r.Out; len(out[i]) < cols {
			out[i] = make([]float32, cols)
		}
		out[i] = out[i][:cols:cols]
		copy(out[i], b.arena.f32s(b.p.Output.Offset+int64(4*i*cols), cols))
	}
	return out, nil
}
