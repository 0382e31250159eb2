package interp

import (
	"math"
	"sync"

	"github.com/gemmac/gemmac/ir"
)

// parallelFor splits [0, n) into contiguous ranges, one per thread.
func parallelFor(n, threads int, body func(lo, hi int)) {
	if threads <= 1 || n < 2*threads {
		body(0, n)
		return
	}
	var wg sync.WaitGroup
	step := (n + threads - 1) / threads
	for lo := 0; lo < n; lo += step {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			body(lo, hi)
		}(lo, min(lo+step, n))
	}
	wg.Wait()
}

func embed(dst []float32, table weight, ids []int32) {
	h := table.cols
	for t, id := range ids {
		table.row(int(id)*h, h, dst[t*h:(t+1)*h])
	}
}

// matmul computes dst[rows, N] = x[rows, K] · wᵀ with w [N, K]. Threads split
// the output columns so each weight row is read once for all rows of x.
func matmul(dst, x []float32, rows int, w weight, threads int) {
	k := w.cols
	n := len(dst) / rows
	parallelFor(n, threads, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			for r := 0; r < rows; r++ {
				dst[r*n+j] = w.dot(j, x[r*k:(r+1)*k])
			}
		}
	})
}

func rmsNorm(dst, x, w []float32, eps, offset float32) {
	h := len(w)
	for r := 0; r < len(x)/h; r++ {
		row := x[r*h : (r+1)*h]
		var ss float64
		for _, e := range row {
			ss += float64(e) * float64(e)
		}
		inv := float32(1 / math.Sqrt(ss/float64(h)+float64(eps)))
		for i, e := range row {
			dst[r*h+i] = e * inv * (offset + w[i])
		}
	}
}

// rope rotates each head's halves (i, i+D/2) by angle position·θ^(-2i/D),
// row t being at position pos[t].
func rope(dst, x []float32, shape ir.Shape, pos []int, theta float32) {
	tokens, heads, d := shape[0], shape[1], shape[2]
	half := d / 2
	cos, sin := make([]float64, half), make([]float64, half)
	for t := 0; t < tokens; t++ {
		p := float64(pos[t])
		for i := 0; i < half; i++ {
			freq := math.Pow(float64(theta), -float64(2*i)/float64(d))
			sin[i], cos[i] = math.Sincos(p * freq)
		}
		for h := 0; h < heads; h++ {
			base := (t*heads + h) * d
			for i := 0; i < half; i++ {
				a, b := float64(x[base+i]), float64(x[base+i+half])
				dst[base+i] = float32(a*cos[i] - b*sin[i])
				dst[base+i+half] = float32(b*cos[i] + a*sin[i])
			}
		}
	}
}

func add(dst, a, b []float32) {
	for i := range dst {
		dst[i] = a[i] + b[i]
	}
}

func mul(dst, a, b []float32) {
	for i := range dst {
		dst[i] = a[i] * b[i]
	}
}

func scale(dst, x []float32, c float32) {
	for i := range dst {
		dst[i] = x[i] * c
	}
}

func softcap(dst, x []float32, c float32) {
	for i := range dst {
		dst[i] = c * float32(math.Tanh(float64(x[i]/c)))
	}
}

// geluTanh is GELU's tanh approximation, which Gemma was trained with.
func geluTanh(dst, x []float32) {
	const k = 0.7978845608028654 // sqrt(2/π)
	for i, e := range x {
		v := float64(e)
		dst[i] = float32(0.5 * v * (1 + math.Tanh(k*(v+0.044715*v*v*v))))
	}
}

func softmaxRows(dst, x []float32, n int) {
	for r := 0; r < len(x)/n; r++ {
		softmax(dst[r*n:(r+1)*n], x[r*n:(r+1)*n])
	}
}

// softmax subtracts the maximum first so exp never overflows.
func softmax(dst, x []float32) {
	m := float32(math.Inf(-1))
	for _, e := range x {
		m = max(m, e)
	}
	var sum float64
	for i, e := range x {
		p := math.Exp(float64(e - m))
		dst[i] = float32(p)
		sum += p
	}
	for i := range dst {
		dst[i] = float32(float64(dst[i]) / sum)
	}
}
