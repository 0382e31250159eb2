package frontend

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gemmac/gemmac/frontend/gguf"
	"github.com/gemmac/gemmac/ir"
	"github.com/gemmac/gemmac/runtime/tokenizer"
)

// GGUF checkpoints (llama.cpp's single-file format) for Gemma-2.
//
// Two conventions differ from Hugging Face's, and both are undone here so
// that the rest of gemmac sees an ordinary checkpoint:
//
//   - GGUF lists dimensions innermost first: llama.cpp's [K, N] matrix is
//     Hugging Face's [N, K] (out × in). Weights get their HF shapes.
//   - llama.cpp's converter stores Gemma's RMSNorm scales as 1 + w, where
//     Hugging Face stores w and the graph adds the 1 (RMSNorm Offset 1,
//     folded into a Derived weight by passes.Fold). The norm vectors are
//     small (hidden floats each), so OpenGGUF materialises them as f32
//     w = stored − 1 on the heap and every graph, interpreted or compiled,
//     is the same whatever the checkpoint's format. (stored − 1) + 1 gives
//     back the stored f32 exactly for stored values in [0.5, 2^24); below
//     0.5 it may differ in the last place of 1 (≤ 2^-25).

// ggufArch is the only general.architecture gemmac reads.
const ggufArch = "gemma2"

// ggufName maps a Hugging Face tensor name to llama.cpp's.
func ggufNames(cfg *Config) map[string]string {
	m := map[string]string{
		EmbedName:     "token_embd.weight",
		FinalNormName: "output_norm.weight",
		LMHeadName:    "output.weight",
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		l := Layer(i)
		p := fmt.Sprintf("blk.%d.", i)
		for hf, gg := range map[string]string{
			l.InputNorm: "attn_norm", l.Q: "attn_q", l.K: "attn_k", l.V: "attn_v", l.O: "attn_output",
			l.PostAttnNorm: "post_attention_norm", l.PreFFWNorm: "ffn_norm",
			l.Gate: "ffn_gate", l.Up: "ffn_up", l.Down: "ffn_down", l.PostFFWNorm: "post_ffw_norm",
		} {
			m[hf] = p + gg + ".weight"
		}
	}
	return m
}

// isNorm reports whether an HF tensor name is an RMSNorm scale.
func isNorm(cfg *Config, name string) bool {
	if name == FinalNormName {
		return true
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		l := Layer(i)
		if name == l.InputNorm || name == l.PostAttnNorm || name == l.PreFFWNorm || name == l.PostFFWNorm {
			return true
		}
	}
	return false
}

var ggufDTypes = map[gguf.GGMLType]ir.DType{
	gguf.F32: ir.F32, gguf.F16: ir.F16, gguf.BF16: ir.BF16, gguf.Q8_0: ir.Q8_0, gguf.Q4_0: ir.Q4_0,
}

// ggufPath decides whether Open's argument names a GGUF checkpoint: a file
// (by its .gguf suffix or its magic), or a directory with exactly one .gguf
// file and no .safetensors files.
func ggufPath(path string) (string, bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", false, nil // Open's safetensors path reports it
	}
	if !st.IsDir() {
		if strings.EqualFold(filepath.Ext(path), ".gguf") || hasGGUFMagic(path) {
			return path, true, nil
		}
		return "", false, fmt.Errorf("%s is a file, but neither a GGUF nor a model directory", path)
	}
	ggufs, _ := filepath.Glob(filepath.Join(path, "*.gguf"))
	sts, _ := filepath.Glob(filepath.Join(path, "*.safetensors"))
	switch {
	case len(ggufs) == 1 && len(sts) == 0:
		return ggufs[0], true, nil
	case len(ggufs) > 1 && len(sts) == 0:
		names := make([]string, len(ggufs))
		for i, p := range ggufs {
			names[i] = filepath.Base(p)
		}
		return "", false, fmt.Errorf("%s holds %d GGUF files (%s): name the one to load", path, len(ggufs), listSome(names))
	}
	return "", false, nil
}

func hasGGUFMagic(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == gguf.Magic
}

