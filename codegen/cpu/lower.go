// Package cpu compiles a Gemma-2 checkpoint for the CPU: it lowers the
// optimised graphs to calls of the kernels in package codegen, compiles the
// kernels with LLVM, and packages kernels and plan as a shared object (for
// in-process runs) or a standalone binary (gemmac build).
package cpu

import (
	"fmt"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/plan"
)

// Options fix what is compiled.
type Options struct {
	Target  codegen.Target
	Context int // positions in the KV cache
	Chunk   int // prefill tokens per call (0: DefaultChunk)
	// Batch, above 1, adds the batched decode step of up to Batch
	// sequences (plan.BatchProgram).
	Batch int
	// KVDType is the KV cache's element type: f32 (0) or bf16.
	KVDType ir.DType
}

// Lower builds, optimises and lowers every entry point of cfg, adding the
// kernels it needs to mod. dtypes are the checkpoint's weight dtypes.
func Lower(cfg *frontend.Config, dtypes map[string]ir.DType, opts Options, mod *codegen.Module) (*plan.Artifact, error) {
	art, err := codegen.NewArtifact(cfg, "cpu "+opts.Target.String(), opts.Context)
	if err != nil {
		return nil, err
	}
	l := &lowering{art: art, mod: mod, weights: codegen.NewWeightTable(art)}
	// The engine's pool threads wait for work inside the worker kernel;
	// the runner makes a program's calls.
	if codegen.WorkerName != plan.WorkerKernel || codegen.RunnerName != plan.RunnerKernel {
		return nil, fmt.Errorf("codegen names the pool kernels %q and %q, the plan %q and %q", codegen.WorkerName, codegen.RunnerName, plan.WorkerKernel, plan.RunnerKernel)
	}
	if _, err := mod.Add(codegen.Worker{}); err != nil {
		return nil, err
	}
	if _, err := mod.Add(codegen.Runner{}); err != nil {
		return nil, err
	}
	if opts.Batch < 0 || opts.Batch > codegen.MaxBatch {
		return nil, fmt.Errorf("a batch of %d sequences is outside 0..%d", opts.Batch, codegen.MaxBatch)
	}
	entries := codegen.EntriesFor(opts.Batch)
	graphs := make([]*ir.Graph, len(entries))
	for i, e := range entries {
		g, err := codegen.EntryGraph(e, cfg, dtypes, opts.Context, opts.Chunk, opts.KVDType)
		if err != nil {
			return nil, err
		}
		graphs[i] = g
	}
	l.byRows = weightsReadByRows(graphs)
	for i, e := range entries {
		g := graphs[i]
		p, err := l.program(g)
		if err != nil {
			return nil, fmt.Errorf("lowering %s: %w", e.Name, err)
		}
		art.Programs[e.Name] = p
		if art.KVBytes != 0 && art.KVBytes != g.KV.Bytes {
			// A batched step reaches each row's cache through the offsets
			// of one layout: every program must share it.
			return nil, fmt.Errorf("program %s lays out %d bytes of KV cache, another %d", e.Name, g.KV.Bytes, art.KVBytes)
		}
		art.KVBytes = g.KV.Bytes
	}
	for _, s := range mod.Specs() {
		art.Kernels = append(art.Kernels, s.Name())
	}
	return art, art.Check()
}

type lowering struct {
	art     *plan.Artifact
	mod     *codegen.Module
	weights *codegen.WeightTable
	g       *ir.Graph
	p       *plan.Program
	// inScratch is the value whose integers (QuantizeRows) the scratch
	// holds: q, k and v quantise their shared x once.
	inScratch scratchX
	// byRows are the weights some kernel other than a float matmul reads
	// (the embedding table, read by rows by Embed and by the tied LM head).
	byRows map[string]bool
}

