#!/usr/bin/env bash
# The demo: a Gemma-2 with random weights, the real Gemma tokenizer and a chat
# template with a system prompt, run end to end on the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
go build -o bin/gemmac ./cmd/gemmac

model=demo/random-tiny
if [ ! -f "$model/model.safetensors" ]; then
	bin/gemmac gen-random --preset tiny --dtype f32 --seed 1 \
		--tokenizer examples/demo/gemma3-tokenizer.json.gz --chat-template systemgemma2 -o "$model"
fi

cat <<'NOTE'
------------------------------------------------------------------------------
The weights of this model are RANDOM: the reply below is noise. What is real is
everything around it: checkpoint reading, the Gemma tokenizer (262k pieces),
the SystemGemma2 chat template with a system prompt, prefill, the static
hybrid KV cache, sampling and streaming. Point --model at a real Gemma-2
checkpoint directory for real text.
------------------------------------------------------------------------------
NOTE
set -x
bin/gemmac run --model "$model" --interp \
	--system "You are a pirate. Answer like one." \
	--prompt "Where is the treasure buried?" \
	--temperature 0.8 --top-k 40 --seed 1 --max-tokens 24