// OpenGGUF opens a Gemma-2 GGUF file (general.architecture gemma2) as a
// Checkpoint: its config from the metadata, its tensors under their Hugging
// Face names and shapes (memory-mapped, in their stored dtype: f32, f16,
// bf16, q8_0 or q4_0; norm scales converted to HF's w, see above), and its
// tokenizer and chat template. An HF config.json beside the file supplies
// query_pre_attn_scalar, which GGUF does not record.
func OpenGGUF(path string) (*Checkpoint, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	ck, err := checkpointFromGGUF(f, path)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return ck, nil
}

func checkpointFromGGUF(f *gguf.File, path string) (*Checkpoint, error) {
	ck := &Checkpoint{Dir: filepath.Dir(path), File: path, gguf: f}
	cfg, notes, err := ConfigFromGGUF(f, filepath.Join(ck.Dir, "config.json"))
	if err != nil {
		return nil, err
	}
	ck.Config, ck.Notes = cfg, notes
	if ck.Weights, err = bindGGUF(cfg, f); err != nil {
		return nil, err
	}
	ck.Notes = append(ck.Notes, "norm weights: the GGUF holds 1 + w; loaded as w = stored - 1 (f32) for the graph's RMSNorm offset of 1")
	if ck.Tokenizer, err = tokenizerFromGGUF(f, &ck.Notes); err != nil {
		return nil, err
	}
	if f.Has("tokenizer.chat_template") {
		if ck.ChatTemplate, err = f.String("tokenizer.chat_template"); err != nil {
			return nil, err
		}
	}
	if ck.Tokenizer != nil && ck.Tokenizer.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("tokenizer has %d tokens, more than the embedding's %d rows", ck.Tokenizer.VocabSize(), cfg.VocabSize)
	}
	return ck, nil
}

