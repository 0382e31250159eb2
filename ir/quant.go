package ir

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Block-quantised weights, bit for bit as llama.cpp's ggml stores them in
// GGUF files (ggml-common.h):
//
//	q8_0: f16 d, then 32 × int8 q            34 bytes, w[j] = q[j]·d
//	q4_0: f16 d, then 16 bytes of nibbles    18 bytes, w[j] = (nib[j] − 8)·d
//
// where in q4_0 weight j < 16 is the low nibble of byte j and weight j+16 its
// high nibble. Blocks run along a row (the innermost dimension) and never
// straddle rows, so a row's length must be a multiple of QK.
//
// A dequantised weight is exact in f32: an f16 scale times an integer of at
// most 8 bits needs at most 19 significant bits.
const (
	// QK is the number of weights in one q8_0 or q4_0 block.
	QK = 32

	q8Block = 2 + QK   // 34
	q4Block = 2 + QK/2 // 18
)

// wantWeight accepts the dtypes a weight matrix (a matmul's w, an embedding
// table) may be stored in: floats and the quantised types.
func wantWeight(what string, v *Value) error {
	if !v.DType.IsFloat() && !v.DType.IsQuantized() {
		return fmt.Errorf("%s %v is %v, want a float or quantised type", what, v, v.DType)
	}
	return nil
}

// DequantizeRow decodes len(dst) elements of dtype d from src, which must
// hold exactly d.BytesFor(len(dst)) bytes. It works for every float dtype;
// for the quantised ones len(dst) must be a multiple of QK.
func DequantizeRow(d DType, src []byte, dst []float32) error {
	if want := d.BytesFor(len(dst)); want < 0 || len(src) != want {
		return fmt.Errorf("dequantize %v: %d bytes for %d elements (want %d)", d, len(src), len(dst), want)
	}
	switch d {
	case Q8_0:
		DequantizeQ8_0(dst, src)
	case Q4_0:
		DequantizeQ4_0(dst, src)
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	default:
		return fmt.Errorf("dequantize: %v is not a weight dtype", d)
	}
	return nil
}

// DequantizeQ8_0 decodes len(src)/34 q8_0 blocks into dst (32 per block).
// The caller checks the lengths.
func DequantizeQ8_0(dst []float32, src []byte) {
	for b := 0; b+q8Block <= len(src); b += q8Block {
		d := F16ToF32(binary.LittleEndian.Uint16(src[b:]))
		out := dst[b/q8Block*QK:][:QK]
		qs := src[b+2 : b+q8Block]
		for j := range out {
			out[j] = float32(int8(qs[j])) * d
		}
	}
}

// DequantizeQ4_0 decodes len(src)/18 q4_0 blocks into dst (32 per block).
// The caller checks the lengths.
func DequantizeQ4_0(dst []float32, src []byte) {
	for b := 0; b+q4Block <= len(src); b += q4Block {
		d := F16ToF32(binary.LittleEndian.Uint16(src[b:]))
		out := dst[b/q4Block*QK:][:QK]
		qs := src[b+2 : b+q4Block]
		for j, q := range qs {
			out[j] = float32(int(q&0x0f)-8) * d
			out[j+QK/2] = float32(int(q>>4)-8) * d
		}
	}
}

// QuantizeRow encodes src (a multiple of QK values) as q8_0 or q4_0 into
// dst, which must hold d.BytesFor(len(src)) bytes. The rounding is that of
// llama.cpp's reference quantize_row_q8_0_ref / quantize_row_q4_0_ref (what
// llama-quantize uses without an importance matrix), so the blocks come out
// identical to llama.cpp's:
//
//	q8_0: d = amax/127, q = round(x·(1/d)), halves away from zero;
//	q4_0: d = m/−8 where m is the value of largest magnitude (the first on
//	      ties), q = min(15, trunc(x·(1/d) + 8.5)).
//
// Every product and sum is rounded to f32 as in C (no fused multiply-add).
func QuantizeRow(d DType, src []float32, dst []byte) error {
	return quantizeRow(d, src, dst, false)
}

// QuantizeRowSearched is QuantizeRow with each q4_0 block's scale searched
// for the least squared error: for the block's largest-magnitude value m it
// tries m/−s for every s in q4SearchDivisors (s > 8 clips m to −8·d for
// finer steps everywhere else), refits each candidate's scale by least
// squares for the levels it rounds to, and keeps the refit with the least
// error, rounded to the stored f16 before the levels are rounded to it.
// On Gaussian blocks its squared error is 0.89 of llama.cpp's rule (an
// exhaustive search reaches 0.886). q8_0 blocks are QuantizeRow's.
func QuantizeRowSearched(d DType, src []float32, dst []byte) error {
	return quantizeRow(d, src, dst, true)
}

