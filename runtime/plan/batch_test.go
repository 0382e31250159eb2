package plan

import (
	"strings"
	"testing"
)

// batchArtifact is validArtifact with a batched decode step of 4 rows.
func batchArtifact(t *testing.T) *Artifact {
	a := validArtifact(t)
	a.Programs[BatchProgram] = &Program{
		Name: BatchProgram, Tokens: 4, Batch: 4, ArenaBytes: 8192,
		Steps: []Step{{Kernel: 0, Items: 4, Granule: 1, Args: []Arg{
			{Kind: ArgArena, Offset: 64}, {Kind: ArgKVRows, Offset: 512}, {Kind: ArgScalars},
		}}},
		Output: Buffer{Offset: 0, Rows: 4, Cols: 512},
	}
	return a
}

// TestCheckBatchPrograms: a batched step reaches caches only through
// per-row tables, and an ordinary program never does; damaged batch plans
// fail in Go.
func TestCheckBatchPrograms(t *testing.T) {
	if err := batchArtifact(t).Check(); err != nil {
		t.Fatalf("valid batch plan: %v", err)
	}
	data, err := batchArtifact(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Unmarshal(data)
	if err != nil || b.Programs[BatchProgram].Batch != 4 || b.Programs["decode"].Batch != 0 {
		t.Fatalf("round trip: %v %+v", err, b)
	}
	cases := []struct {
		name   string
		break_ func(a *Artifact)
		want   string
	}{
		{"one cache in a batch", func(a *Artifact) { a.Programs[BatchProgram].Steps[0].Args[1].Kind = ArgKV }, "kv argument in a program with a batch of 4"},
		{"row tables outside a batch", func(a *Artifact) { a.Programs["decode"].Steps[0].Args[2].Kind = ArgKVRows }, "kv_rows argument in a program with a batch of 0"},
		{"row table offset", func(a *Artifact) { a.Programs[BatchProgram].Steps[0].Args[1].Offset = 1024 }, "kv offset 1024 outside 1024 bytes"},
		{"batch and tokens", func(a *Artifact) { a.Programs[BatchProgram].Tokens = 8 }, "a batch of 4 rows with 8 tokens"},
		{"negative batch", func(a *Artifact) { a.Programs[BatchProgram].Batch = -1 }, "a batch of -1 rows"},
	}
	for _, c := range cases {
		a := batchArtifact(t)
		c.break_(a)
		if err := a.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
