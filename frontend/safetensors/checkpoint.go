package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// Standard file names in a Hugging Face checkpoint directory.
const (
	IndexFileName = "model.safetensors.index.json"
	ModelFileName = "model.safetensors"
)

// Checkpoint is the set of safetensors files making up one model: either a
// single file or shards listed by a model.safetensors.index.json.
type Checkpoint struct {
	dir     string
	files   []*File // sorted by path
	tensors map[string]Tensor
}

// indexJSON is the layout of model.safetensors.index.json. Its metadata
// holds non-string values such as "total_size", so it is kept raw.
type indexJSON struct {
	Metadata  map[string]json.RawMessage `json:"metadata"`
	WeightMap map[string]string          `json:"weight_map"`
}

// OpenDir opens the checkpoint in dir. It prefers model.safetensors.index.json
// (sharded checkpoints), then model.safetensors, then the directory's only
// *.safetensors file.
func OpenDir(dir string) (*Checkpoint, error) {
	indexPath := filepath.Join(dir, IndexFileName)
	if _, err := os.Stat(indexPath); err == nil {
		return openIndex(dir, indexPath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %w", err)
	}

	path := filepath.Join(dir, ModelFileName)
	if _, err := os.Stat(path); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("safetensors: %w", err)
		}
		matches, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
		if err != nil {
			return nil, fmt.Errorf("safetensors: %s: %w", dir, err)
		}
		switch len(matches) {
		case 0:
			return nil, fmt.Errorf("safetensors: %s: no checkpoint found: looked for %s, %s and *.safetensors",
				dir, IndexFileName, ModelFileName)
		case 1:
			path = matches[0]
		default:
			return nil, fmt.Errorf("safetensors: %s: found %d *.safetensors files but no %s or %s to say which to use",
				dir, len(matches), IndexFileName, ModelFileName)
		}
	}
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{dir: dir, files: []*File{f}, tensors: make(map[string]Tensor, len(f.tensors))}
	for _, t := range f.tensors {
		c.tensors[t.Name] = t
	}
	return c, nil
}

// openIndex opens a sharded checkpoint described by the index at indexPath.
func openIndex(dir, indexPath string) (*Checkpoint, error) {
	raw, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var idx indexJSON
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("safetensors: %s: invalid JSON: %v", indexPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors: %s: missing or empty weight_map", indexPath)
	}

	c := &Checkpoint{dir: dir, tensors: make(map[string]Tensor, len(idx.WeightMap))}
	byShard := map[string]*File{}
	for _, shard := range slices.Sorted(maps.Values(idx.WeightMap)) {
		if byShard[shard] != nil {
			continue
		}
		// Shard names are plain file names next to the index; refusing
		// anything else keeps a hostile index from reaching outside dir.
		if !filepath.IsLocal(shard) || filepath.Base(shard) != shard {
			c.Close()
			return nil, fmt.Errorf("safetensors: %s: shard name %q is not a file name in %s", indexPath, shard, dir)
		}
		path := filepath.Join(dir, shard)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			c.Close()
			return nil, fmt.Errorf("safetensors: %s: shard file %s named in the index does not exist", indexPath, path)
		}
		f, err := Open(path)
		if err != nil {
			c.Close()
			return nil, err
		}
		byShard[shard] = f
		c.files = append(c.files, f)
	}

	// Every shard tensor is exposed, listed or not, but a name may live in
	// only one shard: otherwise which copy is loaded would be arbitrary.
	for _, f := range c.files {
		for _, t := range f.tensors {
			if prev, dup := c.tensors[t.Name]; dup {
				c.Close()
				return nil, fmt.Errorf("safetensors: %s: tensor %q is present in two shards: %s and %s",
					indexPath, t.Name, prev.File, f.path)
			}
			c.tensors[t.Name] = t
		}
	}
	for _, name := range slices.Sorted(maps.Keys(idx.WeightMap)) {
		f := byShard[idx.WeightMap[name]]
		if _, ok := f.Tensor(name); !ok {
			c.Close()
			return nil, fmt.Errorf("safetensors: %s: tensor %q listed in the index is missing from its shard %s",
				indexPath, name, f.path)
		}
	}
	return c, nil
}

// Dir returns the checkpoint directory.
func (c *Checkpoint) Dir() string { return c.dir }

// Files returns the open files of the checkpoint, sorted by path.
func (c *Checkpoint) Files() []*File { return slices.Clone(c.files) }

// Tensor returns the named tensor from whichever file holds it.
func (c *Checkpoint) Tensor(name string) (Tensor, bool) {
	t, ok := c.tensors[name]
	return t, ok
}

// Names returns all tensor names, sorted.
func (c *Checkpoint) Names() []string { return slices.Sorted(maps.Keys(c.tensors)) }

// Metadata returns the "__metadata__" of the checkpoint's first file (shards
// written together carry the same metadata, typically {"format": "pt"}).
func (c *Checkpoint) Metadata() map[string]string {
	if len(c.files) == 0 {
		return map[string]string{}
	}
	return c.files[0].Metadata()
}

// Close closes every file of the checkpoint.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