// weightsReadByRows names the weights of the graphs that an op reads other
// than as a Matmul's or GeGLU's weights.
func weightsReadByRows(graphs []*ir.Graph) map[string]bool {
	rows := map[string]bool{}
	for _, g := range graphs {
		for _, v := range g.Values {
			for i, a := range v.Args {
				asMatrix := v.Op == ir.OpMatMul && i == 1 || v.Op == ir.OpGeGLU && i >= 1
				if a.Op == ir.OpWeight && !asMatrix {
					rows[a.Name] = true
				}
			}
		}
	}
	return rows
}

// inPanels reports whether a float matmul kernel reads its weight matrices
// ws laid out in panels: f32 matrices that no other kernel reads are, so
// prefill reads them where they are instead of transposing them into
// panels once per chunk (codegen/panel.go), and decode streams them.
func (l *lowering) inPanels(ws ...*ir.Value) bool {
	for _, w := range ws {
		if _, derived := w.Aux.(ir.Derived); w.Op != ir.OpWeight || w.DType != ir.F32 || derived || l.byRows[w.Name] {
			return false
		}
	}
	return true
}

// matrixArg is where a kernel of nw weight matrices finds w.
func (l *lowering) matrixArg(w *ir.Value, nw int, panels bool) plan.Arg {
	if !panels {
		return l.arg(w)
	}
	return plan.Arg{Kind: plan.ArgWeight, Index: l.weights.IndexLaid(w, codegen.PanelColumns(nw))}
}

func (l *lowering) program(g *ir.Graph) (*plan.Program, error) {
	out := g.Outputs[0]
	l.g, l.inScratch = g, scratchX{}
	l.p = &plan.Program{
		Name:       g.Name,
		Tokens:     g.Meta["tokens"],
		Batch:      g.Meta["batch"],
		ArenaBytes: g.Mem.Bytes,
		Output:     plan.Buffer{Offset: g.Mem.Offsets[out.ID], Rows: out.Shape[0], Cols: out.Shape.Last()},
	}
	for _, v := range g.Values {
		if err := l.lower(v); err != nil {
			return nil, fmt.Errorf("%s: %w", ir.FormatValue(v), err)
		}
	}
	return l.p, nil
}

// arg is where a value lives for a kernel.
func (l *lowering) arg(v *ir.Value) plan.Arg {
	if a, ok := l.weights.LeafArg(v); ok {
		return a
	}
	return plan.Arg{Kind: plan.ArgArena, Offset: l.g.Mem.Offsets[v.ID]}
}

var scalars = plan.Arg{Kind: plan.ArgScalars}

// call appends one kernel call. perRow marks kernels whose items are rows
// (times perRow) of the chunk, so calls with fewer valid tokens do less.
func (l *lowering) call(spec codegen.Spec, label string, perRow int64, args ...plan.Arg) error {
	k, err := l.mod.Add(spec)
	if err != nil {
		return err
	}
	l.p.Steps = append(l.p.Steps, plan.Step{
		Kernel: k, Items: spec.Items(), Granule: spec.Granule(), ItemsPerRow: perRow,
		Args: args, Label: label,
	})
	return nil
}

