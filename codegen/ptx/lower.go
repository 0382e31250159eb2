package ptx

import (
	"fmt"
	"strings"

	"github.com/gemmac/gemmac/codegen"
	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/plan"
)

// Target is a CUDA compute capability and the PTX ISA version llc emits.
type Target struct {
	SM  string // "sm_80"
	PTX string // "ptx75"
}

// DefaultTarget is sm_80 (Ampere and newer: the bf16 MMA needs it) with
// PTX 7.5, which the driver JIT-compiles for the card it runs on.
var DefaultTarget = Target{SM: "sm_80", PTX: "ptx75"}

// ParseTarget reads "cuda" or "cuda:sm_XX".
func ParseTarget(s string) (Target, error) {
	t := DefaultTarget
	rest, ok := strings.CutPrefix(s, "cuda")
	if !ok {
		return t, fmt.Errorf("target %q is not cuda[:sm_XX]", s)
	}
	if rest == "" {
		return t, nil
	}
	sm, ok := strings.CutPrefix(rest, ":")
	parsed := Target{SM: sm, PTX: t.PTX}
	if !ok || fmt.Sprintf("sm_%d", parsed.sm()) != sm {
		return t, fmt.Errorf("target %q: want cuda:sm_XX (e.g. cuda:sm_90)", s)
	}
	if parsed.sm() < 80 {
		return t, fmt.Errorf("target %s: the bf16 tensor-core kernels need sm_80 or newer", sm)
	}
	return parsed, nil
}

// Options fix what is compiled.
type Options struct {
	Target  Target
	Context int // positions in the KV cache
	Chunk   int // prefill tokens per call (0: 256)
	// RoundMMA rounds the activations to bf16 at the tensor-core matmuls,
	// as bf16 engines do, instead of splitting each into hi + lo parts:
	// half the tensor work, ~1e-3 relative error instead of ~1e-5.
	RoundMMA bool
	// Matvec shapes the decode GEMVs (zero: the defaults).
	Matvec MatvecShape
}

// Sampler is the on-GPU greedy step: the argmax kernel over the decode
// program's logits, writing the next token id and advancing the position.
type Sampler struct {
	Kernel int        `json:"kernel"`
	Args   []plan.Arg `json:"args"`
	Launch Launch     `json:"launch"`
}

// Compiled is a lowered model: the plan (the CPU's format, Kernels naming
// the PTX entries), a launch configuration per step, and the kernels.
type Compiled struct {
	Artifact *plan.Artifact
	// Launches parallels each program's Steps.
	Launches map[string][]Launch
	Argmax   Sampler
	Sample   Sampler // temperature, top-k, top-p, min-p (sample.go)
	Entries  []Entry
	Module   *Module
	// PTX is set by EmitPTX (or LoadPTX).
	PTX string
}

// Build builds, optimises and lowers every entry point of cfg.
func Build(cfg *frontend.Config, dtypes map[string]ir.DType, opts Options) (*Compiled, error) {
	if opts.Target.SM == "" {
		opts.Target = DefaultTarget
	}
	if opts.Chunk <= 0 {
		opts.Chunk = 256
	}
	art, err := codegen.NewArtifact(cfg, "cuda "+opts.Target.SM, opts.Context)
	if err != nil {
		return nil, err
	}
	mod := NewModule(opts.Target)
	c := &Compiled{Artifact: art, Launches: map[string][]Launch{}, Module: mod}
	l := &lowering{c: c, mod: mod, weights: codegen.NewWeightTable(art), exactMMA: !opts.RoundMMA, gemv: opts.Matvec}
	for _, e := range codegen.Entries {
		g, err := codegen.EntryGraph(e, cfg, dtypes, opts.Context, opts.Chunk, ir.F32)
		if err != nil {
			return nil, err
		}
		p, err := l.program(g)
		if err != nil {
			return nil, fmt.Errorf("lowering %s: %w", e.Name, err)
		}
		art.Programs[e.Name] = p
		c.Launches[e.Name] = l.launches
		art.KVBytes = max(art.KVBytes, g.KV.Bytes)
	}
	dec := art.Programs["decode"]
	am := Argmax{N: dec.Output.Cols}
	ki, err := mod.Add(am)
	if err != nil {
		return nil, err
	}
	c.Argmax = Sampler{Kernel: ki, Launch: am.Launch(), Args: []plan.Arg{
		{Kind: plan.ArgArena, Offset: dec.Output.Offset}, {Kind: plan.ArgTokens}, scalars}}
	if c.Sample, err = addSample(mod, art.Programs); err != nil {
		return nil, err
	}
	for _, s := range mod.Specs() {
		art.Kernels = append(art.Kernels, s.Name())
	}
	c.Entries = mod.Entries()
	return c, c.Check()
}

