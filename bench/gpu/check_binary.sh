#!/usr/bin/env bash
# Checks binaries built by `gemmac build --target cuda` on a GPU machine:
# logits of the GPU path against the same binary's --interp path (tiny,
# f32: 1e-4), then gocoder generating Go on the GPU.
set -u
cd "$(dirname "$0")/../.."
TOK=2,14,51,88,125,162,199,236,273,310,347,384,421,458,495,23,60,97,134,171
for pre in 20 7; do
  bin/gpu/tiny-cuda logits --model bin/gpu/models/tiny --tokens $TOK --prefill $pre > /tmp/gpu.json || exit 1
  bin/gpu/tiny-cuda logits --model bin/gpu/models/tiny --tokens $TOK --interp > /tmp/cpu.json || exit 1
  python3 - <<'PY' || exit 1
import json
g = json.load(open("/tmp/gpu.json"))["logits"]; c = json.load(open("/tmp/cpu.json"))["logits"]
d = max(abs(a - b) for ra, rb in zip(g, c) for a, b in zip(ra, rb))
print(f"tiny-cuda logits vs interpreter: {len(g)} rows, max |diff| {d:.3g}", "PASS" if d < 1e-4 else "FAIL")
raise SystemExit(0 if d < 1e-4 else 1)
PY
done
p=$'// Max returns the larger of x or y.\nfunc Max(x, y int) int {\n'
bin/gpu/gocoder-cuda run --model examples/gocoder --raw --prompt "$p" --max-tokens 48
