// Package frontend turns a Gemma-2 checkpoint into gemmac's graph IR: it reads
// the Hugging Face config, binds the checkpoint's tensors by name and builds
// the static prefill and decode graphs.
package frontend

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Config is a Gemma-2 model's hyper-parameters, named as in Hugging Face's
// config.json.
type Config struct {
	ModelType             string   `json:"model_type"`
	VocabSize             int      `json:"vocab_size"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	NumKeyValueHeads      int      `json:"num_key_value_heads"`
	HeadDim               int      `json:"head_dim"`
	QueryPreAttnScalar    float64  `json:"query_pre_attn_scalar"`
	SlidingWindow         int      `json:"sliding_window"`
	AttnLogitSoftcapping  float64  `json:"attn_logit_softcapping"`
	FinalLogitSoftcapping float64  `json:"final_logit_softcapping"`
	RopeTheta             float64  `json:"rope_theta"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	HiddenActivation      string   `json:"hidden_activation"`
	HiddenAct             string   `json:"hidden_act,omitempty"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	TieWordEmbeddings     bool     `json:"tie_word_embeddings"`
	BOSTokenID            int      `json:"bos_token_id"`
	EOSTokenID            TokenIDs `json:"eos_token_id"`
	PadTokenID            int      `json:"pad_token_id"`
	// TorchDType is the dtype the checkpoint was saved in; Hugging Face runs
	// activations in it, which decides how sqrt(hidden) is rounded.
	TorchDType string `json:"torch_dtype"`
}

// TokenIDs is one id or a list of ids, as eos_token_id may be either.
type TokenIDs []int

func (t *TokenIDs) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = nil
		return nil
	}
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*t = TokenIDs{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a token id or a list of them, got %s", b)
	}
	*t = many
	return nil
}

func (t TokenIDs) MarshalJSON() ([]byte, error) {
	if len(t) == 1 {
		return json.Marshal(t[0])
	}
	return json.Marshal([]int(t))
}

// presets are the released Gemma-2 shapes plus "tiny", the shape of the
// reference models in shared/testdata.
var presets = map[string]Config{
	"tiny": {VocabSize: 512, HiddenSize: 64, IntermediateSize: 128, NumHiddenLayers: 4,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16, QueryPreAttnScalar: 16,
		SlidingWindow: 8, MaxPositionEmbeddings: 128, TorchDType: "float32"},
	"2b": {VocabSize: 256000, HiddenSize: 2304, IntermediateSize: 9216, NumHiddenLayers: 26,
		NumAttentionHeads: 8, NumKeyValueHeads: 4, HeadDim: 256, QueryPreAttnScalar: 256,
		SlidingWindow: 4096, MaxPositionEmbeddings: 8192, TorchDType: "float32"},
	"9b": {VocabSize: 256000, HiddenSize: 3584, IntermediateSize: 14336, NumHiddenLayers: 42,
		NumAttentionHeads: 16, NumKeyValueHeads: 8, HeadDim: 256, QueryPreAttnScalar: 256,
		SlidingWindow: 4096, MaxPositionEmbeddings: 8192, TorchDType: "float32"},
	"27b": {VocabSize: 256000, HiddenSize: 4608, IntermediateSize: 36864, NumHiddenLayers: 46,
		NumAttentionHeads: 32, NumKeyValueHeads: 16, HeadDim: 128, QueryPreAttnScalar: 144,
		SlidingWindow: 4096, MaxPositionEmbeddings: 8192, TorchDType: "float32"},
}

// PresetNames lists the presets Preset accepts.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the config of a named Gemma-2 shape with the family's
// shared constants filled in.
func Preset(name string) (*Config, error) {
	c, ok := presets[name]
	if !ok {
		return nil, fmt.Errorf("unknown preset %q (want one of %s)", name, strings.Join(PresetNames(), ", "))
	}
	c.ModelType = "gemma2"
	c.AttnLogitSoftcapping = 50
	c.FinalLogitSoftcapping = 30
	c.RopeTheta = 10000
	c.RMSNormEps = 1e-6
	c.HiddenActivation = "gelu_pytorch_tanh"
	c.HiddenAct = "gelu_pytorch_tanh"
	c.TieWordEmbeddings = true
	c.BOSTokenID, c.EOSTokenID, c.PadTokenID = 2, TokenIDs{1}, 0
	return &c, c.Validate()
}

// requiredFields must appear in config.json; the rest have Gemma-2 defaults.
var requiredFields = []string{
	"model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
	"num_attention_heads", "num_key_value_heads", "head_dim",
}

// LoadConfig reads dir/config.json.
func LoadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading model config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes and validates a config.json.
func ParseConfig(data []byte) (*Config, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	var missing []string
	for _, f := range requiredFields {
		if _, ok := fields[f]; !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing field(s): %s", strings.Join(missing, ", "))
	}
	// Defaults are Hugging Face's Gemma2Config defaults; a null softcap
	// means "off" and decodes to 0.
	c := Config{
		SlidingWindow: 4096, AttnLogitSoftcapping: 50, FinalLogitSoftcapping: 30,
		RopeTheta: 10000, RMSNormEps: 1e-6, MaxPositionEmbeddings: 8192,
		TieWordEmbeddings: true, BOSTokenID: 2, EOSTokenID: TokenIDs{1},
		HiddenActivation: "gelu_pytorch_tanh",
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("invalid field: %w", err)
	}
	// null is how configs turn a softcap off (for flash attention).
	for field, cap := range map[string]*float64{
		"attn_logit_softcapping":  &c.AttnLogitSoftcapping,
		"final_logit_softcapping": &c.FinalLogitSoftcapping,
	} {
		if raw, ok := fields[field]; ok && string(raw) == "null" {
			*cap = 0
		}
	}
	if _, ok := fields["query_pre_attn_scalar"]; !ok {
		c.QueryPreAttnScalar = float64(c.HeadDim)
	}
	if _, ok := fields["hidden_activation"]; !ok && c.HiddenAct != "" {
		c.HiddenActivation = c.HiddenAct
	}
	return &c, c.Validate()
}

// tanhGELUs are the activation names that mean GELU's tanh approximation.
var tanhGELUs = map[string]bool{"gelu_pytorch_tanh": true, "gelu_tanh": true, "gelu_new": true, "gelu_fast": true}

// Validate checks every field gemmac relies on, naming the first bad ones.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.ModelType != "gemma2" {
		bad("model_type is %q, gemmac compiles gemma2", c.ModelType)
	}
	positive := []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads}, {"head_dim", c.HeadDim},
		{"sliding_window", c.SlidingWindow}, {"max_position_embeddings", c.MaxPositionEmbeddings},
	}
	for _, p := range positive {
		if p.v <= 0 || p.v > 1<<24 {
			bad("%s is %d, want a positive size", p.name, p.v)
		}
	}
	if c.NumKeyValueHeads > 0 && c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		bad("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	if c.HeadDim%2 != 0 {
		bad("head_dim %d is odd; rotary embeddings need pairs", c.HeadDim)
	}
	for _, f := range []struct {
		name string
		v    float64
		min  float64
	}{
		{"query_pre_attn_scalar", c.QueryPreAttnScalar, math.SmallestNonzeroFloat64},
		{"rope_theta", c.RopeTheta, 1},
		{"rms_norm_eps", c.RMSNormEps, 0},
		{"attn_logit_softcapping", c.AttnLogitSoftcapping, 0},
		{"final_logit_softcapping", c.FinalLogitSoftcapping, 0},
	} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < f.min {
			bad("%s is %g, out of range", f.name, f.v)
		}
	}
	if !tanhGELUs[c.HiddenActivation] {
		bad("hidden_activation %q is not supported (Gemma-2 uses gelu_pytorch_tanh)", c.HiddenActivation)
	}
	for _, id := range append([]int{c.BOSTokenID}, c.EOSTokenID...) {
		if id < 0 || id >= c.VocabSize {
			bad("special token id %d is outside the vocabulary of %d", id, c.VocabSize)
		}
	}
	return errors.Join(errs...)
}

// IsSliding reports whether layer i attends through the sliding window:
// Gemma-2 alternates, starting with a sliding layer.
func (c *Config) IsSliding(layer int) bool { return layer%2 == 0 }

// QueryScale is the factor q is multiplied by before q·kᵀ.
func (c *Config) QueryScale() float32 { return float32(1 / math.Sqrt(c.QueryPreAttnScalar)) }

// Marshal renders the config as a Hugging Face config.json.
func (c *Config) Marshal() ([]byte, error) {
	// transformers validates these as floats and refuses 30 where it wants
	// 30.0, which is how encoding/json writes a whole float64.
	out := struct {
		Architectures    []string  `json:"architectures"`
		CacheImpl        string    `json:"cache_implementation"`
		AttentionBias    bool      `json:"attention_bias"`
		AttentionDropout jsonFloat `json:"attention_dropout"`
		*Config
		AttnSoftcap  jsonFloat `json:"attn_logit_softcapping"`
		FinalSoftcap jsonFloat `json:"final_logit_softcapping"`
		RopeTheta    jsonFloat `json:"rope_theta"`
	}{[]string{"Gemma2ForCausalLM"}, "hybrid", false, 0, c,
		jsonFloat(c.AttnLogitSoftcapping), jsonFloat(c.FinalLogitSoftcapping), jsonFloat(c.RopeTheta)}
	return json.MarshalIndent(out, "", "  ")
}

// jsonFloat always marshals with a decimal point or exponent.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	b := strconv.AppendFloat(nil, float64(f), 'g', -1, 64)
	if !strings.ContainsAny(string(b), ".eE") {
		b = append(b, ".0"...)
	}
	return b, nil
}

// HumanCount writes a parameter count the way model cards do: 5.8M, 2.61B.
func HumanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.3gB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.3gM", float64(n)/1e6)
	}
	return fmt.Sprintf("%.3gK", float64(n)/1e3)
}

// SameShape compares the fields compiled code depends on and names the first
// that differs; c is the config the code was compiled for.
func (c *Config) SameShape(got *Config) error {
	fields := []struct {
		name string
		a, b any
	}{
		{"vocab_size", c.VocabSize, got.VocabSize},
		{"hidden_size", c.HiddenSize, got.HiddenSize},
		{"intermediate_size", c.IntermediateSize, got.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers, got.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads, got.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads, got.NumKeyValueHeads},
		{"head_dim", c.HeadDim, got.HeadDim},
		{"query_pre_attn_scalar", c.QueryPreAttnScalar, got.QueryPreAttnScalar},
		{"sliding_window", c.SlidingWindow, got.SlidingWindow},
		{"attn_logit_softcapping", c.AttnLogitSoftcapping, got.AttnLogitSoftcapping},
		{"final_logit_softcapping", c.FinalLogitSoftcapping, got.FinalLogitSoftcapping},
		{"rope_theta", c.RopeTheta, got.RopeTheta},
		{"rms_norm_eps", c.RMSNormEps, got.RMSNormEps},
		{"tie_word_embeddings", c.TieWordEmbeddings, got.TieWordEmbeddings},
		{"torch_dtype", c.ActivationDType(), got.ActivationDType()},
	}
	for _, f := range fields {
		if f.a != f.b {
			return fmt.Errorf("%s is %v, the binary was compiled for %v", f.name, f.b, f.a)
		}
	}
	return nil
}
