#!/usr/bin/env bash
# The device check for the CUDA target: one run on an H100/H200, < 8 minutes.
#
#   bash bench/gpu/run.sh            (from the repository root)
#
# Prepared on a machine with Go and LLVM 14 (no GPU needed):
#   go run ./bench/gpu --prepare     # PTX of every model -> bin/gpu/ptx-cache,
#                                    # test models -> bin/gpu/models
#   CGO_ENABLED=0 go build -o bin/gpu/gemmac-gpu-bench ./bench/gpu
# and carried with the repository: bin/gpu (about 26 MB).
#
# Results go to $OUT (or /tmp/gemmac-gpu-out): gemmac.json, hf.json, logs.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gemmac-gpu-out}
mkdir -p "$OUT"
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.mem --format=csv 2>/dev/null || true

BIN=bin/gpu/gemmac-gpu-bench
if [ ! -x "$BIN" ]; then
  if command -v go >/dev/null; then
    echo "building $BIN"
    CGO_ENABLED=0 go build -o /tmp/gemmac-gpu-bench ./bench/gpu && BIN=/tmp/gemmac-gpu-bench
  else
    echo "no prebuilt $BIN and no Go toolchain" >&2; exit 2
  fi
fi

MODEL_DIR=${MODEL_DIR:-/tmp/gemmac-2b-bf16}
echo "== gemmac: test models vs interpreter, then 2B bf16 bench [t=$(elapsed)s]"
timeout 300 "$BIN" --ptx-cache bin/gpu/ptx-cache --model-dir "$MODEL_DIR" --json "$OUT/gemmac.json" "$@" 2>&1 | tee "$OUT/gemmac.log"
RC=${PIPESTATUS[0]}
echo "gemmac exit $RC [t=$(elapsed)s]"

if [ -f "$MODEL_DIR/model.safetensors" ] && python3 -c 'import torch, transformers' 2>/dev/null; then
  LEFT=$(( 450 - $(elapsed) ))
  if [ "$LEFT" -gt 60 ]; then
    echo "== transformers baseline (budget ${LEFT}s) [t=$(elapsed)s]"
    PYTHONUNBUFFERED=1 timeout "$LEFT" python3 bench/gpu/hf_bench.py "$MODEL_DIR" --json "$OUT/hf.json" --budget "$LEFT" 2>&1 | tee "$OUT/hf.log"
  else
    echo "skipping transformers: ${LEFT}s left"
  fi
else
  echo "no python3 with torch+transformers (or no checkpoint): skipping the transformers baseline"
fi

"$BIN" combine "$OUT/gemmac.json" "$OUT/hf.json" 2>/dev/null
echo "done [t=$(elapsed)s]"
exit $RC
