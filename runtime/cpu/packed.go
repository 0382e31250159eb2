package cpu

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/frontend/packed"
	"github.com/gemmac/gemmac/runtime/plan"
)

// openPacked opens the packed weights file of a build that converted its
// weights, at path or, when path is "", beside the running executable, and
// returns ckpt with its weights replaced by the file's (config, tokenizer and
// template stay the checkpoint's).
func openPacked(art *plan.Artifact, ckpt *frontend.Checkpoint, path string) (*packed.File, *frontend.Checkpoint, error) {
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, fmt.Errorf("finding the packed weights %s: %w", art.Packed.File, err)
		}
		path = filepath.Join(filepath.Dir(exe), art.Packed.File)
	}
	f, err := packed.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("this binary reads its weights (%s) from a file built with it: %w", art.Packed.Conversion, err)
	}
	if f.Fingerprint != art.Packed.Fingerprint {
		f.Close()
		return nil, nil, fmt.Errorf("packed weights %s belong to another build (fingerprint %.12s…, this binary's is %.12s…): rebuild, or keep each binary beside its own .weights file", path, f.Fingerprint, art.Packed.Fingerprint)
	}
	converted := *ckpt
	converted.Weights = f.Tensors
	return f, &converted, nil
}