func (l *lowering) lower(v *ir.Value) error {
	switch v.Op {
	case ir.OpInput, ir.OpWeight, ir.OpReshape, ir.OpPart:
		// No code: leaves and views. A weight is bound where a kernel
		// reads it, as that kernel reads it (by rows or in panels).
		return nil
	}
	a := func(i int) plan.Arg { return l.arg(v.Args[i]) }
	out := l.arg(v)
	switch v.Op {
	case ir.OpEmbed:
		table := v.Args[0]
		scale := float32(1)
		if e, ok := v.Aux.(ir.Embed); ok {
			scale = e.Factor()
		}
		spec := codegen.Embed{R: v.Shape[0], H: v.Shape[1], V: table.Shape[0], TType: table.DType, Scale: float64(scale)}
		return l.call(spec, v.Name, 1, out, a(0), a(1), scalars)
	case ir.OpMatMul:
		w := v.Args[1]
		var softcap float64
		if m, ok := v.Aux.(ir.MatMul); ok {
			softcap = float64(m.Softcap)
		}
		R, K, N := v.Args[0].Shape.Rows(), w.Shape[1], w.Shape[0]
		if w.DType.IsQuantized() {
			x, xbits, err := l.quantizedX(v, R, K, w.DType)
			if err != nil {
				return err
			}
			spec := codegen.QMatmul{R: R, K: K, N: N, WType: w.DType, Softcap: softcap, XBits: xbits}
			return l.call(spec, v.Name, 0, out, x, a(1), scalars)
		}
		panels := l.inPanels(w)
		spec := codegen.Matmul{R: R, K: K, N: N, WType: w.DType, Softcap: softcap, Panels: panels}
		return l.call(spec, v.Name, 0, out, a(0), l.matrixArg(w, 1, panels), scalars)
	case ir.OpGeGLU:
		w := v.Args[1]
		if w.DType != v.Args[2].DType {
			return fmt.Errorf("gate weights are %v, up weights %v: the kernel reads one dtype", w.DType, v.Args[2].DType)
		}
		R, K, F := v.Args[0].Shape.Rows(), w.Shape[1], w.Shape[0]
		if w.DType.IsQuantized() {
			x, xbits, err := l.quantizedX(v, R, K, w.DType)
			if err != nil {
				return err
			}
			spec := codegen.QGeGLU{R: R, K: K, F: F, WType: w.DType, XBits: xbits}
			return l.call(spec, v.Name, 0, out, x, a(1), a(2), scalars)
		}
		panels := l.inPanels(w, v.Args[2])
		spec := codegen.GeGLU{R: R, K: K, F: F, WType: w.DType, Panels: panels}
		return l.call(spec, v.Name, 0, out, a(0), l.matrixArg(w, 2, panels), l.matrixArg(v.Args[2], 2, panels), scalars)
	case ir.OpRMSNorm:
		norm := v.Aux.(ir.RMSNorm)
		if norm.Offset != 0 || v.Args[1].DType != ir.F32 {
			return fmt.Errorf("rmsnorm weight must be folded to f32 (run the fold pass)")
		}
		spec := codegen.RMSNorm{R: v.Shape.Rows(), H: v.Shape.Last(), Eps: float64(norm.Eps)}
		return l.call(spec, v.Name, 1, out, a(0), a(1), scalars)
	case ir.OpAddRMSNorm:
		norm := v.Aux.(ir.RMSNorm)
		if norm.Offset != 0 {
			return fmt.Errorf("rmsnorm weights must be folded (run the fold pass)")
		}
		x := v.Args[0]
		spec := codegen.AddRMSNorm{R: x.Shape.Rows(), H: x.Shape.Last(), Eps: float64(norm.Eps)}
		half := int64(x.Shape.Elems() * 4)
		normOut := plan.Arg{Kind: plan.ArgArena, Offset: out.Offset + half}
		return l.call(spec, v.Name, 1, out, normOut, a(0), a(1), a(2), a(3), scalars)
	case ir.OpRoPE:
		r := v.Aux.(ir.RoPE)
		spec := codegen.RoPE{R: v.Shape[0], NH: v.Shape[1], D: v.Shape[2], Scale: float64(r.Factor()), Rows: ir.PerRow(v.Args[1])}
		if r.Theta != float32(l.art.RoPE.Theta) || v.Shape[2] != l.art.RoPE.Dim {
			return fmt.Errorf("rope θ %g dim %d differs from the table's %g, %d", r.Theta, v.Shape[2], l.art.RoPE.Theta, l.art.RoPE.Dim)
		}
		return l.call(spec, v.Name, int64(v.Shape[1]), out, a(0), plan.Arg{Kind: plan.ArgRoPE}, scalars)
	case ir.OpAttention:
		return l.attention(v, out)
	case ir.OpSelectRow:
		spec := codegen.SelectRow{R: v.Args[0].Shape[0], H: v.Shape[1]}
		return l.call(spec, v.Name, 0, out, a(0), scalars)
	case ir.OpAdd, ir.OpMul:
		op := codegen.OpAdd
		if v.Op == ir.OpMul {
			op = codegen.OpMul
		}
		return l.call(codegen.Elementwise{N: v.Shape.Elems(), Op: op}, v.Name, 0, out, a(0), a(1))
	case ir.OpScale, ir.OpSoftcap:
		op := codegen.OpScale
		if v.Op == ir.OpSoftcap {
			op = codegen.OpSoftcap
		}
		c := float64(v.Aux.(ir.Scalar).C)
		return l.call(codegen.Elementwise{N: v.Shape.Elems(), Op: op, C: c}, v.Name, 0, out, a(0))
	case ir.OpGeluTanh:
		return l.call(codegen.Elementwise{N: v.Shape.Elems(), Op: codegen.OpGelu}, v.Name, 0, out, a(0))
	}
	return fmt.Errorf("the CPU code generator has no lowering for %v", v.Op)
}

