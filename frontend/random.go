package frontend

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"github.com/gemmac/gemmac/frontend/safetensors"
	"github.com/gemmac/gemmac/ir"
)

// RandomStd is the standard deviation of every random weight. Norm weights
// are stored as w - 1, so random norms scale by about 1.
const RandomStd = 0.02

// WriteRandom writes a complete Hugging Face checkpoint directory for cfg
// with normally distributed weights: config.json, generation_config.json and
// model.safetensors. Tensor name and seed fix each tensor's values, whatever
// the number of threads.
func WriteRandom(dir string, cfg *Config, dt ir.DType, seed uint64) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	stType := map[ir.DType]safetensors.DType{ir.F32: "F32", ir.BF16: "BF16", ir.F16: "F16"}[dt]
	if stType == "" {
		return fmt.Errorf("random weights can be f32, bf16 or f16, not %v", dt)
	}
	c := *cfg
	c.TorchDType = map[ir.DType]string{ir.F32: "float32", ir.BF16: "bfloat16", ir.F16: "float16"}[dt]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeJSONFile(filepath.Join(dir, "config.json"), &c); err != nil {
		return err
	}
	gen := map[string]any{"bos_token_id": c.BOSTokenID, "eos_token_id": c.EOSTokenID, "pad_token_id": c.PadTokenID}
	if err := writeJSONFile(filepath.Join(dir, "generation_config.json"), gen); err != nil {
		return err
	}
	specs := c.WeightSpecs()
	stSpecs := make([]safetensors.Spec, len(specs))
	for i, s := range specs {
		stSpecs[i] = safetensors.Spec{Name: s.Name, DType: stType, Shape: s.Shape}
	}
	w, err := safetensors.Create(filepath.Join(dir, "model.safetensors"), stSpecs, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	defer w.Abort()
	// The writer wants tensors in its own (sorted) order.
	byName := map[string]WeightSpec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	for _, name := range sortedNames(byName) {
		s := byName[name]
		if err := w.WriteTensor(name, randomTensor(name, s.Shape.Elems(), dt, seed)); err != nil {
			return err
		}
	}
	return w.Close()
}

func sortedNames(m map[string]WeightSpec) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// randomTensor draws n values N(0, RandomStd²) in blocks, each block from a
// PCG seeded by (seed, crc32(name), block), in parallel.
func randomTensor(name string, n int, dt ir.DType, seed uint64) []byte {
	const block = 1 << 20
	size := dt.Size()
	out := make([]byte, n*size)
	nameHash := uint64(crc32.ChecksumIEEE([]byte(name)))
	blocks := (n + block - 1) / block
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for b := 0; b < blocks; b++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(b int) {
			defer func() { <-sem; wg.Done() }()
			rng := rand.New(rand.NewPCG(seed, nameHash<<32|uint64(b)))
			for i := b * block; i < min(n, (b+1)*block); i++ {
				v := float32(rng.NormFloat64() * RandomStd)
				switch dt {
				case ir.F32:
					binary.LittleEndian.PutUint32(out[i*4:], math.Float32bits(v))
				case ir.BF16:
					binary.LittleEndian.PutUint16(out[i*2:], ir.F32ToBF16(v))
				case ir.F16:
					binary.LittleEndian.PutUint16(out[i*2:], ir.F32ToF16(v))
				}
			}
		}(b)
	}
	wg.Wait()
	return out
}

func writeJSONFile(path string, v any) error {
	var data []byte
	var err error
	if c, ok := v.(*Config); ok {
		data, err = c.Marshal()
	} else {
		data, err = json.MarshalIndent(v, "", "  ")
	}
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
