package frontend

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/gemmac/gemmac/frontend/mmap"
	"github.com/gemmac/gemmac/ir"
)

// Conversion says which dtype each weight of a checkpoint takes when it is
// re-encoded at build (or load) time. The zero value keeps every tensor as
// stored.
type Conversion struct {
	// Layers is the dtype of the decoder layers' projection matrices (q, k,
	// v, o, gate, up, down); 0 keeps them as stored.
	Layers ir.DType
	// Embed is the dtype of the embedding table, which is also the LM head
	// when the embeddings are tied; 0 means DefaultEmbedDType(Layers).
	Embed ir.DType
	// LlamaRounding encodes q4_0 with llama.cpp's reference rule, byte for
	// byte what llama-quantize writes, instead of searching each block's
	// scale for the least squared error (ir.QuantizeRowSearched: 8% lower
	// KL divergence on the 2B shape). q8_0 is llama.cpp's either way.
	LlamaRounding bool
}

// DefaultEmbedDType is the embedding's dtype when only the layers' is given.
// Quantised layers keep a q8_0 embedding: tied to the LM head, its error lands
// on the logits directly (llama.cpp keeps the output matrix at higher
// precision for the same reason), and at 8 bits it still reads half the bytes
// of bf16 per token.
func DefaultEmbedDType(layers ir.DType) ir.DType {
	if layers.IsQuantized() {
		return ir.Q8_0
	}
	return layers
}

// ParseConversion reads the --dtype, --embed-dtype ("" = keep) and
// --llama-rounding flags.
func ParseConversion(layers, embed string, llamaRounding bool) (Conversion, error) {
	c := Conversion{LlamaRounding: llamaRounding}
	var err error
	if layers != "" {
		if c.Layers, err = weightDType(layers); err != nil {
			return c, fmt.Errorf("--dtype: %w", err)
		}
	}
	if embed != "" {
		if c.Embed, err = weightDType(embed); err != nil {
			return c, fmt.Errorf("--embed-dtype: %w", err)
		}
	}
	return c, nil
}

func weightDType(s string) (ir.DType, error) {
	d, err := ir.ParseDType(s)
	if err != nil || !(d == ir.F32 || d == ir.BF16 || d == ir.Q8_0 || d == ir.Q4_0) {
		return 0, fmt.Errorf("unknown weight dtype %q (want f32, bf16, q8_0 or q4_0)", s)
	}
	return d, nil
}

// IsZero reports whether c keeps every tensor as stored.
func (c Conversion) IsZero() bool { return c.Layers == 0 && c.Embed == 0 }

// String is how the conversion reads on a command line.
func (c Conversion) String() string {
	if c.IsZero() {
		return "as stored"
	}
	s := ""
	if c.Layers != 0 {
		s = "layers " + c.Layers.String() + ", "
	}
	s += "embedding " + c.embed().String()
	switch {
	case c.Layers != ir.Q4_0 && c.embed() != ir.Q4_0:
	case c.LlamaRounding:
		s += " (llama.cpp's q4_0 rounding)"
	default:
		s += " (searched q4_0 scales)"
	}
	return s
}

// embed is the embedding's dtype: Embed, or the default for Layers.
func (c Conversion) embed() ir.DType {
	if c.Embed == 0 {
		return DefaultEmbedDType(c.Layers)
	}
	return c.Embed
}

// Target is the dtype the tensor name of cfg takes, or (0, false) when it is
// kept as stored (norm scales always are: they are read once per token and
// folded into f32 by the compiler).
func (c Conversion) Target(cfg *Config, name string) (ir.DType, bool) {
	if name == EmbedName || name == LMHeadName {
		dt := c.embed()
		return dt, dt != 0
	}
	if c.Layers == 0 || !isProjection(cfg, name) {
		return 0, false
	}
	return c.Layers, true
}

func isProjection(cfg *Config, name string) bool {
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		l := Layer(i)
		switch name {
		case l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down:
			return true
		}
	}
	return false
}

// DTypes is the dtype of every weight of ckpt after the conversion.
func (c Conversion) DTypes(ckpt *Checkpoint) map[string]ir.DType {
	out := ckpt.WeightDTypes()
	for name := range out {
		if to, ok := c.Target(ckpt.Config, name); ok {
			out[name] = to
		}
	}
	return out
}