// scratchX is a value rounded to integers of bits in the scratch.
type scratchX struct {
	v    *ir.Value
	bits int
}

// quantizedX is the x a quantised matmul v of R rows of K reads: its
// argument, or, where the target's prefill takes x as integers, a call of
// QuantizeRows that writes them to the arena's scratch (xbits, their width).
func (l *lowering) quantizedX(v *ir.Value, R, K int, dt ir.DType) (x plan.Arg, xbits int, err error) {
	x = l.arg(v.Args[0])
	bits := l.mod.Target.PrefillXBits(R, dt)
	if bits == 0 {
		return x, 0, nil
	}
	xq := l.scratch(codegen.QuantizedRowsBytes(R, K, bits))
	want := scratchX{v.Args[0], bits}
	if l.inScratch == want {
		return xq, bits, nil
	}
	l.inScratch = want
	return xq, bits, l.call(codegen.QuantizeRows{R: R, K: K, Bits: bits}, v.Name+".quantize", 1, xq, x)
}

// scratch is arena space past the graph's values for a kernel's input that
// the lowering adds (read by the next call only, so every user shares it).
func (l *lowering) scratch(bytes int64) plan.Arg {
	off := (l.g.Mem.Bytes + 63) / 64 * 64
	l.p.ArenaBytes = max(l.p.ArenaBytes, off+bytes)
	return plan.Arg{Kind: plan.ArgArena, Offset: off}
}

// attention attends (reading the cache and the chunk), then stores the
// chunk's keys and values: two kernels, so no query reads a slot the same
// chunk has already overwritten.
func (l *lowering) attention(v *ir.Value, out plan.Arg) error {
	a := v.Aux.(ir.Attention)
	layer := l.g.KV.Layer(a.Layer)
	if layer == nil {
		return fmt.Errorf("no cache layout for layer %d (run the kvcache pass)", a.Layer)
	}
	T, HQ, D := v.Shape[0], v.Shape[1], v.Shape[2]
	HKV := v.Args[1].Shape[1]
	// Rows of their own (a batched step) reach their caches through
	// per-row pointer tables.
	rows := ir.PerRow(v.Args[3])
	kind := plan.ArgKV
	if rows {
		kind = plan.ArgKVRows
	}
	kc := plan.Arg{Kind: kind, Offset: layer.KOffset}
	vc := plan.Arg{Kind: kind, Offset: layer.VOffset}
	q, k, val := l.arg(v.Args[0]), l.arg(v.Args[1]), l.arg(v.Args[2])
	spec := codegen.Attention{T: T, HQ: HQ, HKV: HKV, D: D, Window: a.Window, CacheLen: layer.Slots,
		Softcap: float64(a.Softcap), Scale: float64(a.Scale), Rows: rows, KV: a.KV}
	if err := l.call(spec, v.Name, int64(HQ), out, q, k, val, kc, vc, scalars); err != nil {
		return err
	}
	var store codegen.Spec = codegen.KVStore{T: T, HKV: HKV, D: D, CacheLen: layer.Slots, KV: a.KV}
	if rows {
		store = codegen.KVStoreRows{T: T, HKV: HKV, D: D, CacheLen: layer.Slots, KV: a.KV}
	}
	return l.call(store, v.Name+".store", 1, kc, vc, k, val, scalars)
}
