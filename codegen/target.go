package codegen

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/cpu"
)

// Target describes the machine the kernels are generated for: what opt/llc
// are told (triple, cpu, features) and the vector width the kernel bodies use.
type Target struct {
	Name     string // "x86-64-v4", "x86-64-v3", "x86-64", "aarch64"
	Triple   string // LLVM target triple
	CPU      string // -mcpu
	Features string // -mattr, comma separated ("+avx512f,..."); may be empty
	Lanes    int    // f32 lanes of one vector register: 16 AVX-512, 8 AVX2, 4 SSE/NEON
	// Tune names the microarchitecture some tiles were measured on, where
	// they differ from the rest (gemmTiling): TuneZen for AMD's, "" otherwise.
	Tune string
}

// TuneZen is Target.Tune for AMD Zen cores.
const TuneZen = "zen"

// VectorBits is the width of one f32 vector in bits.
func (t Target) VectorBits() int { return t.Lanes * 32 }

func (t Target) String() string {
	if t.Tune != "" {
		return t.Name + " tuned for " + t.Tune
	}
	return t.Name
}

func osTriple(arch string) string {
	switch runtime.GOOS {
	case "darwin":
		if arch == "aarch64" {
			return "arm64-apple-macosx11.0.0"
		}
		return arch + "-apple-macosx10.15.0"
	default:
		return arch + "-unknown-linux-gnu"
	}
}

// TargetByName returns one of the known targets: "x86-64-v4" (AVX-512),
// "x86-64-v3" (AVX2+FMA+F16C), "x86-64" (SSE2, 4 lanes) or "aarch64" (NEON).
// "host" is HostTarget().
func TargetByName(name string) (Target, error) {
	switch name {
	case "host", "":
		return HostTarget(), nil
	case "x86-64-v4", "avx512":
		return Target{Name: "x86-64-v4", Triple: osTriple("x86_64"), CPU: "x86-64-v4",
			Features: "+avx512f,+avx512bw,+avx512vl,+avx512dq,+fma,+f16c", Lanes: 16}, nil
	case "x86-64-v3", "avx2":
		return Target{Name: "x86-64-v3", Triple: osTriple("x86_64"), CPU: "x86-64-v3",
			Features: "+avx2,+fma,+f16c", Lanes: 8}, nil
	case "x86-64", "sse2":
		return Target{Name: "x86-64", Triple: osTriple("x86_64"), CPU: "x86-64", Lanes: 4}, nil
	case "aarch64", "arm64", "neon":
		return Target{Name: "aarch64", Triple: osTriple("aarch64"), CPU: "generic",
			Features: "+neon,+fp-armv8", Lanes: 4}, nil
	}
	return Target{}, fmt.Errorf("unknown target %q (want host, x86-64-v4, x86-64-v3, x86-64 or aarch64)", name)
}

// HostTarget picks the best known target for the machine this runs on.
func HostTarget() Target {
	var name string
	switch runtime.GOARCH {
	case "amd64":
		x := cpu.X86
		switch {
		case x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasAVX512DQ && x.HasFMA && x.HasF16C:
			name = "x86-64-v4"
		case x.HasAVX2 && x.HasFMA && x.HasF16C:
			name = "x86-64-v3"
		default:
			name = "x86-64"
		}
	case "arm64":
		name = "aarch64"
	default:
		name = "x86-64"
	}
	t, _ := TargetByName(name)
	if name == "x86-64-v4" && cpu.X86.HasAVX512BF16 {
		t.Features += ",+avx512bf16"
	}
	if name == "x86-64-v4" && cpu.X86.HasAVX512VNNI {
		t.Features += ",+avx512vnni"
	}
	if t.isX86() && hostVendor() == "AuthenticAMD" {
		t.Tune = TuneZen
	}
	return t
}

// hostVendor is the CPU's vendor string as Linux reports it
// ("GenuineIntel", "AuthenticAMD"), or "" where it cannot be read. Read
// once: HostTarget is called again and again.
var hostVendor = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	return CPUInfoField(string(b), "vendor_id")
})

// CPUInfoField is the first value of key in the text of /proc/cpuinfo,
// its runs of spaces made single, or "".
func CPUInfoField(cpuinfo, key string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
			if v = strings.Join(strings.Fields(v), " "); v != "" {
				return v
			}
		}
	}
	return ""
}

func (t Target) isX86() bool { return strings.HasPrefix(t.Triple, "x86_64") }

// hasVNNI reports whether the target has byte dot products (vpdpbusd) at
// 256 bits: AVX-512 VNNI with VL.
func (t Target) hasVNNI() bool {
	return t.isX86() && strings.Contains(t.Features, "+avx512vnni") && strings.Contains(t.Features, "+avx512vl")
}

// nativeF16 reports whether fpext from half is a single instruction (F16C on
// x86, always on AArch64); otherwise kernels widen f16 with integer ops
// instead of calling a runtime library helper.
func (t Target) nativeF16() bool {
	return !t.isX86() || strings.Contains(t.Features, "+f16c")
}
