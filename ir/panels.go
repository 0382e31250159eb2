package ir

// Weights laid out in panels, as the CPU kernels of f32 matmuls read them
// (codegen.PanelColumns): the N × K matrix w (row n is output column n)
// becomes ⌈N/P⌉ panels, each K rows of P floats, panel p's row k holding
// w[p·P + c, k] for c = 0..P−1 (zeros past N). A prefill tile then reads
// a panel's P columns at each k as whole vectors, where rows of w would
// have to be transposed into that order first, once per call.

// PanelCount is the panels of P columns an N × K matrix is laid out in.
func PanelCount(N, P int) int { return (N + P - 1) / P }

// PanelFloats is the length of an N × K matrix laid out in panels of P
// columns.
func PanelFloats(N, K, P int) int { return PanelCount(N, P) * P * K }

// LayPanels lays panels [p0, p1) of the N × K row-major matrix src out in
// dst (PanelFloats(N, K, P) floats; each panel's are written whole, so
// disjoint ranges may be laid in parallel).
func LayPanels(dst, src []float32, N, K, P, p0, p1 int) {
	// Tiles of t columns × t values of k: t values read from each row and
	// t written to each of the panel's rows, both runs of memory.
	const t = 8
	for p := p0; p < p1; p++ {
		panel := dst[p*P*K : (p+1)*P*K]
		for c0 := 0; c0 < P; c0 += t {
			for k0 := 0; k0 < K; k0 += t {
				for c := c0; c < min(c0+t, P); c++ {
					n := p*P + c
					if n >= N {
						for k := k0; k < min(k0+t, K); k++ {
							panel[k*P+c] = 0
						}
						continue
					}
					row := src[n*K : (n+1)*K]
					for k := k0; k < min(k0+t, K); k++ {
						panel[k*P+c] = row[k]
					}
				}
			}
		}
	}
}
