package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/gemmac/gemmac/codegen/ptx"
	"github.com/gemmac/gemmac/runtime/sample"
)

// GPUSettings turns sampling options into the sampler's settings buffer,
// refusing what the GPU sampler cannot do.
func GPUSettings(o sample.Options) (ptx.SampleSettings, error) {
	if err := o.Validate(); err != nil {
		return ptx.SampleSettings{}, err
	}
	if o.RepetitionPenalty != 0 && o.RepetitionPenalty != 1 {
		return ptx.SampleSettings{}, fmt.Errorf("cuda: the GPU sampler has no repetition penalty (it would need the token history on the device); sample on the host with runtime/sample instead")
	}
	s := ptx.SampleSettings{Temperature: o.Temperature, TopK: int32(min(o.TopK, math.MaxInt32)), TopP: o.TopP, MinP: o.MinP, Seed: o.Seed}
	if s.TopP == 0 {
		s.TopP = 1 // runtime/sample: 0 or 1 turns top-p off
	}
	return s, nil
}

// writeSettings copies the sampler's settings into the state's arena.
func (s *State) writeSettings(set ptx.SampleSettings) error {
	off, err := s.e.c.Sample.SettingsOffset()
	if err != nil {
		return err
	}
	return s.e.copyIn(s.arena+uintptr(off), set.Bytes())
}

// Sample generates n tokens after token at position pos with o, entirely on
// the GPU, as Greedy does: each step runs the decode program and the
// sampler kernel (temperature, top-k, top-p, min-p; codegen/ptx.Sample),
// which draws with a random number computed on the device from o.Seed and
// the position, writes the next input token and advances the position, so
// only token ids cross to the host. The same seed, position and logits
// give the same token; the stream differs from runtime/sample's (another
// generator), the distribution is the same. A repetition penalty is
// refused: it needs the history, which stays on the host.
func (s *State) Sample(token int32, pos, n int, o sample.Options) ([]int32, error) {
	set, err := GPUSettings(o)
	if err != nil {
		return nil, err
	}
	return s.generate(token, pos, n, drawSampler, &set)
}

// SampleLogits runs only the sampler on the given logits (for checks): it
// copies them where the decode program leaves its logits, sets the
// position to pos, and draws count tokens, one launch each (the position,
// hence the random number, advances with every draw). The state's logits
// and call buffer are overwritten; its KV cache is not touched.
func (s *State) SampleLogits(logits []float32, o sample.Options, pos, count int) ([]int32, error) {
	set, err := GPUSettings(o)
	if err != nil {
		return nil, err
	}
	p := s.e.c.Artifact.Programs["decode"]
	if len(logits) != p.Output.Cols {
		return nil, fmt.Errorf("%d logits for a vocabulary of %d", len(logits), p.Output.Cols)
	}
	release, err := s.e.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.writeSettings(set); err != nil {
		return nil, err
	}
	if err := s.setInput(p, []int32{0}, min(pos, s.e.c.Artifact.Context-1)); err != nil {
		return nil, err
	}
	// setInput bounds pos by the context; the sampler does not care.
	pos64 := []int64{int64(pos)}
	if err := s.e.copyIn(s.io, unsafe.Slice((*byte)(unsafe.Pointer(&pos64[0])), 8)); err != nil {
		return nil, err
	}
	if err := s.e.copyIn(s.arena+uintptr(p.Output.Offset), unsafe.Slice((*byte)(unsafe.Pointer(&logits[0])), 4*len(logits))); err != nil {
		return nil, err
	}
	out := make([]int32, count)
	for i := range out {
		if out[i], err = s.nextToken(func() error { return s.launchSampler(drawSampler) }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TimeSampler launches the sampler reps times back to back on the logits
// already in place (SampleLogits leaves them) with the settings in place,
// and returns the GPU time per launch in milliseconds (CUDA events).
func (s *State) TimeSampler(reps int) (float64, error) {
	if reps <= 0 {
		return 0, fmt.Errorf("reps must be positive")
	}
	release, err := s.e.acquire()
	if err != nil {
		return 0, err
	}
	defer release()
	if err := s.launchSampler(drawSampler); err != nil { // warm-up
		return 0, err
	}
	secs, err := s.e.dev.timeReps(s.e.stream, reps, func() error { return s.launchSampler(drawSampler) })
	return secs * 1e3, err
}