// ConfigFromGGUF reads a Gemma-2 config from GGUF metadata. configJSON, when
// it names an existing file, is an HF config.json whose
// query_pre_attn_scalar is used (GGUF has no key for it). The notes say
// which values were defaults or rules rather than read.
func ConfigFromGGUF(f *gguf.File, configJSON string) (*Config, []string, error) {
	var notes []string
	arch, err := f.String("general.architecture")
	if err != nil {
		return nil, nil, err
	}
	if arch != ggufArch {
		return nil, nil, fmt.Errorf("general.architecture is %q, gemmac compiles %s", arch, ggufArch)
	}
	p := arch + "."
	var errs []error
	var missing []string
	integer := func(key string, def int, dst *int) {
		switch v, err := f.Int(key); {
		case err == nil:
			*dst = v
		case errors.Is(err, gguf.ErrMissingKey) && def >= 0:
			*dst = def
			notes = append(notes, fmt.Sprintf("%s absent: using %d", key, def))
		case errors.Is(err, gguf.ErrMissingKey):
			missing = append(missing, key)
		default:
			errs = append(errs, err)
		}
	}
	float := func(key string, def float64, dst *float64) {
		switch v, err := f.Float(key); {
		case err == nil:
			*dst = v
		case errors.Is(err, gguf.ErrMissingKey) && def >= 0:
			*dst = def
			notes = append(notes, fmt.Sprintf("%s absent: using %g", key, def))
		case errors.Is(err, gguf.ErrMissingKey):
			missing = append(missing, key)
		default:
			errs = append(errs, err)
		}
	}
	c := &Config{
		ModelType:         "gemma2",
		HiddenActivation:  "gelu_pytorch_tanh",
		HiddenAct:         "gelu_pytorch_tanh",
		TieWordEmbeddings: true,
		// llama.cpp runs activations in f32 and multiplies the embedding
		// by sqrtf(hidden) unrounded: the f32 path of the reference.
		TorchDType: "float32",
	}
	integer(p+"context_length", -1, &c.MaxPositionEmbeddings)
	integer(p+"embedding_length", -1, &c.HiddenSize)
	integer(p+"feed_forward_length", -1, &c.IntermediateSize)
	integer(p+"block_count", -1, &c.NumHiddenLayers)
	integer(p+"attention.head_count", -1, &c.NumAttentionHeads)
	float(p+"attention.layer_norm_rms_epsilon", -1, &c.RMSNormEps)
	if len(missing) > 0 || len(errs) > 0 {
		if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("missing metadata key(s): %s", strings.Join(missing, ", ")))
		}
		return nil, nil, errors.Join(errs...)
	}
	integer(p+"attention.head_count_kv", c.NumAttentionHeads, &c.NumKeyValueHeads)
	defHead := 0
	if c.NumAttentionHeads > 0 {
		defHead = c.HiddenSize / c.NumAttentionHeads
	}
	integer(p+"attention.key_length", defHead, &c.HeadDim)
	var valueLen int
	integer(p+"attention.value_length", c.HeadDim, &valueLen)
	if valueLen != c.HeadDim {
		errs = append(errs, fmt.Errorf("%sattention.key_length %d and value_length %d differ; Gemma-2 has one head_dim", p, c.HeadDim, valueLen))
	}
	integer(p+"attention.sliding_window", 4096, &c.SlidingWindow)
	float(p+"attn_logit_softcapping", 50, &c.AttnLogitSoftcapping)
	float(p+"final_logit_softcapping", 30, &c.FinalLogitSoftcapping)
	float(p+"rope.freq_base", 10000, &c.RopeTheta)
	// Ids: the tokenizer's, with Gemma's defaults.
	integer("tokenizer.ggml.bos_token_id", 2, &c.BOSTokenID)
	eos := 1
	integer("tokenizer.ggml.eos_token_id", 1, &eos)
	c.EOSTokenID = TokenIDs{eos}
	integer("tokenizer.ggml.padding_token_id", 0, &c.PadTokenID)

	switch tokens, err := f.Strings("tokenizer.ggml.tokens"); {
	case err == nil:
		c.VocabSize = len(tokens)
	case errors.Is(err, gguf.ErrMissingKey):
		// No vocabulary: the embedding says how many rows there are.
		if t, ok := f.Tensor("token_embd.weight"); ok && len(t.Dims) == 2 && t.Dims[1] <= math.MaxInt32 {
			c.VocabSize = int(t.Dims[1])
			notes = append(notes, fmt.Sprintf("tokenizer.ggml.tokens absent: vocab_size %d from token_embd.weight", c.VocabSize))
		} else {
			missing = append(missing, "tokenizer.ggml.tokens")
		}
	default:
		errs = append(errs, err)
	}
	if _, ok := f.Tensor("output.weight"); ok {
		c.TieWordEmbeddings = false
	}

	qpas, note, err := queryPreAttnScalar(c, configJSON)
	if err != nil {
		errs = append(errs, err)
	}
	c.QueryPreAttnScalar = qpas
	notes = append(notes, note)

	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("missing metadata key(s): %s", strings.Join(missing, ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	return c, notes, nil
}

// queryPreAttnScalar takes query_pre_attn_scalar from an HF config.json when
// there is one, else follows llama.cpp and ollama: hidden/heads for the 27B
// (46 layers: 4608/32 = 144), head_dim for every other Gemma-2.
func queryPreAttnScalar(c *Config, configJSON string) (float64, string, error) {
	data, err := os.ReadFile(configJSON)
	switch {
	case err == nil:
		var hf struct {
			Scalar *float64 `json:"query_pre_attn_scalar"`
			Hidden *int     `json:"hidden_size"`
			Layers *int     `json:"num_hidden_layers"`
		}
		if err := json.Unmarshal(data, &hf); err != nil {
			return 0, "", fmt.Errorf("%s: %w", configJSON, err)
		}
		if (hf.Hidden != nil && *hf.Hidden != c.HiddenSize) || (hf.Layers != nil && *hf.Layers != c.NumHiddenLayers) {
			return 0, "", fmt.Errorf("%s describes another model (hidden_size %v, %v layers) than the GGUF (%d, %d)",
				configJSON, deref(hf.Hidden), deref(hf.Layers), c.HiddenSize, c.NumHiddenLayers)
		}
		if hf.Scalar != nil {
			return *hf.Scalar, fmt.Sprintf("query_pre_attn_scalar %g from %s", *hf.Scalar, configJSON), nil
		}
	case !errors.Is(err, fs.ErrNotExist) && configJSON != "":
		return 0, "", err
	}
	if c.NumHiddenLayers == 46 && c.NumAttentionHeads > 0 {
		v := float64(c.HiddenSize / c.NumAttentionHeads)
		return v, fmt.Sprintf("query_pre_attn_scalar %g = hidden_size/heads (not in GGUF; llama.cpp's rule for the 46-layer 27B)", v), nil
	}
	v := float64(c.HeadDim)
	return v, fmt.Sprintf("query_pre_attn_scalar %g = head_dim (not in GGUF; llama.cpp's rule for Gemma-2 other than the 27B)", v), nil
}

func deref(p *int) any {
	if p == nil {
		return "?"
	}
	return *p
}

// bindGGUF matches the GGUF's tensors to the config's weight specs, by
// llama.cpp name, with HF shapes; norms are converted to HF's w.
func bindGGUF(cfg *Config, f *gguf.File) (map[string]ir.Tensor, error) {
	names := ggufNames(cfg)
	weights := map[string]ir.Tensor{}
	used := map[string]bool{}
	var errs []error
	var missing []string
	for _, spec := range cfg.WeightSpecs() {
		gname := names[spec.Name]
		info, ok := f.Tensor(gname)
		if !ok {
			missing = append(missing, gname)
			continue
		}
		used[gname] = true
		dt, ok := ggufDTypes[info.Type]
		if !ok {
			errs = append(errs, fmt.Errorf("tensor %s has ggml type %d (%v); gemmac reads f32, f16, bf16, q8_0 and q4_0",
				gname, uint32(info.Type), info.Type))
			continue
		}
		if shape := ir.Shape(info.Shape()); !shape.Equal(spec.Shape) {
			errs = append(errs, fmt.Errorf("tensor %s has shape %v (GGUF dims %v), the config calls for %v (%s)",
				gname, shape, info.Dims, spec.Shape, spec.Name))
			continue
		}
		t := ir.Tensor{DType: dt, Shape: spec.Shape, Data: f.Data(info)}
		if err := t.Check(); err != nil {
			errs = append(errs, fmt.Errorf("tensor %s: %w", gname, err))
			continue
		}
		if isNorm(cfg, spec.Name) {
			var err error
			if t, err = unitOffsetNorm(t); err != nil {
				errs = append(errs, fmt.Errorf("tensor %s: %w", gname, err))
				continue
			}
		}
		weights[spec.Name] = t
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("missing tensor(s): %s", listSome(missing)))
	}
	var extra []string
	for _, t := range f.Tensors {
		if !used[t.Name] {
			extra = append(extra, t.Name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		errs = append(errs, fmt.Errorf("tensor(s) a Gemma-2 of this config does not have: %s", listSome(extra)))
	}
	return weights, errors.Join(errs...)
}

// unitOffsetNorm turns a llama.cpp norm scale (1 + w) into HF's w, as f32.
func unitOffsetNorm(t ir.Tensor) (ir.Tensor, error) {
	vals, err := t.Float32s()
	if err != nil {
		return ir.Tensor{}, err
	}
	out := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v-1))
	}
	return ir.Tensor{DType: ir.F32, Shape: t.Shape, Data: out}, nil
}

