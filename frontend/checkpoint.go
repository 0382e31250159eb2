package frontend

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/gemmac/gemmac/frontend/gguf"
	"github.com/gemmac/gemmac/frontend/mmap"
	"github.com/gemmac/gemmac/frontend/safetensors"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/tokenizer"
)

// Checkpoint is an opened model: its config and its weights bound by their
// Hugging Face names, still memory-mapped (no weight matrix is copied into
// the heap).
type Checkpoint struct {
	// Dir is the model directory (for a GGUF, the directory holding it).
	Dir     string
	Config  *Config
	Weights map[string]ir.Tensor
	// File is the GGUF file's path; "" for a safetensors directory.
	File string
	// Tokenizer and ChatTemplate come from a GGUF's metadata (nil and ""
	// when it has none, and for a safetensors directory, whose
	// tokenizer.json and tokenizer_config.json lie beside the weights).
	Tokenizer    *tokenizer.Tokenizer
	ChatTemplate string
	// Notes record what opening decided rather than read (defaults taken,
	// conventions converted), for gemmac inspect.
	Notes []string
	// InMemory is set when the weights were converted (Convert) into
	// anonymous memory the checkpoint owns, in huge pages where the system
	// grants them, rather than mapped from files: engines may read them in
	// place.
	InMemory bool
	files    *safetensors.Checkpoint
	gguf     *gguf.File
	owned    [][]byte // InMemory: the tensors' memory (mmap.Anon)
}

// Close unmaps the weights; tensors taken from the checkpoint die with it.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, b := range c.owned {
		errs = append(errs, mmap.Unmap(b))
	}
	c.owned = nil
	if c.files != nil {
		errs = append(errs, c.files.Close())
	}
	if c.gguf != nil {
		errs = append(errs, c.gguf.Close())
	}
	return errors.Join(errs...)
}

var stDTypes = map[safetensors.DType]ir.DType{"F32": ir.F32, "BF16": ir.BF16, "F16": ir.F16}

// Open reads config.json and the safetensors files of dir, and checks that
// the tensors are exactly the ones the config calls for. dir may also be a
// .gguf file, or a directory holding exactly one .gguf file and no
// safetensors: see OpenGGUF.
func Open(dir string) (*Checkpoint, error) {
	if path, ok, err := ggufPath(dir); err != nil {
		return nil, err
	} else if ok {
		return OpenGGUF(path)
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	files, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	weights, err := bind(cfg, files)
	if err != nil {
		files.Close()
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	return &Checkpoint{Dir: dir, Config: cfg, Weights: weights, files: files}, nil
}

// bind matches the checkpoint's tensors to the config's weight specs: every
// spec present with its shape and a float dtype, nothing left over.
func bind(cfg *Config, files *safetensors.Checkpoint) (map[string]ir.Tensor, error) {
	var errs []error
	weights := map[string]ir.Tensor{}
	var missing []string
	for _, spec := range cfg.WeightSpecs() {
		t, ok := files.Tensor(spec.Name)
		if !ok {
			missing = append(missing, spec.Name)
			continue
		}
		dt, ok := stDTypes[t.DType]
		if !ok {
			errs = append(errs, fmt.Errorf("tensor %s has dtype %s; gemmac reads F32, BF16 and F16", spec.Name, t.DType))
			continue
		}
		if shape := ir.Shape(t.Shape); !shape.Equal(spec.Shape) {
			errs = append(errs, fmt.Errorf("tensor %s has shape %v, the config calls for %v", spec.Name, shape, spec.Shape))
			continue
		}
		weights[spec.Name] = ir.Tensor{DType: dt, Shape: spec.Shape, Data: t.Data}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("missing tensor(s): %s", listSome(missing)))
	}
	var extra []string
	for _, name := range files.Names() {
		if _, ok := weights[name]; !ok && !contains(missing, name) && !isTiedHeadCopy(cfg, name) {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		errs = append(errs, fmt.Errorf("tensor(s) the config does not call for: %s", listSome(extra)))
	}
	return weights, errors.Join(errs...)
}

// isTiedHeadCopy accepts an lm_head.weight saved beside tied embeddings:
// some exporters write the tied matrix twice, and it is never read.
func isTiedHeadCopy(cfg *Config, name string) bool {
	return cfg.TieWordEmbeddings && name == LMHeadName
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// listSome joins names, eliding the middle of a long list.
func listSome(names []string) string {
	if len(names) > 8 {
		return strings.Join(names[:6], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}

// WeightDTypes maps each weight name to its dtype, for graph building.
func (c *Checkpoint) WeightDTypes() map[string]ir.DType {
	out := make(map[string]ir.DType, len(c.Weights))
	for name, t := range c.Weights {
		out[name] = t.DType
	}
	return out
}