// Check validates the plan and that every step's argument count matches its
// kernel's parameters.
func (c *Compiled) Check() error {
	if err := c.Artifact.Check(); err != nil {
		return err
	}
	for name, p := range c.Artifact.Programs {
		if len(c.Launches[name]) != len(p.Steps) {
			return fmt.Errorf("program %s: %d launches for %d steps", name, len(c.Launches[name]), len(p.Steps))
		}
		for i, s := range p.Steps {
			if want := c.Entries[s.Kernel].Params; len(s.Args) != want {
				return fmt.Errorf("program %s step %d (%s): %d args, the kernel takes %d", name, i, c.Entries[s.Kernel].Name, len(s.Args), want)
			}
			if l := c.Launches[name][i]; l.Grid[0]*l.Grid[1]*l.Grid[2] == 0 || l.Block[0]*l.Block[1]*l.Block[2] == 0 || l.Block[0]*l.Block[1]*l.Block[2] > 1024 {
				return fmt.Errorf("program %s step %d: bad launch %+v", name, i, l)
			}
		}
	}
	if c.Argmax.Kernel < 0 || c.Argmax.Kernel >= len(c.Entries) || len(c.Argmax.Args) != c.Entries[c.Argmax.Kernel].Params {
		return fmt.Errorf("argmax sampler does not match its kernel")
	}
	if !c.Sample.matches(c.Entries) {
		return fmt.Errorf("sampler does not match its kernel")
	}
	return nil
}

type lowering struct {
	c        *Compiled
	mod      *Module
	weights  *codegen.WeightTable
	g        *ir.Graph
	p        *plan.Program
	launches []Launch
	// scratch maps a region name to its offset past the graph's values;
	// every user of a region shares it, one at a time.
	scratch map[string]scratchRegion
	// override moves values (and their views) out of the memory plan into
	// scratch: the outputs of a fused decode projection.
	override map[int]int64
	// lastUse is the index of the last value reading each value's storage.
	lastUse map[int]int
	// qkvBusy is the last index reading the projection scratch.
	qkvBusy int
	// exactMMA splits activations into bf16 hi + lo parts (Options.RoundMMA).
	exactMMA bool
	gemv     MatvecShape // for one-row matvecs
	skip     map[int]bool
}

type scratchRegion struct{ off, size int64 }

// reserve returns the offset of scratch region name, of n bytes, placed
// after the graph's values and the regions reserved before it.
func (l *lowering) reserve(name string, n int64) (int64, error) {
	if r, ok := l.scratch[name]; ok {
		if n > r.size {
			return 0, fmt.Errorf("scratch %s: %d bytes, reserved %d", name, n, r.size)
		}
		return r.off, nil
	}
	off := (l.p.ArenaBytes + 255) &^ 255
	l.scratch[name] = scratchRegion{off, n}
	l.p.ArenaBytes = off + n
	return off, nil
}

func (l *lowering) program(g *ir.Graph) (*plan.Program, error) {
	out := g.Outputs[0]
	l.g = g
	l.launches = nil
	l.scratch = map[string]scratchRegion{}
	l.override = map[int]int64{}
	l.skip = map[int]bool{}
	l.qkvBusy = -1
	l.lastUse = map[int]int{}
	for i, v := range g.Values {
		for _, a := range v.Args {
			r, _ := viewRoot(a)
			l.lastUse[r.ID] = i
		}
	}
	for _, o := range g.Outputs {
		r, _ := viewRoot(o)
		l.lastUse[r.ID] = len(g.Values)
	}
	l.p = &plan.Program{
		Name:       g.Name,
		Tokens:     g.Meta["tokens"],
		ArenaBytes: g.Mem.Bytes,
		Output:     plan.Buffer{Offset: g.Mem.Offsets[out.ID], Rows: out.Shape[0], Cols: out.Shape.Last()},
	}
	for i, v := range g.Values {
		if l.skip[v.ID] {
			continue
		}
		if done, err := l.projections(i); err != nil {
			return nil, fmt.Errorf("%s: %w", ir.FormatValue(v), err)
		} else if done {
			continue
		}
		if done, err := l.mmaProjections(i); err != nil {
			return nil, fmt.Errorf("%s: %w", ir.FormatValue(v), err)
		} else if done {
			continue
		}
		if err := l.lower(v); err != nil {
			return nil, fmt.Errorf("%s: %w", ir.FormatValue(v), err)
		}
	}
	return l.p, nil
}

