#!/usr/bin/env bash
# The demo: gocoder, a small Gemma-2 trained on Go source, compiled ahead of
# time for this CPU, completing a Go function as it streams; then the
# compiled binary and the interpreter side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
go build -o bin/gemmac ./cmd/gemmac

model=examples/gocoder
echo "== gemmac build: gocoder (6 layers, 5.8M parameters, trained on the Go standard library) for this CPU"
bin/gemmac build --model "$model" --target cpu --max-seq 512 -o bin/gocoder

prompt=$'// Close closes the file, rendering it unusable for I/O.\nfunc (f *File) Close() error {\n'
echo
echo "== bin/gocoder run: greedy completion of"
printf '%s' "$prompt"
echo "----"
bin/gocoder run --model "$model" --raw --prompt "$prompt" --max-tokens 64
echo
echo "== the same prompt on the pure-Go interpreter (the reference and baseline)"
bin/gemmac run --model "$model" --interp --max-seq 512 --raw --prompt "$prompt" --max-tokens 64 >/dev/null
echo
echo "== speed: 128-token prompt, 128 generated tokens"
bin/gocoder bench --model "$model" --prompt-tokens 128 --gen-tokens 128 --compare
