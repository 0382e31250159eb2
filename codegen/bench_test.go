package codegen

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"unsafe"

	"github.com/gemmac/gemmac/frontend/mmap"
	gir "github.com/gemmac/gemmac/ir"
)

// Benchmarks on Gemma-2 2B shapes. Weight GB/s (b.SetBytes) is comparable
// with BenchmarkProbeRead; GFLOP/s with BenchmarkProbeFMA.

var (
	benchOnce sync.Once
	benchLib  *lib
	benchSpec = struct {
		gemvBF16, gemvF32, gegluBF16, gemmBF16, gegluPrefill Spec
		gemmF32, gegluPrefillF32, downF32, downBF16          Spec
		attention, attentionDecode                           Attention
		read                                                 ProbeRead
		fma                                                  ProbeFMA
	}{
		gemvBF16:        Matmul{R: 1, K: 2304, N: 9216, WType: gir.BF16},
		gemvF32:         Matmul{R: 1, K: 2304, N: 9216, WType: gir.F32},
		gegluBF16:       GeGLU{R: 1, K: 2304, F: 9216, WType: gir.BF16},
		gemmBF16:        Matmul{R: 128, K: 2304, N: 2304, WType: gir.BF16},
		gegluPrefill:    GeGLU{R: 128, K: 2304, F: 2304, WType: gir.BF16},
		gemmF32:         Matmul{R: 128, K: 2304, N: 2304, WType: gir.F32},
		gegluPrefillF32: GeGLU{R: 128, K: 2304, F: 2304, WType: gir.F32},
		downF32:         Matmul{R: 128, K: 9216, N: 2304, WType: gir.F32},
		downBF16:        Matmul{R: 128, K: 9216, N: 2304, WType: gir.BF16},
		attention:       Attention{T: 128, HQ: 8, HKV: 4, D: 256, CacheLen: 2048, Softcap: 50, Scale: 1.0 / 16},
		attentionDecode: Attention{T: 1, HQ: 8, HKV: 4, D: 256, CacheLen: 2048, Softcap: 50, Scale: 1.0 / 16},
		read:            ProbeRead{Bytes: arenaBytes},
		fma:             ProbeFMA{Iters: 20000},
	}
)

// panelKnobs reads the environment's settings of the prefill panels:
// GEMMAC_PB (panelBytes), GEMMAC_P1 and GEMMAC_P2 (panelRows × panelVectors
// for one and two matrices, as 6x4).
func panelKnobs() {
	if v := os.Getenv("GEMMAC_PB"); v != "" {
		panelBytes, _ = strconv.ParseInt(v, 10, 64)
	}
	for i, e := range []string{"GEMMAC_P1", "GEMMAC_P2"} {
		if v := os.Getenv(e); v != "" {
			fmt.Sscanf(v, "%dx%d", &panelRows[i], &panelVectors[i])
		}
	}
}

// arenaBytes of weights, far more than any last-level cache.
const arenaBytes = 512 << 20

var (
	arenaOnce sync.Once
	arena     []uint16
)

// getArena returns arenaBytes of u16 that read as normal bf16 values
// (±[0.5, 1)) and, in pairs, as normal f32 values, in transparent huge
// pages as the engines' staged weights are (through 4 KiB pages, TLB
// misses slow the decode GEMVs).
func getArena() []uint16 {
	arenaOnce.Do(func() {
		mem, err := mmap.Anon(arenaBytes)
		if err != nil {
			panic(err)
		}
		arena = unsafe.Slice((*uint16)(unsafe.Pointer(&mem[0])), arenaBytes/2)
		x := uint32(12345)
		for i := range arena {
			x = x*1664525 + 1013904223
			arena[i] = uint16(0x3F00|(x>>24)&0x7F) | uint16(x>>16)&0x8000
		}
	})
	return arena
}

