package cuda

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/model"
)

func TestNoDriverIsAClearError(t *testing.T) {
	_, err := loadLibrary("libcuda-gemmac-missing.so.1")
	if err == nil {
		t.Fatal("loading a missing library succeeded")
	}
	if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "no CUDA driver found (libcuda-gemmac-missing.so.1): ") {
		t.Fatalf("error %q does not say clearly that there is no driver", err)
	}
}

// device opens GPU 0 or skips the test.
func device(t *testing.T) *Device {
	t.Helper()
	dv, err := Open(0)
	if errors.Is(err, ErrNoDriver) {
		t.Skip("no CUDA driver: ", err)
	}
	if err != nil {
		t.Skip("no CUDA device: ", err)
	}
	return dv
}

func TestTinyMatchesInterpreter(t *testing.T) {
	dv := device(t)
	dv.Close()
	ckpt, err := frontend.Open(filepath.Join("../../../shared/testdata/models", "tiny-hot"))
	if err != nil {
		t.Skip(err)
	}
	defer ckpt.Close()
	const context = 64
	c, err := Compile(ckpt, context, Options{Chunk: 16, PTXCache: "../../bin/gpu/ptx-cache"})
	if err != nil {
		t.Skip("no PTX: ", err)
	}
	e, err := New(c, ckpt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ref, err := model.NewInterpEngine(ckpt, context, 0)
	if err != nil {
		t.Fatal(err)
	}
	toks := []int32{2, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190}
	gs, _ := e.NewState()
	rs, _ := ref.NewState()
	got, err := gs.Forward(toks, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	want, err := rs.Forward(toks, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	var worst, scale float64
	for i := range want {
		d := float64(got[i] - want[i])
		worst = max(worst, max(d, -d))
		scale = max(scale, float64(max(want[i], -want[i])))
	}
	if worst/scale > 1e-4 {
		t.Fatalf("relative error %.3g", worst/scale)
	}
}