// tokenizerFromGGUF builds the tokenizer of a SentencePiece ("llama")
// vocabulary; without tokenizer.ggml.model it returns nil and a note.
func tokenizerFromGGUF(f *gguf.File, notes *[]string) (*tokenizer.Tokenizer, error) {
	model, err := f.String("tokenizer.ggml.model")
	if errors.Is(err, gguf.ErrMissingKey) {
		*notes = append(*notes, "no tokenizer in the GGUF (tokenizer.ggml.model absent)")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if model != "llama" {
		*notes = append(*notes, fmt.Sprintf("tokenizer.ggml.model %q is not SentencePiece (\"llama\"): no tokenizer loaded", model))
		return nil, nil
	}
	v := tokenizer.VocabSpec{BOS: -1, EOS: -1, UNK: -1, AddBOS: true}
	var errs []error
	if v.Tokens, err = f.Strings("tokenizer.ggml.tokens"); err != nil {
		errs = append(errs, err)
	}
	if v.Scores, err = f.Float32s("tokenizer.ggml.scores"); err != nil {
		errs = append(errs, err)
	}
	switch v.Types, err = f.Int32s("tokenizer.ggml.token_type"); {
	case errors.Is(err, gguf.ErrMissingKey):
		v.Types = make([]int32, len(v.Tokens))
		for i := range v.Types {
			v.Types[i] = tokenizer.TokenNormal
		}
		*notes = append(*notes, "tokenizer.ggml.token_type absent: every token normal")
	case err != nil:
		errs = append(errs, err)
	}
	for key, dst := range map[string]*int{
		"tokenizer.ggml.bos_token_id": &v.BOS, "tokenizer.ggml.eos_token_id": &v.EOS, "tokenizer.ggml.unknown_token_id": &v.UNK,
	} {
		if id, err := f.Int(key); err == nil {
			*dst = id
		} else if !errors.Is(err, gguf.ErrMissingKey) {
			errs = append(errs, err)
		}
	}
	for key, dst := range map[string]*bool{
		"tokenizer.ggml.add_bos_token": &v.AddBOS, "tokenizer.ggml.add_eos_token": &v.AddEOS,
		"tokenizer.ggml.add_space_prefix": &v.AddSpacePrefix,
	} {
		if b, err := f.Bool(key); err == nil {
			*dst = b
		} else if !errors.Is(err, gguf.ErrMissingKey) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromVocab(v)
	if err != nil {
		return nil, fmt.Errorf("GGUF tokenizer: %w", err)
	}
	return tok, nil
}

// WriteGGUF writes weights (by HF name, in HF shapes and convention) as a
// llama.cpp-style Gemma-2 GGUF: gemma2.* metadata from cfg, then extra
// (tokenizer keys, general.name, ...), tensors under llama.cpp names with
// GGUF dims, norm scales stored as 1 + w in f32 as llama.cpp's converter
// does. Weights keep their dtype (quantise them with ir.Quantize first).
func WriteGGUF(w io.Writer, cfg *Config, weights map[string]ir.Tensor, extra []gguf.KV) error {
	p := ggufArch + "."
	u32 := func(k string, v int) gguf.KV { return gguf.KV{Key: p + k, Type: gguf.TypeUint32, Value: uint32(v)} }
	f32 := func(k string, v float64) gguf.KV {
		return gguf.KV{Key: p + k, Type: gguf.TypeFloat32, Value: float32(v)}
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Type: gguf.TypeString, Value: ggufArch},
		u32("context_length", cfg.MaxPositionEmbeddings),
		u32("embedding_length", cfg.HiddenSize),
		u32("block_count", cfg.NumHiddenLayers),
		u32("feed_forward_length", cfg.IntermediateSize),
		u32("attention.head_count", cfg.NumAttentionHeads),
		u32("attention.head_count_kv", cfg.NumKeyValueHeads),
		f32("attention.layer_norm_rms_epsilon", cfg.RMSNormEps),
		u32("attention.key_length", cfg.HeadDim),
		u32("attention.value_length", cfg.HeadDim),
		f32("attn_logit_softcapping", cfg.AttnLogitSoftcapping),
		f32("final_logit_softcapping", cfg.FinalLogitSoftcapping),
		u32("attention.sliding_window", cfg.SlidingWindow),
		f32("rope.freq_base", cfg.RopeTheta),
	}
	kv = append(kv, extra...)
	names := ggufNames(cfg)
	var tensors []gguf.WriteTensor
	for _, spec := range cfg.WeightSpecs() {
		t, ok := weights[spec.Name]
		if !ok {
			return fmt.Errorf("write gguf: no tensor %s", spec.Name)
		}
		if !t.Shape.Equal(spec.Shape) {
			return fmt.Errorf("write gguf: tensor %s is %v, the config calls for %v", spec.Name, t.Shape, spec.Shape)
		}
		if err := t.Check(); err != nil {
			return fmt.Errorf("write gguf: tensor %s: %w", spec.Name, err)
		}
		var gt gguf.GGMLType = 1 << 31
		for g, d := range ggufDTypes {
			if d == t.DType {
				gt = g
			}
		}
		if gt == 1<<31 {
			return fmt.Errorf("write gguf: tensor %s is %v, which GGUF cannot hold", spec.Name, t.DType)
		}
		data := t.Data
		if isNorm(cfg, spec.Name) {
			vals, err := t.Float32s()
			if err != nil {
				return fmt.Errorf("write gguf: tensor %s: %w", spec.Name, err)
			}
			gt, data = gguf.F32, make([]byte, 4*len(vals))
			for i, v := range vals {
				binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v+1))
			}
		}
		dims := make([]uint64, len(spec.Shape))
		for i, d := range spec.Shape {
			dims[len(dims)-1-i] = uint64(d)
		}
		tensors = append(tensors, gguf.WriteTensor{Name: names[spec.Name], Dims: dims, Type: gt, Data: data})
	}
	return gguf.Write(w, kv, tensors)
}