func getBenchLib(b *testing.B) *lib {
	benchOnce.Do(func() {
		panelKnobs()
		if v := os.Getenv("GEMMAC_DX"); v != "" {
			deinterleaveX = v != "0"
		}
		if v := os.Getenv("GEMMAC_PF"); v != "" {
			decodePrefetch, _ = strconv.Atoi(v)
		}
		for i, e := range []string{"GEMMAC_NC1", "GEMMAC_NC2"} {
			if v := os.Getenv(e); v != "" {
				decodeNC[i], _ = strconv.Atoi(v)
			}
		}
		for i, e := range []string{"GEMMAC_U1", "GEMMAC_U2"} {
			if v := os.Getenv(e); v != "" {
				decodeUnroll[i], _ = strconv.Atoi(v)
			}
		}
		tg := HostTarget()
		if v, ok := os.LookupEnv("GEMMAC_TUNE"); ok {
			tg.Tune = v
		}
		m := NewModule(tg)
		s := benchSpec
		for _, sp := range []Spec{s.gemvBF16, s.gemvF32, s.gegluBF16, s.gemmBF16, s.gegluPrefill, s.gemmF32, s.gegluPrefillF32, s.downF32, s.downBF16, s.attention, s.attentionDecode, s.read, s.fma} {
			m.MustAdd(sp)
		}
		for _, sp := range decodeShapes {
			m.MustAdd(sp.spec)
		}
		benchLib = buildLib(b, m)
		benchLib.lanes = m.Target.Lanes
	})
	if benchLib == nil {
		b.Fatal("benchmark library failed to build")
	}
	return benchLib
}

// parallel runs the kernel over [0, items) split into `threads` granule-
// aligned parts, one goroutine (locked to an OS thread) per part.
type runner struct {
	l       *lib
	name    string
	args    [][]uintptr // iteration i uses args[i%len(args)]
	items   int64
	gran    int64
	threads int
}

func (r runner) run(b *testing.B) {
	if r.threads == 1 {
		for i := 0; i < b.N; i++ {
			r.l.call(b, r.name, r.args[i%len(r.args)], 0, r.items)
		}
		return
	}
	// Each worker runs its own b.N calls on its part: no per-call handoff
	// (a goroutine in a C call keeps its P until sysmon retakes it, which
	// would serialise short calls). Parts are equal, so they finish together.
	cut := func(k int) int64 {
		c := r.items * int64(k) / int64(r.threads) / r.gran * r.gran
		if k == r.threads {
			c = r.items
		}
		return c
	}
	var wg sync.WaitGroup
	for k := 0; k < r.threads; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for i := 0; i < b.N; i++ {
				r.l.call(b, r.name, r.args[i%len(r.args)], cut(k), cut(k+1))
			}
		}(k)
	}
	wg.Wait()
}

func benchGemm(b *testing.B, s Spec, threads int) {
	l := getBenchLib(b)
	R, K, N, nw, wb := gemmDims(s)
	// Weights come from the arena. Decode rotates through as many distinct
	// copies as fit, so every call streams them from DRAM (the last-level
	// cache would otherwise hold a good part of one copy); prefill reuses one
	// (GEMMAC_COLD=1 rotates it too, as a model's prefill reads each
	// chunk's weights from memory).
	argv, keep := arenaArgs(R, K, N, nw, wb, R == 1 || os.Getenv("GEMMAC_COLD") != "")
	runKernelBench(b, l, s, argv, threads, wb*int64(nw), s.(interface{ FLOPs() int64 }).FLOPs())
	runtime.KeepAlive(keep)
}

// gemmDims are the shape of a Matmul or GeGLU spec: R rows of K to N
// outputs from nw weight matrices of wb bytes each.
func gemmDims(s Spec) (R, K, N, nw int, wb int64) {
	switch s := s.(type) {
	case Matmul:
		return s.R, s.K, s.N, 1, s.WeightBytes()
	case GeGLU:
		return s.R, s.K, s.F, 2, s.WeightBytes() / 2
	case QMatmul:
		return s.R, s.K, s.N, 1, s.WeightBytes()
	case QGeGLU:
		return s.R, s.K, s.F, 2, s.WeightBytes() / 2
	}
	panic(fmt.Sprintf("gemmDims: %T is not a matmul", s))
}

// arenaArgs are the kernel args (out, x, nw weight matrices of wb bytes,
// scalars) of R rows of K to N outputs, one list per weight copy: with
// rotate, as many distinct copies as the arena holds (a call through each
// in turn streams its weights from DRAM), else one. keep holds the buffers.
func arenaArgs(R, K, N, nw int, wb int64, rotate bool) (argv [][]uintptr, keep []any) {
	x := randF32(R*K, 1, 1)
	out := f32buf(R * N)
	sc := scalarsBuf(0, int64(R))
	a := getArena()
	copies := int64(1)
	if rotate {
		copies = max(1, int64(len(a)*2)/(wb*int64(nw)))
	}
	for c := int64(0); c < copies; c++ {
		args := []uintptr{addr(out), addr(x)}
		for m := 0; m < nw; m++ {
			args = append(args, addr(a)+uintptr((c*int64(nw)+int64(m))*wb))
		}
		argv = append(argv, append(args, addr(sc)))
	}
	return argv, []any{x, out, sc, a}
}

