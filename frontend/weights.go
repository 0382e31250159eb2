package frontend

import (
	"fmt"

	"github.com/gemmac/gemmac/ir"
)

// WeightSpec is one tensor a Gemma-2 checkpoint must hold, by its Hugging
// Face name, in the checkpoint's own layout (out × in for projections).
type WeightSpec struct {
	Name  string
	Shape ir.Shape
}

// Tensor names, as Hugging Face's Gemma2ForCausalLM saves them.
const (
	EmbedName     = "model.embed_tokens.weight"
	FinalNormName = "model.norm.weight"
	LMHeadName    = "lm_head.weight"
)

// LayerWeights are the names of one decoder layer's tensors.
type LayerWeights struct {
	InputNorm, Q, K, V, O, PostAttnNorm     string
	PreFFWNorm, Gate, Up, Down, PostFFWNorm string
}

// Layer returns the tensor names of layer i.
func Layer(i int) LayerWeights {
	p := fmt.Sprintf("model.layers.%d.", i)
	return LayerWeights{
		InputNorm:    p + "input_layernorm.weight",
		Q:            p + "self_attn.q_proj.weight",
		K:            p + "self_attn.k_proj.weight",
		V:            p + "self_attn.v_proj.weight",
		O:            p + "self_attn.o_proj.weight",
		PostAttnNorm: p + "post_attention_layernorm.weight",
		PreFFWNorm:   p + "pre_feedforward_layernorm.weight",
		Gate:         p + "mlp.gate_proj.weight",
		Up:           p + "mlp.up_proj.weight",
		Down:         p + "mlp.down_proj.weight",
		PostFFWNorm:  p + "post_feedforward_layernorm.weight",
	}
}

// WeightSpecs lists every tensor the checkpoint must hold, in graph order.
func (c *Config) WeightSpecs() []WeightSpec {
	H, F := c.HiddenSize, c.IntermediateSize
	qDim, kvDim := c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	specs := []WeightSpec{{EmbedName, ir.Shape{c.VocabSize, H}}}
	for i := 0; i < c.NumHiddenLayers; i++ {
		l := Layer(i)
		specs = append(specs,
			WeightSpec{l.InputNorm, ir.Shape{H}},
			WeightSpec{l.Q, ir.Shape{qDim, H}},
			WeightSpec{l.K, ir.Shape{kvDim, H}},
			WeightSpec{l.V, ir.Shape{kvDim, H}},
			WeightSpec{l.O, ir.Shape{H, qDim}},
			WeightSpec{l.PostAttnNorm, ir.Shape{H}},
			WeightSpec{l.PreFFWNorm, ir.Shape{H}},
			WeightSpec{l.Gate, ir.Shape{F, H}},
			WeightSpec{l.Up, ir.Shape{F, H}},
			WeightSpec{l.Down, ir.Shape{H, F}},
			WeightSpec{l.PostFFWNorm, ir.Shape{H}},
		)
	}
	specs = append(specs, WeightSpec{FinalNormName, ir.Shape{H}})
	if !c.TieWordEmbeddings {
		specs = append(specs, WeightSpec{LMHeadName, ir.Shape{c.VocabSize, H}})
	}
	return specs
}

// LMHead is the tensor the logits are computed with: the embedding when tied.
func (c *Config) LMHead() string {
	if c.TieWordEmbeddings {
		return EmbedName
	}
	return LMHeadName
}

// ParamCount is the number of weights in the model.
func (c *Config) ParamCount() int64 {
	var n int64
	for _, s := range c.WeightSpecs() {
		n += int64(s.Shape.Elems())
	}
	return n
}
