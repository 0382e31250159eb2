// Package ptx is gemmac's GPU target: it lowers the fused Gemma-2 graphs
// (frontend.Build + passes.Run, as for the CPU) to LLVM IR for
// nvptx64-nvidia-cuda, built with llir/llvm, and compiles that to PTX text
// with LLVM 14's llc. The plan it produces is the CPU's plan format
// (runtime/plan) plus one launch configuration per step; runtime/cuda runs it.
//
// Every kernel takes plain pointer parameters (.u64 in PTX), one per plan
// argument of its step, in order: the arena, weights, KV cache, token ids,
// scalars {pos, n_valid} (two i64) and the RoPE table all live in device
// memory, so the launches of a program never change between calls and a
// decode step can be captured once as a CUDA graph.
package ptx

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/llir/llvm/ir"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
)

// Launch is a kernel's launch configuration.
type Launch struct {
	Grid   [3]uint32 `json:"grid"`
	Block  [3]uint32 `json:"block"`
	Shared uint32    `json:"shared,omitempty"` // dynamic shared memory bytes
}

func launch1(grid, block int) Launch {
	return Launch{Grid: [3]uint32{uint32(grid), 1, 1}, Block: [3]uint32{uint32(block), 1, 1}}
}

// Spec is one specialised GPU kernel; shapes and constants are baked in.
type Spec interface {
	// Name is the entry name; equal names mean equal kernels.
	Name() string
	// Params names the pointer parameters, in order.
	Params() []string
	// Launch is the configuration every call uses.
	Launch() Launch
	Validate() error
	emit(k *kb)
}

// Entry is one kernel entry point of the PTX module.
type Entry struct {
	Name   string `json:"name"`
	Params int    `json:"params"`
}

// Module collects kernels for one GPU target.
type Module struct {
	Target  Target
	m       *ir.Module
	specs   []Spec
	funcs   []*ir.Func
	byName  map[string]int
	intrins map[string]*ir.Func
	nshared int
}

// NewModule returns an empty module.
func NewModule(t Target) *Module {
	m := ir.NewModule()
	m.TargetTriple = "nvptx64-nvidia-cuda"
	m.DataLayout = "e-i64:64-i128:128-v16:16-v32:32-n16:32:64"
	return &Module{Target: t, m: m, byName: map[string]int{}, intrins: map[string]*ir.Func{}}
}

var tParam = gptr(types.I8)

// Add generates spec's kernel once per distinct name and returns its index.
func (m *Module) Add(spec Spec) (int, error) {
	name := spec.Name()
	if i, ok := m.byName[name]; ok {
		return i, nil
	}
	if err := spec.Validate(); err != nil {
		return -1, fmt.Errorf("ptx: %s: %w", name, err)
	}
	params := make([]*ir.Param, len(spec.Params()))
	for i, p := range spec.Params() {
		params[i] = ir.NewParam(p, tParam)
		params[i].Attrs = append(params[i].Attrs, enum.ParamAttrNoAlias)
	}
	f := m.m.NewFunc(name, tVoid, params...)
	f.FuncAttrs = append(f.FuncAttrs, enum.FuncAttrNoUnwind)
	k := &kb{m: m, f: f, params: params}
	k.b = k.block("entry")
	k.exit = k.block("ret")
	k.exit.NewRet(nil)
	if m.Target.PDL() {
		// Programmatic dependent launch: the next kernel in the stream may
		// launch now, and this one waits here until the kernels before it
		// have finished and their writes are visible, before any memory
		// access on any path.
		k.asm("griddepcontrol.launch_dependents;")
		k.asm("griddepcontrol.wait;")
	}
	spec.emit(k)
	k.b.NewBr(k.exit)
	i := len(m.specs)
	m.specs = append(m.specs, spec)
	m.funcs = append(m.funcs, f)
	m.byName[name] = i
	return i, nil
}

// Specs returns the kernels in table order.
func (m *Module) Specs() []Spec { return append([]Spec(nil), m.specs...) }

// Entries lists the kernel entry points with their parameter counts.
func (m *Module) Entries() []Entry {
	out := make([]Entry, len(m.specs))
	for i, s := range m.specs {
		out[i] = Entry{Name: s.Name(), Params: len(s.Params())}
	}
	return out
}

func (m *Module) intrinsic(name string, ret types.Type, params ...types.Type) *ir.Func {
	if f, ok := m.intrins[name]; ok {
		return f
	}
	ps := make([]*ir.Param, len(params))
	for i, p := range params {
		ps[i] = ir.NewParam("", p)
	}
	f := m.m.NewFunc(name, ret, ps...)
	m.intrins[name] = f
	return f
}

// String returns the module as LLVM 14 IR, with every kernel marked as an
// entry point in !nvvm.annotations.
func (m *Module) String() string {
	var b strings.Builder
	b.WriteString(m.m.String())
	if len(m.funcs) == 0 {
		return b.String()
	}
	refs := make([]string, len(m.funcs))
	for i := range m.funcs {
		refs[i] = "!" + strconv.Itoa(i)
	}
	fmt.Fprintf(&b, "\n!nvvm.annotations = !{%s}\n", strings.Join(refs, ", "))
	for i, f := range m.funcs {
		fmt.Fprintf(&b, "!%d = !{%s %s, !\"kernel\", i32 1}\n", i, f.Type(), f.Ident())
	}
	return b.String()
}

// fname formats a float for a kernel name: 30 → "30", 0.0625 → "0p0625".
func fname(v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 32)
	s = strings.ReplaceAll(s, ".", "p")
	s = strings.ReplaceAll(s, "-", "m")
	return strings.ReplaceAll(s, "+", "")
}

func positive(what string, vs ...int) error {
	for _, v := range vs {
		if v <= 0 {
			return fmt.Errorf("%s must be positive", what)
		}
	}
	return nil
}
