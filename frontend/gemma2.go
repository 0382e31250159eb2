package frontend

import (
	"fmt"
	"math"

	"github.com/gemmac/gemmac/ir"
)

// GraphShape fixes the static shape of one entry point.
type GraphShape struct {
	// Tokens is the number of tokens per call: the prefill chunk, or 1 for
	// decode. Calls with fewer valid tokens pass n_valid.
	Tokens int
	// Context is the longest sequence (prompt + generated) the KV cache holds.
	Context int
	// AllLogits returns logits for every token of the chunk rather than only
	// the last valid one.
	AllLogits bool
	// Batch makes each of the Tokens rows a sequence of its own: one
	// decode step of Tokens conversations at once, row t at position pos[t]
	// (pos is i32[Tokens]) with its own KV cache, every row's logits
	// returned. The weights are read once for all rows.
	Batch bool
	// KVDType is the KV cache's element type: F32 (or 0) or BF16.
	KVDType ir.DType
}

// Graph inputs. "pos" is the position of the chunk's first token (of each
// row, i32[T], in a Batch graph) and "n_valid" how many of its tokens (rows)
// are real; the rest is padding.
const (
	InputTokens = "tokens"
	InputPos    = "pos"
	InputValid  = "n_valid"
)

// Build describes the Gemma-2 forward pass for one chunk of tokens as a graph,
// following Hugging Face transformers' Gemma2 (eager). dtypes gives each
// weight's stored dtype; a name it lacks is taken as f32.
func Build(name string, c *Config, s GraphShape, dtypes map[string]ir.DType) (*ir.Graph, error) {
	if s.Tokens <= 0 || s.Context <= 0 {
		return nil, fmt.Errorf("graph %s: tokens %d and context %d must be positive", name, s.Tokens, s.Context)
	}
	if s.Tokens > s.Context && !s.Batch {
		return nil, fmt.Errorf("graph %s: chunk of %d tokens exceeds the context of %d", name, s.Tokens, s.Context)
	}
	if kv := s.KVDType; kv != 0 && kv != ir.F32 && kv != ir.BF16 {
		return nil, fmt.Errorf("graph %s: a KV cache of %v (want f32 or bf16)", name, kv)
	}
	if s.Batch && !s.AllLogits {
		return nil, fmt.Errorf("graph %s: a batch graph returns every row's logits (set AllLogits)", name)
	}
	b := ir.NewBuilder(name)
	b.Meta("tokens", s.Tokens)
	b.Meta("context", s.Context)
	posShape := ir.Shape{}
	if s.Batch {
		b.Meta("batch", s.Tokens)
		posShape = ir.Shape{s.Tokens}
	}
	T, H, D := s.Tokens, c.HiddenSize, c.HeadDim
	Hq, Hkv := c.NumAttentionHeads, c.NumKeyValueHeads

	weight := func(name string, shape ...int) *ir.Value {
		dt, ok := dtypes[name]
		if !ok {
			dt = ir.F32
		}
		return b.Weight(name, dt, shape)
	}
	rmsNorm := func(x *ir.Value, w, label string) *ir.Value {
		// Gemma stores the norm scale as w - 1.
		return b.Op(ir.OpRMSNorm, label, ir.RMSNorm{Eps: float32(c.RMSNormEps), Offset: 1}, x, weight(w, H))
	}
	linear := func(x *ir.Value, w string, out, in int) *ir.Value {
		return b.Op(ir.OpMatMul, w, nil, x, weight(w, out, in))
	}
	reshape := func(x *ir.Value, label string, to ...int) *ir.Value {
		return b.Op(ir.OpReshape, label, ir.Reshape{To: to}, x)
	}

	tokens := b.Input(InputTokens, ir.I32, ir.Shape{T})
	pos := b.Input(InputPos, ir.I32, posShape)
	nValid := b.Input(InputValid, ir.I32, ir.Shape{})

	embed := weight(EmbedName, c.VocabSize, H)
	x := b.Op(ir.OpEmbed, "embed", nil, embed, tokens)
	x = b.Op(ir.OpScale, "embed·√hidden", ir.Scalar{C: c.EmbedScale()}, x)

	for i := 0; i < c.NumHiddenLayers; i++ {
		l := Layer(i)
		lbl := func(what string) string { return fmt.Sprintf("layers.%d.%s", i, what) }

		// Attention block.
		h := rmsNorm(x, l.InputNorm, lbl("input_norm"))
		rope := ir.RoPE{Theta: float32(c.RopeTheta)}
		q := reshape(linear(h, l.Q, Hq*D, H), lbl("q"), T, Hq, D)
		q = b.Op(ir.OpRoPE, lbl("q_rope"), rope, q, pos)
		k := reshape(linear(h, l.K, Hkv*D, H), lbl("k"), T, Hkv, D)
		k = b.Op(ir.OpRoPE, lbl("k_rope"), rope, k, pos)
		v := reshape(linear(h, l.V, Hkv*D, H), lbl("v"), T, Hkv, D)
		attn := ir.Attention{
			Layer:    i,
			Scale:    c.QueryScale(),
			Softcap:  float32(c.AttnLogitSoftcapping),
			CacheLen: s.Context,
			KV:       s.KVDType,
		}
		if c.IsSliding(i) {
			attn.Window = c.SlidingWindow
			attn.CacheLen = min(c.SlidingWindow, s.Context)
		}
		a := b.Op(ir.OpAttention, lbl("attn"), attn, q, k, v, pos, nValid)
		a = reshape(a, lbl("attn_heads"), T, Hq*D)
		if i == c.NumHiddenLayers-1 && !s.AllLogits && T > 1 {
			// Only the last valid token's logits leave the graph, and the
			// attention above has stored every token's keys and values:
			// the other rows of this layer's output projection and
			// feed-forward block are dead, so they are dropped here rather
			// than multiplied (as llama.cpp does with its output ids). A
			// one-token graph's only row is its last.
			a = b.Op(ir.OpSelectRow, lbl("attn_last_token"), nil, a, nValid)
			x = b.Op(ir.OpSelectRow, "last_token", nil, x, nValid)
		}
		a = linear(a, l.O, H, Hq*D)
		a = rmsNorm(a, l.PostAttnNorm, lbl("post_attn_norm"))
		x = b.Op(ir.OpAdd, lbl("residual_attn"), nil, x, a)

		// Feed-forward block: GeGLU.
		h = rmsNorm(x, l.PreFFWNorm, lbl("pre_ffw_norm"))
		gate := b.Op(ir.OpGeluTanh, lbl("gelu"), nil, linear(h, l.Gate, c.IntermediateSize, H))
		up := linear(h, l.Up, c.IntermediateSize, H)
		m := linear(b.Op(ir.OpMul, lbl("geglu"), nil, gate, up), l.Down, H, c.IntermediateSize)
		m = rmsNorm(m, l.PostFFWNorm, lbl("post_ffw_norm"))
		x = b.Op(ir.OpAdd, lbl("residual_ffw"), nil, x, m)
	}

	x = rmsNorm(x, FinalNormName, "final_norm")
	logits := linear(x, c.LMHead(), c.VocabSize, H)
	if c.FinalLogitSoftcapping > 0 {
		logits = b.Op(ir.OpSoftcap, "final_softcap", ir.Scalar{C: float32(c.FinalLogitSoftcapping)}, logits)
	}
	return b.Finish(logits)
}

// EmbedScale is sqrt(hidden_size) rounded to the activation dtype, as
// transformers computes it (a bf16 9B multiplies by 59.75, not 59.87).
func (c *Config) EmbedScale() float32 {
	return ir.RoundTo(float32(math.Sqrt(float64(c.HiddenSize))), c.ActivationDType())
}

// ActivationDType is the dtype Hugging Face runs this checkpoint in.
func (c *Config) ActivationDType() ir.DType {
	switch c.TorchDType {
	case "bfloat16":
		return ir.BF16
	case "float16":
		return ir.F16
	}
	return ir.F32
}
