package cpu

import (
	"fmt"
	"strings"

	"golang.org/x/sys/cpu"
)

// hostFeatures are the -mattr features gemmac's targets use, and whether
// this CPU has them.
var hostFeatures = map[string]bool{
	"avx2":       cpu.X86.HasAVX2,
	"fma":        cpu.X86.HasFMA,
	"f16c":       cpu.X86.HasF16C,
	"avx512f":    cpu.X86.HasAVX512F,
	"avx512bw":   cpu.X86.HasAVX512BW,
	"avx512vl":   cpu.X86.HasAVX512VL,
	"avx512dq":   cpu.X86.HasAVX512DQ,
	"avx512bf16": cpu.X86.HasAVX512BF16,
	"avx512vnni": cpu.X86.HasAVX512VNNI,
	"neon":       cpu.ARM64.HasASIMD,
	"fp-armv8":   cpu.ARM64.HasFP,
}

// checkFeatures refuses to run kernels compiled for CPU features this machine
// lacks (they would die on an illegal instruction), naming them.
func checkFeatures(target, features string) error {
	var missing []string
	for _, f := range strings.Split(features, ",") {
		name, ok := strings.CutPrefix(strings.TrimSpace(f), "+")
		if !ok {
			continue
		}
		if has, known := hostFeatures[name]; known && !has {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the kernels were compiled for %s with %s, which this CPU lacks: rebuild on this machine (--target cpu) or for a baseline (--target cpu:x86-64-v3)", target, strings.Join(missing, ", "))
	}
	return nil
}
