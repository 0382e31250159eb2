package cuda

import (
	"fmt"
	"sort"
	"unsafe"
)

// KernelTime is the GPU time of one kernel over a profiled step.
type KernelTime struct {
	Kernel string  `json:"kernel"`
	Calls  int     `json:"calls"`
	Ms     float64 `json:"ms"`
}

// ProfileDecode runs one decode step at pos with an event after every
// launch and returns the time per kernel, most expensive first. The cache
// is written as by a real step.
func (s *State) ProfileDecode(token int32, pos int) ([]KernelTime, error) {
	return s.Profile("decode", []int32{token}, pos)
}

// Profile runs one call of program name (decode, prefill, prefill_all) on
// tokens at pos as ProfileDecode does.
func (s *State) Profile(name string, tokens []int32, pos int) ([]KernelTime, error) {
	e := s.e
	release, err := e.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	p := e.c.Artifact.Programs[name]
	if p == nil {
		return nil, fmt.Errorf("the model has no %s program", name)
	}
	if err := s.setInput(p, tokens, pos); err != nil {
		return nil, err
	}
	d := e.dev.d
	events := make([]uintptr, len(p.Steps)+1)
	for i := range events {
		if err := d.check("cuEventCreate", d.call("cuEventCreate", uintptr(unsafe.Pointer(&events[i])), 0)); err != nil {
			return nil, err
		}
		defer d.call("cuEventDestroy_v2", events[i])
	}
	d.call("cuEventRecord", events[0], e.stream)
	for i, st := range p.Steps {
		l := e.c.Launches[name][i]
		prm := s.params[name][i]
		if err := e.dev.launch(e.funcs[st.Kernel], l.Grid, l.Block, l.Shared, e.stream, unsafe.Pointer(&prm[0])); err != nil {
			return nil, fmt.Errorf("%s step %d: %w", name, i, err)
		}
		d.call("cuEventRecord", events[i+1], e.stream)
	}
	if err := d.check("cuEventSynchronize", d.call("cuEventSynchronize", events[len(events)-1])); err != nil {
		return nil, err
	}
	byName := map[string]*KernelTime{}
	for i, st := range p.Steps {
		var ms float32
		if err := d.check("cuEventElapsedTime", d.call("cuEventElapsedTime", uintptr(unsafe.Pointer(&ms)), events[i], events[i+1])); err != nil {
			return nil, err
		}
		name := e.c.Artifact.Kernels[st.Kernel]
		k := byName[name]
		if k == nil {
			k = &KernelTime{Kernel: name}
			byName[name] = k
		}
		k.Calls++
		k.Ms += float64(ms)
	}
	var out []KernelTime
	for _, k := range byName {
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ms > out[j].Ms })
	return out, nil
}