// Changes reports whether converting ckpt re-encodes any tensor.
func (c Conversion) Changes(ckpt *Checkpoint) bool {
	for name, t := range ckpt.Weights {
		if to, ok := c.Target(ckpt.Config, name); ok && to != t.DType {
			return true
		}
	}
	return false
}

// ConvertTensor re-encodes t as dtype to: through f32, rounding to nearest
// even for bf16, with llama.cpp's quantiser for q8_0, and for q4_0 with
// searched scales or, with llamaRounding, llama.cpp's.
func ConvertTensor(t ir.Tensor, to ir.DType, llamaRounding bool) (ir.Tensor, error) {
	if t.DType == to {
		return t, nil
	}
	if to.IsQuantized() && t.DType.IsQuantized() {
		return ir.Tensor{}, fmt.Errorf("%v tensor cannot be re-quantised as %v (convert from the f32/bf16/f16 checkpoint)", t.DType, to)
	}
	if _, err := to.TensorBytes(t.Shape); err != nil {
		return ir.Tensor{}, err
	}
	if to.IsQuantized() {
		return quantizeTensor(t, to, llamaRounding)
	}
	f, err := t.Float32s()
	if err != nil {
		return ir.Tensor{}, err
	}
	shape := append(ir.Shape(nil), t.Shape...)
	switch to {
	case ir.F32:
		return ir.Tensor{DType: ir.F32, Shape: shape, Data: f32Bytes(f)}, nil
	case ir.BF16:
		data := make([]byte, 2*len(f))
		for i, v := range f {
			b := ir.F32ToBF16(v)
			data[2*i], data[2*i+1] = byte(b), byte(b>>8)
		}
		return ir.Tensor{DType: ir.BF16, Shape: shape, Data: data}, nil
	}
	return ir.Tensor{}, fmt.Errorf("cannot convert weights to %v", to)
}

// quantizeChunkFloats bounds the rows quantizeTensor decodes at a time:
// 256 KB of f32, reused, instead of a fresh copy of the whole tensor
// (gigabytes for an embedding) whose page faults the build paid for.
const quantizeChunkFloats = 1 << 16

