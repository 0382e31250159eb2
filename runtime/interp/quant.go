package interp

import (
	"encoding/binary"

	"github.com/gemmac/gemmac/ir"
)

// Quantised weights (q8_0, q4_0) stay in their blocks; kernels dequantise a
// block at a time and keep the activations in f32, so the result is that of
// an f32 matmul with the dequantised weights (what the float64 references
// for the quantised GGUFs compute), not llama.cpp's integer dot products.

const (
	q8Block = 2 + ir.QK
	q4Block = 2 + ir.QK/2
)

// rowQuant dequantises n elements starting at element off (both whole
// blocks) into dst.
func (w weight) rowQuant(off, n int, dst []float32) {
	bb := w.dtype.BlockBytes()
	src := w.q[off/ir.QK*bb : (off+n)/ir.QK*bb]
	switch w.dtype {
	case ir.Q8_0:
		ir.DequantizeQ8_0(dst[:n], src)
	case ir.Q4_0:
		ir.DequantizeQ4_0(dst[:n], src)
	}
}

// dotQuant is x · (row r of a quantised w).
func (w weight) dotQuant(r int, x []float32) float32 {
	bb := w.dtype.BlockBytes()
	rowBytes := w.cols / ir.QK * bb
	src := w.q[r*rowBytes : (r+1)*rowBytes]
	if w.dtype == ir.Q8_0 {
		return dotQ8_0(x, src)
	}
	return dotQ4_0(x, src)
}

// dotQ8_0 sums x[j]·q[j] over each block in f32 and scales the block's sum
// by its d.
func dotQ8_0(x []float32, src []byte) float32 {
	var sum float32
	for b := 0; b+q8Block <= len(src); b += q8Block {
		d := ir.F16ToF32(binary.LittleEndian.Uint16(src[b:]))
		qs := src[b+2 : b+q8Block]
		xb := x[b/q8Block*ir.QK:][:ir.QK]
		var s0, s1, s2, s3 float32
		for j := 0; j < ir.QK; j += 4 {
			s0 += xb[j] * float32(int8(qs[j]))
			s1 += xb[j+1] * float32(int8(qs[j+1]))
			s2 += xb[j+2] * float32(int8(qs[j+2]))
			s3 += xb[j+3] * float32(int8(qs[j+3]))
		}
		sum += ((s0 + s1) + (s2 + s3)) * d
	}
	return sum
}

// dotQ4_0 is dotQ8_0 for q4_0 blocks: byte j holds weights j (low nibble)
// and j+16 (high nibble).
func dotQ4_0(x []float32, src []byte) float32 {
	var sum float32
	for b := 0; b+q4Block <= len(src); b += q4Block {
		d := ir.F16ToF32(binary.LittleEndian.Uint16(src[b:]))
		qs := src[b+2 : b+q4Block]
		xb := x[b/q4Block*ir.QK:][:ir.QK]
		lo, hi := xb[:ir.QK/2], xb[ir.QK/2:]
		var s0, s1 float32
		for j, q := range qs {
			s0 += lo[j] * float32(int(q&0x0f)-8)
			s1 += hi[j] * float32(int(q>>4)-8)
		}
		sum += (s0 + s1) * d
	}
	return sum
}