func (l *lowering) arg(v *ir.Value) plan.Arg {
	if a, ok := l.weights.LeafArg(v); ok {
		return a
	}
	if r, off := viewRoot(v); r != nil {
		if base, ok := l.override[r.ID]; ok {
			return plan.Arg{Kind: plan.ArgArena, Offset: base + off}
		}
	}
	return plan.Arg{Kind: plan.ArgArena, Offset: l.g.Mem.Offsets[v.ID]}
}

// viewRoot follows views to the value owning the storage, with the byte
// offset of v in it (as the memory plan places views).
func viewRoot(v *ir.Value) (*ir.Value, int64) {
	var off int64
	for v.Op.IsView() {
		if p, ok := v.Aux.(ir.Part); ok {
			off += int64(p.Index * v.Shape.Elems() * v.DType.Size())
		}
		v = v.Args[0]
	}
	return v, off
}

// projectionGroup finds the run of two to four matmuls of one input that
// starts at value i, fits saying which may join, and the RoPEs between them
// that read their results. The scan stops at the first other value, so
// only those RoPEs read the projections before the group ends: lowered
// after the group's one launch, they see its results. A group whose scratch
// is still in use by the previous one, or holding a program output (those
// stay where the memory plan puts them), is not taken.
func (l *lowering) projectionGroup(i int, fits func(*ir.Value) bool) (mats, ropes []*ir.Value) {
	vs := l.g.Values
	v := vs[i]
	if !fits(v) || i <= l.qkvBusy {
		return nil, nil
	}
	inGroup := map[int]bool{}
	for j := i; j < len(vs); j++ {
		u := vs[j]
		if u.Op.IsLeaf() || u.Op.IsView() {
			continue
		}
		if fits(u) && u.Args[0] == v.Args[0] && u.Args[1].Shape[1] == v.Args[1].Shape[1] {
			mats = append(mats, u)
			inGroup[u.ID] = true
			continue
		}
		if r, _ := viewRoot(u.Args[0]); u.Op == ir.OpRoPE && inGroup[r.ID] {
			ropes = append(ropes, u)
			continue
		}
		break
	}
	if len(mats) < 2 || len(mats) > 4 {
		return nil, nil
	}
	for _, m := range mats {
		if l.lastUse[m.ID] >= len(vs) {
			return nil, nil
		}
	}
	return mats, ropes
}

// placeProjections moves a group's results (rows each) out of the memory
// plan, which reuses one buffer for them in turn, into the projection
// scratch one after the other, since one launch writes them all while it
// reads their input. It marks them lowered and returns their offsets.
func (l *lowering) placeProjections(i int, mats []*ir.Value, rows int) ([]int64, error) {
	total := 0
	for _, m := range mats {
		total += m.Shape.Last()
	}
	base, err := l.reserve("projections", int64(rows*total)*4)
	if err != nil {
		return nil, err
	}
	offs := make([]int64, len(mats))
	off, busy := base, i
	for j, m := range mats {
		offs[j] = off
		l.override[m.ID] = off
		off += int64(rows*m.Shape.Last()) * 4
		busy = max(busy, l.lastUse[m.ID])
		l.skip[m.ID] = true
	}
	l.qkvBusy = busy
	return offs, nil
}