// quantizeTensor encodes the f32/bf16/f16 tensor t (rows of whole blocks,
// checked by the caller) as the quantised dtype to, a chunk of rows at a
// time.
func quantizeTensor(t ir.Tensor, to ir.DType, llamaRounding bool) (ir.Tensor, error) {
	if err := t.Check(); err != nil {
		return ir.Tensor{}, err
	}
	cols := t.Shape[len(t.Shape)-1]
	rows := t.Shape.Elems() / max(cols, 1)
	n, _ := to.TensorBytes(t.Shape)
	out := ir.Tensor{DType: to, Shape: append(ir.Shape(nil), t.Shape...), Data: make([]byte, n)}
	step := max(1, quantizeChunkFloats/max(cols, 1))
	inRow, outRow := cols*t.DType.Size(), to.BytesFor(cols)
	quantize := ir.QuantizeRowSearched
	if llamaRounding {
		quantize = ir.QuantizeRow
	}
	// rowsFrom quantises rows [lo, hi) a chunk at a time.
	rowsFrom := func(lo, hi int) error {
		buf := make([]float32, min(hi-lo, step)*cols)
		for r := lo; r < hi; r += step {
			k := min(step, hi-r)
			part := ir.Tensor{DType: t.DType, Shape: ir.Shape{k, cols}, Data: t.Data[r*inRow : (r+k)*inRow]}
			if err := part.DecodeInto(buf[:k*cols]); err != nil {
				return err
			}
			if err := quantize(to, buf[:k*cols], out.Data[r*outRow:(r+k)*outRow]); err != nil {
				return err
			}
		}
		return nil
	}
	// A tensor of many chunks is split across the CPUs too: ConvertEach
	// emits in order, so one large tensor (the embedding, a layer's down
	// projection) would otherwise run alone while the tensors after it
	// wait in its window.
	parts := min(runtime.GOMAXPROCS(0), (rows+step-1)/step/4)
	if parts <= 1 {
		return out, rowsFrom(0, rows)
	}
	per := (rows + parts - 1) / parts
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = rowsFrom(min(rows, p*per), min(rows, (p+1)*per))
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func f32Bytes(f []float32) []byte {
	data := make([]byte, 4*len(f))
	for i, v := range f {
		bits := math.Float32bits(v)
		data[4*i], data[4*i+1], data[4*i+2], data[4*i+3] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
	}
	return data
}

// ConvertEach converts every weight of ckpt that c changes, calling emit with
// each tensor (converted or as stored) in WeightSpecs order. Tensors are
// converted by all CPUs at once, and memory holds only the few in flight,
// not the converted model: a window of two more tensors than CPUs, so the
// CPUs go on with the next tensors while emit waits for a large one. Once
// emit has returned, the stored tensor's mapped pages leave the resident
// set (they stay in the page cache): emit must copy what it keeps.
func (c Conversion) ConvertEach(ckpt *Checkpoint, emit func(name string, t ir.Tensor) error) error {
	specs := ckpt.Config.WeightSpecs()
	type result struct {
		t   ir.Tensor
		err error
	}
	workers := runtime.GOMAXPROCS(0)
	results := make([]chan result, len(specs))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	window := make(chan struct{}, workers+2) // tensors started, not yet emitted
	running := make(chan struct{}, workers)  // tensors being converted
	var wg sync.WaitGroup
	go func() {
		for i, s := range specs {
			window <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				running <- struct{}{}
				defer func() { <-running }()
				t, ok := ckpt.Weights[s.Name]
				if !ok {
					results[i] <- result{err: fmt.Errorf("checkpoint has no tensor %s", s.Name)}
					return
				}
				if to, ok := c.Target(ckpt.Config, s.Name); ok {
					var err error
					if t, err = ConvertTensor(t, to, c.LlamaRounding); err != nil {
						err = fmt.Errorf("tensor %s: %w", s.Name, err)
					}
					results[i] <- result{t, err}
					return
				}
				results[i] <- result{t: t}
			}()
		}
	}()
	var firstErr error
	for i, s := range specs {
		r := <-results[i]
		if firstErr == nil {
			firstErr = r.err
			if firstErr == nil {
				firstErr = emit(s.Name, r.t)
			}
		}
		if !ckpt.InMemory {
			mmap.Release(ckpt.Weights[s.Name].Data)
		}
		<-window
	}
	wg.Wait()
	return firstErr
}

// Convert returns a checkpoint with ckpt's config and side data whose
// weights are converted by c (the interpreter and the JIT engine run it as
// they run a stored one). Every tensor, converted or kept, is copied into
// anonymous memory the new checkpoint owns (mmap.Anon: huge pages, which
// the compiled engine reads in place instead of staging a second copy);
// its Close frees them, and ckpt may be closed first.
func Convert(ckpt *Checkpoint, c Conversion) (*Checkpoint, error) {
	out := *ckpt
	out.files, out.gguf, out.InMemory, out.owned = nil, nil, true, nil
	out.Weights = make(map[string]ir.Tensor, len(ckpt.Weights))
	err := c.ConvertEach(ckpt, func(name string, t ir.Tensor) error {
		mem, err := mmap.Anon(len(t.Data))
		if err != nil {
			return fmt.Errorf("tensor %s: %w", name, err)
		}
		out.owned = append(out.owned, mem)
		copy(mem, t.Data)
		t.Data = mem
		out.Weights[name] = t
		return nil
	})
	if err != nil {
		out.Close()
		return nil, err
	}
	// The converted tensors passed through the heap a few at a time: give
	// that memory back now rather than whenever the scavenger gets to it.
	debug.FreeOSMemory()
	out.Notes = append(append([]string(nil), ckpt.Notes...), "weights converted: "+c.String())
	return &out, nil
}

// Fingerprint identifies a build's weights: the config and every tensor's
// name, dtype and shape. A packed weights file carries the fingerprint of
// the build that wrote it.
func Fingerprint(cfg *Config, dtypes map[string]ir.DType) (string, error) {
	js, err := cfg.Marshal()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(js)
	for _, s := range cfg.WeightSpecs() {
		fmt.Fprintf(h, "\n%s %v %v", s.Name, dtypes[s.Name], s.Shape)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
