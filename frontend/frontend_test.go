package frontend

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/frontend/safetensors"
	"github.com/gemmac/gemmac/ir"
)

const testdata = "../../shared/testdata"

func TestPresetsMatchDesign(t *testing.T) {
	want := map[string][6]int{ // hidden, ffn, layers, heads, kv heads, head dim
		"2b":  {2304, 9216, 26, 8, 4, 256},
		"9b":  {3584, 14336, 42, 16, 8, 256},
		"27b": {4608, 36864, 46, 32, 16, 128},
	}
	for name, w := range want {
		c, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		got := [6]int{c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim}
		if got != w {
			t.Errorf("%s: %v, want %v", name, got, w)
		}
	}
	c27, _ := Preset("27b")
	if c27.QueryPreAttnScalar != 144 {
		t.Errorf("27b query_pre_attn_scalar %v, want 144 (hidden/heads, not head_dim)", c27.QueryPreAttnScalar)
	}
	c2, _ := Preset("2b")
	if n := c2.ParamCount(); n < 2.6e9 || n > 2.62e9 {
		t.Errorf("2b has %d parameters, want about 2.61B", n)
	}
}

func TestEmbedScaleIsRoundedToActivationDType(t *testing.T) {
	c, _ := Preset("9b")
	c.TorchDType = "bfloat16"
	if got := c.EmbedScale(); got != 59.75 {
		t.Errorf("9b in bf16: embed scale %v, want 59.75", got)
	}
	c.TorchDType = "float32"
	if got := c.EmbedScale(); got < 59.86 || got > 59.87 {
		t.Errorf("9b in f32: embed scale %v, want sqrt(3584)", got)
	}
}

func TestParseConfig(t *testing.T) {
	base, err := os.ReadFile(filepath.Join(testdata, "models/tiny/config.json"))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(base, &m)
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	c, err := ParseConfig(base)
	if err != nil || c.SlidingWindow != 8 || c.HeadDim != 16 {
		t.Fatalf("tiny config: %+v, %v", c, err)
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"not json", []byte("{"), "invalid JSON"},
		{"missing fields", edit(func(m map[string]any) { delete(m, "hidden_size"); delete(m, "head_dim") }), "missing field(s): hidden_size, head_dim"},
		{"llama", edit(func(m map[string]any) { m["model_type"] = "llama" }), `model_type is "llama"`},
		{"zero layers", edit(func(m map[string]any) { m["num_hidden_layers"] = 0 }), "num_hidden_layers is 0"},
		{"heads", edit(func(m map[string]any) { m["num_key_value_heads"] = 3 }), "not a multiple"},
		{"odd head dim", edit(func(m map[string]any) { m["head_dim"] = 15 }), "head_dim 15 is odd"},
		{"activation", edit(func(m map[string]any) { m["hidden_activation"] = "relu" }), `hidden_activation "relu"`},
		{"eps", edit(func(m map[string]any) { m["rms_norm_eps"] = -1 }), "rms_norm_eps"},
		{"string size", edit(func(m map[string]any) { m["vocab_size"] = "512" }), "invalid field"},
		{"eos outside vocab", edit(func(m map[string]any) { m["eos_token_id"] = []int{1, 9999} }), "9999"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig(c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
	// hidden_act alone (older configs) is accepted; a null softcap is off.
	c, err = ParseConfig(edit(func(m map[string]any) {
		delete(m, "hidden_activation")
		m["hidden_act"] = "gelu_pytorch_tanh"
		m["attn_logit_softcapping"] = nil
	}))
	if err != nil || c.HiddenActivation != "gelu_pytorch_tanh" || c.AttnLogitSoftcapping != 0 {
		t.Errorf("hidden_act only / null softcap: %+v, %v", c, err)
	}
}

// writeCheckpoint writes tiny's config and the given tensors.
func writeCheckpoint(t *testing.T, edit func(map[string]safetensors.Tensor)) string {
	t.Helper()
	src, err := safetensors.OpenDir(filepath.Join(testdata, "models/tiny"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tensors := map[string]safetensors.Tensor{}
	for _, name := range src.Names() {
		tt, _ := src.Tensor(name)
		tt.Data = append([]byte(nil), tt.Data...)
		tensors[name] = tt
	}
	edit(tensors)
	dir := t.TempDir()
	var list []safetensors.Tensor
	for _, tt := range tensors {
		list = append(list, tt)
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), list, nil); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(testdata, "models/tiny/config.json"))
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	return dir
}

func TestOpenChecksTensorsAgainstConfig(t *testing.T) {
	cases := []struct {
		name string
		edit func(map[string]safetensors.Tensor)
		want []string
	}{
		{"missing", func(m map[string]safetensors.Tensor) { delete(m, "model.layers.2.mlp.up_proj.weight") },
			[]string{"missing tensor(s): model.layers.2.mlp.up_proj.weight"}},
		{"extra", func(m map[string]safetensors.Tensor) {
			m["model.layers.9.extra.weight"] = safetensors.Tensor{Name: "model.layers.9.extra.weight", DType: "F32", Shape: []int{1}, Data: make([]byte, 4)}
		}, []string{"does not call for: model.layers.9.extra.weight"}},
		{"shape", func(m map[string]safetensors.Tensor) {
			tt := m["model.norm.weight"]
			tt.Shape = []int{8, 8}
			m["model.norm.weight"] = tt
		}, []string{"model.norm.weight has shape [8,8], the config calls for [64]"}},
		{"dtype", func(m map[string]safetensors.Tensor) {
			tt := m["model.norm.weight"]
			tt.DType = "I32"
			m["model.norm.weight"] = tt
		}, []string{"model.norm.weight has dtype I32"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeCheckpoint(t, c.edit)
			ck, err := Open(dir)
			if err == nil {
				ck.Close()
				t.Fatal("Open accepted a checkpoint that does not fit its config")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	// The unmodified copy opens, and its weights alias the mapping.
	ck, err := Open(writeCheckpoint(t, func(map[string]safetensors.Tensor) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if w := ck.Weights[EmbedName]; w.DType != ir.F32 || !w.Shape.Equal(ir.Shape{512, 64}) {
		t.Errorf("embedding bound as %v%v", w.DType, w.Shape)
	}
}

func TestGraphsVerifyForEveryPreset(t *testing.T) {
	for _, name := range PresetNames() {
		c, _ := Preset(name)
		for _, s := range []GraphShape{{Tokens: 1, Context: 256}, {Tokens: 64, Context: 256, AllLogits: true}} {
			g, err := Build("g", c, s, nil)
			if err != nil {
				t.Fatalf("%s %+v: %v", name, s, err)
			}
			sliding := 0
			for _, v := range g.Values {
				if a, ok := v.Aux.(ir.Attention); ok && a.Window > 0 {
					sliding++
					if a.Layer%2 != 0 || a.CacheLen != min(c.SlidingWindow, 256) {
						t.Errorf("%s: layer %d slides with a cache of %d", name, a.Layer, a.CacheLen)
					}
				}
			}
			if sliding != (c.NumHiddenLayers+1)/2 {
				t.Errorf("%s: %d sliding layers, want the even ones", name, sliding)
			}
		}
	}
	c, _ := Preset("tiny")
	if _, err := Build("g", c, GraphShape{Tokens: 300, Context: 256}, nil); err == nil {
		t.Error("a chunk longer than the context was accepted")
	}
}
