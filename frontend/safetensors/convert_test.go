package safetensors

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestFloat32ToBF16(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{1, 0x3f80},
		{-2, 0xc000},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, rounds to even (down)
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, rounds to even (up)
		{math.Float32frombits(0x3f808001), 0x3f81}, // above half, rounds up
		{float32(math.Inf(-1)), 0xff80},
		{math.MaxFloat32, 0x7f80}, // overflows to +Inf, as in PyTorch
	}
	for _, tt := range tests {
		if got := Float32ToBF16(tt.in); got != tt.want {
			t.Errorf("Float32ToBF16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
	if got := Float32ToBF16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("Float32ToBF16(NaN) = %#04x, not a NaN", got)
	}
}

func TestFloat32sDecode(t *testing.T) {
	tests := []struct {
		dtype DType
		data  []byte
		want  []float32
	}{
		{F32, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}, []float32{1, -2}},
		{BF16, []byte{0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f}, []float32{1, -2, 0.5}},
		{F16, []byte{0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0x01, 0x00}, []float32{1, -2, 0.5, 5.9604645e-08}},
	}
	for _, tt := range tests {
		x := Tensor{Name: "x", DType: tt.dtype, Shape: []int{len(tt.want)}, Data: tt.data}
		got, err := x.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: Float32s = %v, want %v", tt.dtype, got, tt.want)
		}
		enc, err := EncodeFloat32s(tt.dtype, tt.want)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(enc, tt.data) {
			t.Errorf("%s: EncodeFloat32s = %x, want %x", tt.dtype, enc, tt.data)
		}
	}
}

func TestFloat32sErrors(t *testing.T) {
	for _, x := range []Tensor{
		{Name: "ids", DType: I32, Shape: []int{1}, Data: make([]byte, 4), File: "m.safetensors"},
		{Name: "short", DType: F32, Shape: []int{2}, Data: make([]byte, 4), File: "m.safetensors"},
		{Name: "weird", DType: "Q4", Shape: []int{2}, Data: make([]byte, 4), File: "m.safetensors"},
	} {
		_, err := x.Float32s()
		if err == nil || !strings.Contains(err.Error(), x.Name) || !strings.Contains(err.Error(), x.File) {
			t.Errorf("%s: Float32s error = %v, want one naming tensor and file", x.Name, err)
		}
	}
	if _, err := EncodeFloat32s(I32, []float32{1}); err == nil {
		t.Error("EncodeFloat32s(I32) succeeded")
	}
}

func TestElems(t *testing.T) {
	for _, tt := range []struct {
		shape []int
		want  int
	}{{nil, 1}, {[]int{}, 1}, {[]int{3}, 3}, {[]int{2, 3, 4}, 24}, {[]int{5, 0}, 0}} {
		if got := (Tensor{Shape: tt.shape}).Elems(); got != tt.want {
			t.Errorf("Elems(%v) = %d, want %d", tt.shape, got, tt.want)
		}
	}
}