// q4SearchDivisors are the ratios m/d QuantizeRowSearched tries; llama.cpp's
// rule is 8. Five of them, one pass over the block each, come within 1% of
// the squared error of trying 34 (every quarter from 6 to 10, both signs).
var q4SearchDivisors = [...]float32{9, 8.5, 8, 7.5, 7}

func quantizeRow(d DType, src []float32, dst []byte, searched bool) error {
	if !d.IsQuantized() {
		return fmt.Errorf("quantize: %v is not a quantised dtype", d)
	}
	if want := d.BytesFor(len(src)); want < 0 || len(dst) != want {
		return fmt.Errorf("quantize %v: %d elements into %d bytes (want %d; rows must be whole blocks of %d)",
			d, len(src), len(dst), want, QK)
	}
	for b := 0; b < len(src)/QK; b++ {
		x := src[b*QK : (b+1)*QK]
		switch {
		case d == Q8_0:
			quantizeBlockQ8_0(dst[b*q8Block:(b+1)*q8Block], x)
		case searched:
			quantizeBlockQ4_0Searched(dst[b*q4Block:(b+1)*q4Block], x)
		default:
			quantizeBlockQ4_0(dst[b*q4Block:(b+1)*q4Block], x)
		}
	}
	return nil
}

// Quantize encodes a tensor of the given shape (row-major f32) as d with
// QuantizeRow; rows must be whole blocks.
func Quantize(d DType, shape Shape, src []float32) (Tensor, error) {
	if !d.IsQuantized() {
		return Tensor{}, fmt.Errorf("quantize: %v is not a quantised dtype", d)
	}
	n, err := d.TensorBytes(shape)
	if err != nil {
		return Tensor{}, err
	}
	if len(src) != shape.Elems() {
		return Tensor{}, fmt.Errorf("quantize: %d values for shape %v", len(src), shape)
	}
	t := Tensor{DType: d, Shape: append(Shape(nil), shape...), Data: make([]byte, n)}
	return t, QuantizeRow(d, src, t.Data)
}

func quantizeBlockQ8_0(dst []byte, x []float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, abs32(v))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(dst, F32ToF16(d))
	for j, v := range x {
		dst[2+j] = byte(int8(roundAway(float32(v * id))))
	}
}

func quantizeBlockQ4_0(dst []byte, x []float32) {
	encodeQ4_0(dst, x, largestMagnitude(x)/-8)
}

// largestMagnitude is the value of largest magnitude in x, the first on ties.
func largestMagnitude(x []float32) float32 {
	var amax, m float32
	for _, v := range x {
		if a := abs32(v); amax < a {
			amax, m = a, v
		}
	}
	return m
}

func quantizeBlockQ4_0Searched(dst []byte, x []float32) {
	m := largestMagnitude(x)
	d := m / -8
	if m != 0 && !math.IsInf(float64(m), 0) && !math.IsNaN(float64(m)) {
		// The error of the levels q with the least-squares scale Σxq/Σq²
		// is Σx² − (Σxq)²/Σq²: one pass per candidate finds the one with
		// the largest (Σxq)²/Σq².
		var best float32
		for _, s := range q4SearchDivisors {
			id := -s / m
			var sxq, sqq float32
			for _, v := range x {
				q := float32(min(7, max(-8, int32(v*id+8.5)-8)))
				sxq += v * q
				sqq += q * q
			}
			if g := sxq * sxq / sqq; sqq > 0 && g > best {
				best, d = g, sxq/sqq
			}
		}
		d = F16ToF32(F32ToF16(d)) // the levels fit the scale as stored
	}
	encodeQ4_0(dst, x, d)
}

// encodeQ4_0 writes the block x with scale d: llama.cpp's encoding, the
// levels rounded with the f32 reciprocal of d.
func encodeQ4_0(dst []byte, x []float32, d float32) {
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(dst, F32ToF16(d))
	for j := 0; j < QK/2; j++ {
		// The conversions keep the product rounded to f32, unfused with
		// q4Level's add, as in C.
		dst[2+j] = byte(q4Level(float32(x[j]*id))) | byte(q4Level(float32(x[j+QK/2]*id)))<<4
	}
}

// q4Level is the stored level (0..15) of a value already divided by the
// scale: llama.cpp's min(15, trunc(v + 8.5)), and 0 below the range, which
// only a searched scale (clipping the extreme value) reaches.
func q4Level(v float32) int {
	return min(15, max(0, int(int8(float32(v+8.5)))))
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// roundAway is C's roundf: to nearest, halves away from zero.
func roundAway(v float32) float32 { return float32(math.Round(float64(v))) }
