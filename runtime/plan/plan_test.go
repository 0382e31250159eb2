package plan

import (
	"strings"
	"testing"

	"github.com/gemmac/gemmac/frontend"
)

func validArtifact(t *testing.T) *Artifact {
	t.Helper()
	cfg, err := frontend.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	return &Artifact{
		Version: Version, Config: cfg, Context: 16, Kernels: []string{"k0"}, KVBytes: 1024,
		Weights: []Weight{{Name: "w", DType: "f32", Shape: []int{4}}},
		Programs: map[string]*Program{"decode": {
			Name: "decode", Tokens: 1, ArenaBytes: 4096,
			Steps: []Step{{Kernel: 0, Items: 4, Granule: 1, Args: []Arg{
				{Kind: ArgArena, Offset: 64}, {Kind: ArgWeight, Index: 0}, {Kind: ArgKV, Offset: 512}, {Kind: ArgScalars},
			}}},
			Output: Buffer{Offset: 0, Rows: 1, Cols: 512},
		}},
	}
}

func TestRoundTrip(t *testing.T) {
	a := validArtifact(t)
	data, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if b.Programs["decode"].Steps[0].Args[2].Offset != 512 || b.Config.HiddenSize != 64 {
		t.Errorf("round trip lost data: %+v", b.Programs["decode"].Steps[0])
	}
}

// TestCheckRejectsWildOffsets: a damaged plan must fail in Go, never hand a
// kernel a pointer outside its buffers.
func TestCheckRejectsWildOffsets(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(a *Artifact)
		want   string
	}{
		{"kernel index", func(a *Artifact) { a.Programs["decode"].Steps[0].Kernel = 3 }, "kernel 3 of 1"},
		{"arena offset", func(a *Artifact) { a.Programs["decode"].Steps[0].Args[0].Offset = 4096 }, "arena offset 4096 outside 4096 bytes"},
		{"kv offset", func(a *Artifact) { a.Programs["decode"].Steps[0].Args[2].Offset = -8 }, "kv offset -8"},
		{"weight index", func(a *Artifact) { a.Programs["decode"].Steps[0].Args[1].Index = 1 }, "weight 1 of 1"},
		{"arg kind", func(a *Artifact) { a.Programs["decode"].Steps[0].Args[3].Kind = "heap" }, `unknown argument kind "heap"`},
		{"granule", func(a *Artifact) { a.Programs["decode"].Steps[0].Granule = 0 }, "granules of 0"},
		{"output", func(a *Artifact) { a.Programs["decode"].Output.Cols = 2048 }, "outside the arena"},
		{"config", func(a *Artifact) { a.Config = nil }, "no config"},
		{"panels of bf16", func(a *Artifact) { a.Weights[0].DType, a.Weights[0].Panel = "bf16", 64 }, "cannot be laid out in panels of 64"},
		{"panels of a vector", func(a *Artifact) { a.Weights[0].Shape, a.Weights[0].Panel = []int{8}, 64 }, "cannot be laid out in panels"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := validArtifact(t)
			c.break_(a)
			err := a.Check()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Check = %v, want it to mention %q", err, c.want)
			}
		})
	}
	data, _ := validArtifact(t).Marshal()
	bad := strings.Replace(string(data), `"version":1`, `"version":99`, 1)
	if _, err := Unmarshal([]byte(bad)); err == nil || !strings.Contains(err.Error(), "rebuild") {
		t.Errorf("a plan of another format version: %v", err)
	}
}