// projections lowers a decode group (one row, bf16 weights) as one Matvec
// with Split writing the results contiguously, and a pair of RoPEs after
// it as one RoPE2.
func (l *lowering) projections(i int) (bool, error) {
	mats, ropes := l.projectionGroup(i, func(m *ir.Value) bool {
		if m.Op != ir.OpMatMul || m.Args[0].Shape.Rows() != 1 || m.Args[1].DType != ir.BF16 {
			return false
		}
		if a, ok := m.Aux.(ir.MatMul); ok && a.Softcap != 0 {
			return false
		}
		return m.Shape.Last()%4 == 0 && m.Args[1].Shape[0] == m.Shape.Last()
	})
	if mats == nil {
		return false, nil
	}
	x, w0 := mats[0].Args[0], mats[0].Args[1]
	offs, err := l.placeProjections(i, mats, 1)
	if err != nil {
		return false, err
	}
	spec := Matvec{R: 1, K: w0.Shape[1], WType: ir.BF16, MatvecShape: l.gemv}
	args := []plan.Arg{{Kind: plan.ArgArena, Offset: offs[0]}, l.arg(x)}
	for _, m := range mats {
		spec.Split = append(spec.Split, m.Shape.Last())
		spec.N += m.Shape.Last()
		args = append(args, l.arg(m.Args[1]))
	}
	if err := l.call(spec, mats[0].Name+"+", append(args, scalars)...); err != nil {
		return false, err
	}
	for _, r := range ropes {
		l.skip[r.ID] = true
	}
	if len(ropes) == 2 && ropes[0].Shape[0] == ropes[1].Shape[0] && ropes[0].Shape[2] == ropes[1].Shape[2] && l.ropeOK(ropes[0]) == nil && l.ropeOK(ropes[1]) == nil {
		r1, r2 := ropes[0], ropes[1]
		spec := RoPE2{R: r1.Shape[0], NH1: r1.Shape[1], NH2: r2.Shape[1], D: r1.Shape[2],
			Scale1: float64(r1.Aux.(ir.RoPE).Factor()), Scale2: float64(r2.Aux.(ir.RoPE).Factor())}
		return true, l.call(spec, r1.Name+"+", l.arg(r1), l.arg(r1.Args[0]), l.arg(r2), l.arg(r2.Args[0]), plan.Arg{Kind: plan.ArgRoPE}, scalars)
	}
	return true, l.lowerAll(ropes)
}

// mmaProjections lowers a prefill group as one tensor-core launch (MMA with
// Split, one output per matrix), whose blocks then fill the GPU where the
// narrow key and value matrices alone would not.
func (l *lowering) mmaProjections(i int) (bool, error) {
	mats, ropes := l.projectionGroup(i, func(m *ir.Value) bool {
		if m.Op != ir.OpMatMul || m.Args[0].Shape.Rows() < 2 {
			return false
		}
		if a, ok := m.Aux.(ir.MatMul); ok && a.Softcap != 0 {
			return false
		}
		w := m.Args[1]
		return UseMMA(m.Args[0].Shape.Rows(), w.Shape[1], w.Shape[0], w.DType) && w.Shape[0]%mmaBN == 0 &&
			m.Shape.Last() == w.Shape[0]
	})
	if mats == nil {
		return false, nil
	}
	x := mats[0].Args[0]
	R := x.Shape.Rows()
	offs, err := l.placeProjections(i, mats, R)
	if err != nil {
		return false, err
	}
	spec := MMA{R: R, K: mats[0].Args[1].Shape[1], Exact: l.exactMMA}
	var outs, ws []plan.Arg
	for j, m := range mats {
		spec.Split = append(spec.Split, m.Shape.Last())
		spec.N += m.Shape.Last()
		outs = append(outs, plan.Arg{Kind: plan.ArgArena, Offset: offs[j]})
		ws = append(ws, l.arg(m.Args[1]))
	}
	xa := l.arg(x)
	if err := mmaAligned(spec, outs[0], xa); err != nil {
		return false, err
	}
	args := append(append(append(outs, xa), ws...), scalars)
	if err := l.call(spec, mats[0].Name+"+", args...); err != nil {
		return false, err
	}
	for _, r := range ropes {
		l.skip[r.ID] = true
	}
	return true, l.lowerAll(ropes)
}

// lowerAll lowers vs in order.
func (l *lowering) lowerAll(vs []*ir.Value) error {
	for _, v := range vs {
		if err := l.lower(v); err != nil {
			return err
		}
	}
	return nil
}

// attnScratch is the most scratch any decode attention of the graph needs.
func (l *lowering) attnScratch() int64 {
	var n int64
	for _, v := range l.g.Values {
		if v.Op != ir.OpAttention || v.Shape[0] != 1 {
			continue
		}
		a := v.Aux.(ir.Attention)
		if layer := l.g.KV.Layer(a.Layer); layer != nil {
			n = max(n, AttnScratchBytes(v.Shape[1], v.Shape[2], attnSplits(a.Window, layer.Slots)))
		}
	}
	return n
}

func (l *lowering) ropeOK(v *ir.Value) error {
	r := v.Aux.(ir.RoPE)
	art := l.c.Artifact
	if r.Theta != float32(art.RoPE.Theta) || v.Shape[2] != art.RoPE.Dim {
		return fmt.Errorf("rope θ %g dim %d differs from the table's %g, %d", r.Theta, v.Shape[2], art.RoPE.Theta, art.RoPE.Dim)
	}
	return nil
}

