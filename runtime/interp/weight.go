package interp

import "github.com/gemmac/gemmac/ir"

// weight is a read-only matrix in its stored dtype; kernels widen elements
// as they read them rather than keeping an f32 copy of the model.
type weight struct {
	dtype ir.DType
	f32   []float32
	u16   []uint16
	q     []byte // q8_0 / q4_0 blocks (quant.go)
	cols  int
}

func newWeight(t ir.Tensor) weight {
	w := weight{dtype: t.DType, cols: t.Shape.Last()}
	switch {
	case t.DType == ir.F32:
		w.f32 = t.F32s()
	case t.DType.IsQuantized():
		w.q = t.Data
	default:
		w.u16 = t.U16s()
	}
	return w
}

// row widens n elements starting at element off into dst (for quantised
// weights off and n are whole blocks: whole rows).
func (w weight) row(off, n int, dst []float32) {
	switch w.dtype {
	case ir.Q8_0, ir.Q4_0:
		w.rowQuant(off, n, dst)
	case ir.F32:
		copy(dst[:n], w.f32[off:off+n])
	case ir.BF16:
		for i, b := range w.u16[off : off+n] {
			dst[i] = ir.BF16ToF32(b)
		}
	case ir.F16:
		for i, h := range w.u16[off : off+n] {
			dst[i] = ir.F16ToF32(h)
		}
	}
}

// dot is x · (row r of w).
func (w weight) dot(r int, x []float32) float32 {
	off := r * w.cols
	switch w.dtype {
	case ir.F32:
		return dotF32(x, w.f32[off:off+w.cols])
	case ir.BF16:
		return dotBF16(x, w.u16[off:off+w.cols])
	case ir.Q8_0, ir.Q4_0:
		return w.dotQuant(r, x)
	}
	return dotF16(x, w.u16[off:off+w.cols])
}

func dotF32(x, w []float32) float32 {
	w = w[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * w[i]
		s1 += x[i+1] * w[i+1]
		s2 += x[i+2] * w[i+2]
		s3 += x[i+3] * w[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * w[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func dotBF16(x []float32, w []uint16) float32 {
	w = w[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * ir.BF16ToF32(w[i])
		s1 += x[i+1] * ir.BF16ToF32(w[i+1])
		s2 += x[i+2] * ir.BF16ToF32(w[i+2])
		s3 += x[i+3] * ir.BF16ToF32(w[i+3])
	}
	for ; i < len(x); i++ {
		s0 += x[i] * ir.BF16ToF32(w[i])
	}
	return (s0 + s1) + (s2 + s3)
}

func dotF16(x []float32, w []uint16) float32 {
	var s float32
	for i := range x {
		s += x[i] * ir.F16ToF32(w[i])
	}
	return s
}