// runKernelBench times the kernel over argv (call i uses argv[i%len]) on
// threads, reporting bytes per call as MB/s and flops per call as GFLOP/s
// (none when flops is 0).
func runKernelBench(b *testing.B, l *lib, s Spec, argv [][]uintptr, threads int, bytes, flops int64) {
	b.SetBytes(bytes)
	b.ResetTimer()
	runner{l, s.Name(), argv, s.Items(), s.Granule(), threads}.run(b)
	b.StopTimer()
	if flops > 0 {
		b.ReportMetric(float64(flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	}
}

// benchAttention times the 2B's prefill attention (a global layer, f32
// cache) for a 128-token chunk after pos cached tokens: FLOPs are the
// q·k and p·v products, 4·D per query, head and key.
func benchAttention(b *testing.B, pos int) {
	l := getBenchLib(b)
	a := benchSpec.attention
	args := []uintptr{}
	var keep []any
	for i, n := range []int{a.T * a.HQ * a.D, a.T * a.HQ * a.D, a.T * a.HKV * a.D, a.T * a.HKV * a.D, a.CacheLen * a.HKV * a.D, a.CacheLen * a.HKV * a.D} {
		buf := randF32(n, uint64(20+i), 1)
		keep = append(keep, buf)
		args = append(args, addr(buf))
	}
	sc := scalarsBuf(int64(pos), int64(a.T))
	args = append(args, addr(sc))
	keys := int64(a.T*pos + a.T*(a.T+1)/2)
	runKernelBench(b, l, a, [][]uintptr{args}, 1, 0, 4*int64(a.D*a.HQ)*keys)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(sc)
}

// benchAttentionDecode times the 2B's decode attention (a global layer, f32
// cache, two threads) of the token at position pos, rotating through copies
// of the cache through the benchmark arena (its u16 pairs read as normal
// f32 values) as the model's 26 layers do, so keys and values come from
// memory: MB/s counts the keys and values read, comparable with
// BenchmarkProbeRead_2T.
//
// The key loop was bound by latency (llvm-mca: ~80 cycles a key, three
// quarters of them waiting on registers): every step put an exp and a
// multiply on the accumulators' chain, and 128 load addresses spilled.
// With those gone (raiseMax, row pointers, lanesums) it is ~1.7× faster in
// the 2B (bench --profile at 1536 tokens); prefetching keys ahead changed
// nothing.
func benchAttentionDecode(b *testing.B, pos int) {
	l := getBenchLib(b)
	a := benchSpec.attentionDecode
	rowF32 := a.HKV * a.D
	cacheBytes := uintptr(a.CacheLen * rowF32 * 4)
	arena := getArena()
	keep := []any{arena}
	buf := func(n int, seed uint64) uintptr {
		x := randF32(n, seed, 1)
		keep = append(keep, x)
		return addr(x)
	}
	out, q, k, v := buf(a.HQ*a.D, 1), buf(a.HQ*a.D, 2), buf(rowF32, 3), buf(rowF32, 4)
	sc := scalarsBuf(int64(pos), 1)
	var argv [][]uintptr
	for kc := addr(arena); kc+2*cacheBytes <= addr(arena)+arenaBytes; kc += 2 * cacheBytes {
		argv = append(argv, []uintptr{out, q, k, v, kc, kc + cacheBytes, addr(sc)})
	}
	runKernelBench(b, l, a, argv, 2, int64(2*(pos+1)*rowF32*4), 0)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(sc)
}

func BenchmarkAttentionDecodeLong(b *testing.B)  { benchAttentionDecode(b, 1920) }
func BenchmarkAttentionPrefill(b *testing.B)     { benchAttention(b, 0) }
func BenchmarkAttentionPrefillLong(b *testing.B) { benchAttention(b, 1920) }
func BenchmarkGEMVDecodeBF16(b *testing.B)       { benchGemm(b, benchSpec.gemvBF16, 1) }
func BenchmarkGEMVDecodeBF16_2T(b *testing.B)    { benchGemm(b, benchSpec.gemvBF16, 2) }
func BenchmarkGEMVDecodeF32(b *testing.B)        { benchGemm(b, benchSpec.gemvF32, 1) }
func BenchmarkGEMVDecodeF32_2T(b *testing.B)     { benchGemm(b, benchSpec.gemvF32, 2) }
func BenchmarkGeGLUDecodeBF16(b *testing.B)      { benchGemm(b, benchSpec.gegluBF16, 1) }
func BenchmarkGeGLUDecodeBF16_2T(b *testing.B) {
	benchGemm(b, benchSpec.gegluBF16, 2)
}
func BenchmarkGEMMPrefillBF16(b *testing.B)    { benchGemm(b, benchSpec.gemmBF16, 1) }
func BenchmarkGEMMPrefillBF16_2T(b *testing.B) { benchGemm(b, benchSpec.gemmBF16, 2) }
func BenchmarkGeGLUPrefillBF16(b *testing.B)   { benchGemm(b, benchSpec.gegluPrefill, 1) }
func BenchmarkGEMMPrefillF32(b *testing.B)     { benchGemm(b, benchSpec.gemmF32, 1) }
func BenchmarkGEMMPrefillF32_2T(b *testing.B)  { benchGemm(b, benchSpec.gemmF32, 2) }
func BenchmarkGeGLUPrefillF32(b *testing.B)    { benchGemm(b, benchSpec.gegluPrefillF32, 1) }
func BenchmarkDownPrefillF32(b *testing.B)     { benchGemm(b, benchSpec.downF32, 1) }
func BenchmarkDownPrefillBF16(b *testing.B)    { benchGemm(b, benchSpec.downBF16, 1) }

func benchRead(b *testing.B, threads int) {
	l := getBenchLib(b)
	s := benchSpec.read
	buf := getArena()
	out := f32buf(int(s.Items()) * 16)
	b.SetBytes(s.Bytes)
	b.ResetTimer()
	runner{l, s.Name(), [][]uintptr{{addr(buf), addr(out)}}, s.Items(), 1, threads}.run(b)
	runtime.KeepAlive(buf)
	runtime.KeepAlive(out)
}

func BenchmarkProbeRead(b *testing.B)    { benchRead(b, 1) }
func BenchmarkProbeRead_2T(b *testing.B) { benchRead(b, 2) }

func benchFMA(b *testing.B, threads int) {
	l := getBenchLib(b)
	s := benchSpec.fma
	items := int64(8)
	out := f32buf(int(items) * 16)
	b.ResetTimer()
	runner{l, s.Name(), [][]uintptr{{addr(out)}}, items, 1, threads}.run(b)
	b.StopTimer()
	flops := float64(s.FlopsPerItem(l.lanes) * items)
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	runtime.KeepAlive(out)
}

func BenchmarkProbeFMA(b *testing.B)    { benchFMA(b, 1) }
func BenchmarkProbeFMA_2T(b *testing.B) { benchFMA(b, 2) }

// decodeShapes are the bf16 decode kernels of Gemma-2 2B.
var decodeShapes = []struct {
	name string
	spec Spec
}{
	{"kv", Matmul{R: 1, K: 2304, N: 1024, WType: gir.BF16}},
	{"q", Matmul{R: 1, K: 2304, N: 2048, WType: gir.BF16}},
	{"o", Matmul{R: 1, K: 2048, N: 2304, WType: gir.BF16}},
	{"down", Matmul{R: 1, K: 9216, N: 2304, WType: gir.BF16}},
	{"geglu", GeGLU{R: 1, K: 2304, F: 9216, WType: gir.BF16}},
	{"lmhead4", Matmul{R: 1, K: 2304, N: 64000, WType: gir.BF16}}, // a quarter: the arena holds one copy
}

// BenchmarkDecode2B runs every 2B decode shape on 1 and 2 threads.
func BenchmarkDecode2B(b *testing.B) {
	for _, d := range decodeShapes {
		for _, t := range []int{1, 2} {
			b.Run(d.name+"_"+strconv.Itoa(t)+"T", func(b *testing.B) { benchGemm(b, d.spec, t) })
		}
	}
}