var scalars = plan.Arg{Kind: plan.ArgScalars}

func (l *lowering) call(spec Spec, label string, args ...plan.Arg) error {
	k, err := l.mod.Add(spec)
	if err != nil {
		return err
	}
	if len(args) != len(spec.Params()) {
		return fmt.Errorf("%s: %d args for %d params", spec.Name(), len(args), len(spec.Params()))
	}
	ln := spec.Launch()
	l.p.Steps = append(l.p.Steps, plan.Step{
		Kernel: k, Items: int64(ln.Grid[0]) * int64(ln.Grid[1]) * int64(ln.Grid[2]), Granule: 1,
		Args: args, Label: label,
	})
	l.launches = append(l.launches, ln)
	return nil
}

func (l *lowering) matmulSpec(r, k, n int, wt ir.DType, softcap float64, geglu bool) Spec {
	if UseMMA(r, k, n, wt) {
		return MMA{R: r, K: k, N: n, Softcap: softcap, GeGLU: geglu, Exact: l.exactMMA}
	}
	mv := Matvec{R: r, K: k, N: n, WType: wt, Softcap: softcap, GeGLU: geglu}
	if r == 1 {
		mv.MatvecShape = l.gemv
	}
	return mv
}

func (l *lowering) lower(v *ir.Value) error {
	a := func(i int) plan.Arg { return l.arg(v.Args[i]) }
	out := l.arg(v)
	switch v.Op {
	case ir.OpInput, ir.OpWeight, ir.OpReshape, ir.OpPart:
		return nil
	case ir.OpEmbed:
		table := v.Args[0]
		scale := float32(1)
		if e, ok := v.Aux.(ir.Embed); ok {
			scale = e.Factor()
		}
		spec := Embed{R: v.Shape[0], H: v.Shape[1], V: table.Shape[0], TType: table.DType, Scale: float64(scale)}
		return l.call(spec, v.Name, out, a(0), a(1), scalars)
	case ir.OpMatMul:
		w := v.Args[1]
		var softcap float64
		if m, ok := v.Aux.(ir.MatMul); ok {
			softcap = float64(m.Softcap)
		}
		spec := l.matmulSpec(v.Args[0].Shape.Rows(), w.Shape[1], w.Shape[0], w.DType, softcap, false)
		if err := mmaAligned(spec, out, a(0)); err != nil {
			return err
		}
		return l.call(spec, v.Name, out, a(0), a(1), scalars)
	case ir.OpGeGLU:
		w := v.Args[1]
		spec := l.matmulSpec(v.Args[0].Shape.Rows(), w.Shape[1], w.Shape[0], w.DType, 0, true)
		if err := mmaAligned(spec, out, a(0)); err != nil {
			return err
		}
		return l.call(spec, v.Name, out, a(0), a(1), a(2), scalars)
	case ir.OpRMSNorm:
		norm := v.Aux.(ir.RMSNorm)
		if norm.Offset != 0 || v.Args[1].DType != ir.F32 {
			return fmt.Errorf("rmsnorm weight must be folded to f32 (run the fold pass)")
		}
		spec := RMSNorm{R: v.Shape.Rows(), H: v.Shape.Last(), Eps: float64(norm.Eps)}
		if err := vecAligned(spec.H, out, a(0)); err != nil {
			return err
		}
		return l.call(spec, v.Name, out, a(0), a(1), scalars)
	case ir.OpAddRMSNorm:
		norm := v.Aux.(ir.RMSNorm)
		if norm.Offset != 0 {
			return fmt.Errorf("rmsnorm weights must be folded (run the fold pass)")
		}
		x := v.Args[0]
		spec := AddRMSNorm{R: x.Shape.Rows(), H: x.Shape.Last(), Eps: float64(norm.Eps)}
		half := int64(x.Shape.Elems() * 4)
		normOut := plan.Arg{Kind: plan.ArgArena, Offset: out.Offset + half}
		if err := vecAligned(spec.H, out, normOut, a(0), a(1)); err != nil {
			return err
		}
		return l.call(spec, v.Name, out, normOut, a(0), a(1), a(2), a(3), scalars)
	case ir.OpRoPE:
		r := v.Aux.(ir.RoPE)
		if err := l.ropeOK(v); err != nil {
			return err
		}
		spec := RoPE{R: v.Shape[0], NH: v.Shape[1], D: v.Shape[2], Scale: float64(r.Factor())}
		return l.call(spec, v.Name, out, a(0), plan.Arg{Kind: plan.ArgRoPE}, scalars)
	case ir.OpAttention:
		return l.attention(v, out)
	case ir.OpSelectRow:
		spec := SelectRow{R: v.Args[0].Shape[0], H: v.Shape[1]}
		return l.call(spec, v.Name, out, a(0), scalars)
	case ir.OpAdd, ir.OpMul:
		op := OpAdd
		if v.Op == ir.OpMul {
			op = OpMul
		}
		return l.call(Elementwise{N: v.Shape.Elems(), Op: op}, v.Name, out, a(0), a(1))
	case ir.OpScale, ir.OpSoftcap:
		op := OpScale
		if v.Op == ir.OpSoftcap {
			op = OpSoftcap
		}
		c := float64(v.Aux.(ir.Scalar).C)
		return l.call(Elementwise{N: v.Shape.Elems(), Op: op, C: c}, v.Name, out, a(0))
	case ir.OpGeluTanh:
		return l.call(Elementwise{N: v.Shape.Elems(), Op: OpGelu}, v.Name, out, a(0))
	}
	return fmt.Errorf("the PTX code generator has no lowering for %v", v.Op)
}

