// Package codegen lowers gemmac kernels to LLVM IR (built with llir/llvm) and
// drives LLVM 14's opt/llc to turn them into object files.
//
// Every kernel has the C signature
//
//	void NAME(i8** args, i64 lo, i64 hi)
//
// and does work items [lo, hi). Each Spec documents its args and items.
package codegen

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/llir/llvm/ir"
	"github.com/llir/llvm/ir/constant"
	"github.com/llir/llvm/ir/enum"
	"github.com/llir/llvm/ir/types"
)

// Spec is one specialised kernel. Shapes, dtypes and constants are baked in.
type Spec interface {
	// Name is the symbol name; it encodes every field, so equal names mean
	// equal kernels.
	Name() string
	// Items is the number of work items of one full call ([0, Items())).
	Items() int64
	// Granule: the runtime should split [0, Items()) at multiples of it
	// (the last range may end at Items()). Kernels are correct for any split.
	Granule() int64
	// Args names the pointers of the args array, in order.
	Args() []string
	// Validate reports a spec the kernel cannot be generated for.
	Validate() error

	emit(g *gen)
}

// Module collects kernels for one target.
type Module struct {
	Target Target
	// Table names the kernel table and, with "_count", its length ("": the
	// gemmac_kernels and gemmac_kernel_count of a binary or a shared object,
	// whose kernels are also found by name). A module given its own table
	// keeps its kernels internal, reachable only through the table, so one
	// program can link several such objects (emitted packages).
	Table   string
	m       *ir.Module
	specs   []Spec
	funcs   []*ir.Func
	byName  map[string]int
	intrins map[string]*ir.Func
}

// NewModule returns an empty module for target t.
func NewModule(t Target) *Module {
	m := ir.NewModule()
	m.TargetTriple = t.Triple
	return &Module{Target: t, m: m, byName: map[string]int{}, intrins: map[string]*ir.Func{}}
}

// Add generates the kernel for spec (once per distinct name) and returns its
// index in the kernel table.
func (m *Module) Add(spec Spec) (int, error) {
	name := spec.Name()
	if i, ok := m.byName[name]; ok {
		return i, nil
	}
	if err := spec.Validate(); err != nil {
		return -1, fmt.Errorf("codegen: %s: %w", name, err)
	}
	argsP := ir.NewParam("args", tI8PP)
	lo := ir.NewParam("lo", tI64)
	hi := ir.NewParam("hi", tI64)
	f := m.m.NewFunc(name, tVoid, argsP, lo, hi)
	f.FuncAttrs = append(f.FuncAttrs, enum.FuncAttrNoUnwind)
	if m.Target.isX86() {
		bits := strconv.Itoa(m.Target.VectorBits())
		f.FuncAttrs = append(f.FuncAttrs,
			ir.AttrPair{Key: "min-legal-vector-width", Value: bits},
			ir.AttrPair{Key: "prefer-vector-width", Value: bits})
	}
	g := &gen{m: m, t: m.Target, f: f, args: argsP, lo: lo, hi: hi}
	g.b = g.block("entry")
	spec.emit(g)
	g.b.NewRet(nil)
	i := len(m.specs)
	m.specs = append(m.specs, spec)
	m.funcs = append(m.funcs, f)
	m.byName[name] = i
	return i, nil
}

// MustAdd is Add for specs known to be valid; it panics on error.
func (m *Module) MustAdd(spec Spec) int {
	i, err := m.Add(spec)
	if err != nil {
		panic(err)
	}
	return i
}

// Specs returns the kernels in table order.
func (m *Module) Specs() []Spec { return append([]Spec(nil), m.specs...) }

// Len is the number of kernels.
func (m *Module) Len() int { return len(m.specs) }

// intrinsic declares (once) and returns an LLVM intrinsic.
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

// String returns the module as LLVM 14 textual IR, including the kernel
// table ([n x i8*]) and its length (i64), named as Table says.
func (m *Module) String() string {
	// The table globals are rebuilt on every call so Add may follow String.
	saved := m.m.Globals
	defer func() { m.m.Globals = saved }()
	m.m.Globals = append([]*ir.Global(nil), saved...)
	table, count := "gemmac_kernels", "gemmac_kernel_count"
	linkage := enum.LinkageNone
	if m.Table != "" {
		table, count, linkage = m.Table, m.Table+"_count", enum.LinkageInternal
	}
	elems := make([]constant.Constant, len(m.funcs))
	for i, f := range m.funcs {
		f.Linkage = linkage
		elems[i] = constant.NewBitCast(f, tI8P)
	}
	at := types.NewArray(uint64(len(elems)), tI8P)
	tbl := ir.NewGlobalDef(table, constant.NewArray(at, elems...))
	if len(elems) == 0 {
		tbl = ir.NewGlobalDef(table, constant.NewZeroInitializer(at))
	}
	tbl.Immutable = true
	tbl.Align = 8
	cnt := ir.NewGlobalDef(count, ci64(int64(len(elems))))
	cnt.Immutable = true
	cnt.Align = 8
	m.m.Globals = append(m.m.Globals, tbl, cnt)
	return m.m.String()
}

// fname formats a float for a kernel name: 30 → "30", 0.0625 → "0p0625", -1 → "m1".
func fname(v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 32)
	s = strings.ReplaceAll(s, ".", "p")
	s = strings.ReplaceAll(s, "-", "m")
	s = strings.ReplaceAll(s, "+", "")
	return s
}

func positive(what string, vs ...int) error {
	for _, v := range vs {
		if v <= 0 {
			return fmt.Errorf("%s must be positive", what)
		}
	}
	return nil
}