// mmaAligned checks that a tensor-core matmul's activations start 16-byte
// aligned (cp.async copies 16 bytes) and its output 8-byte aligned.
func mmaAligned(spec Spec, out, x plan.Arg) error {
	if _, ok := spec.(MMA); !ok {
		return nil
	}
	if x.Kind == plan.ArgArena && x.Offset%16 != 0 || out.Kind == plan.ArgArena && out.Offset%8 != 0 {
		return fmt.Errorf("%s: arena offsets %d (x) and %d (out) are not 16- and 8-byte aligned", spec.Name(), x.Offset, out.Offset)
	}
	return nil
}

// vecAligned checks that the rows the norm kernels read and write with
// 16-byte vectors (when h is a multiple of 4) start 16-byte aligned.
func vecAligned(h int, args ...plan.Arg) error {
	if newNormRow(h).vw == 1 {
		return nil
	}
	for _, a := range args {
		if a.Kind == plan.ArgArena && a.Offset%16 != 0 {
			return fmt.Errorf("arena offset %d is not 16-byte aligned for vector loads", a.Offset)
		}
	}
	return nil
}

// attention attends, then stores the chunk's keys and values: two kernels,
// so no query reads a slot the same chunk has already overwritten.
func (l *lowering) attention(v *ir.Value, out plan.Arg) error {
	a := v.Aux.(ir.Attention)
	layer := l.g.KV.Layer(a.Layer)
	if layer == nil {
		return fmt.Errorf("no cache layout for layer %d (run the kvcache pass)", a.Layer)
	}
	T, HQ, D := v.Shape[0], v.Shape[1], v.Shape[2]
	HKV := v.Args[1].Shape[1]
	kc := plan.Arg{Kind: plan.ArgKV, Offset: layer.KOffset}
	vc := plan.Arg{Kind: plan.ArgKV, Offset: layer.VOffset}
	q, k, val := l.arg(v.Args[0]), l.arg(v.Args[1]), l.arg(v.Args[2])
	spec := Attention{T: T, HQ: HQ, HKV: HKV, D: D, Window: a.Window, CacheLen: layer.Slots,
		Softcap: float64(a.Softcap), Scale: float64(a.Scale)}
	if T == 1 {
		// Decode: split the keys over S blocks per head, then combine the
		// partials and store the token's key and value (flash-decoding).
		S := attnSplits(a.Window, layer.Slots)
		off, err := l.reserve("attention", l.attnScratch())
		if err != nil {
			return err
		}
		part := plan.Arg{Kind: plan.ArgArena, Offset: off}
		if err := l.call(AttnPartial{A: spec, S: S}, v.Name+".partial", part, q, k, val, kc, vc, scalars); err != nil {
			return err
		}
		comb := AttnCombine{HQ: HQ, HKV: HKV, D: D, Window: a.Window, CacheLen: layer.Slots, S: S}
		return l.call(comb, v.Name, out, part, kc, vc, k, val, scalars)
	}
	if err := l.call(spec, v.Name, out, q, k, val, kc, vc, scalars); err != nil {
		return err
	}
	store := KVStore{T: T, HKV: HKV, D: D, CacheLen: layer.Slots}
	return l.call(store, v.Name+".store", kc, vc, k, val, scalars)
}
