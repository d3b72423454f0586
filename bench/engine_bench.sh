#!/usr/bin/env bash
# End-to-end figures for BENCHMARKS.md on the shared benchmark model
# (../shared/bench/bench-moe.json): memory bandwidth, then prefill/decode tok/s
# of a 128-token prompt + 64 generated tokens at 1 and 2 threads, --num-seqs 1
# and 8, and (if a GGUF is given) llama.cpp on the same weights in the same run.
#   bench/engine_bench.sh [MODEL_DIR] [PEER_GGUF]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/moerack
model=${1:-/tmp/bench-moe}
gguf=${2:-}
[ -f "$model/model.safetensors" ] ||
  "$bin" random-model --config "$here/../shared/bench/bench-moe.json" --out "$model" --seed 1
prompt=$(python3 -c "print(','.join(str((i*7919)%31000+100) for i in range(128)))")
for t in 1 2; do "$bin" membw --threads $t; done
for t in 1 2; do
  for n in 1 8; do
    # Batches sample at temperature 1 (greedy copies would route alike).
    temp=0; [ $n -gt 1 ] && temp=1
    line=$("$bin" generate --model "$model" --tokens "$prompt" --max-tokens 65 --ignore-eos \
             --output-tokens --threads $t --num-seqs $n --temperature $temp 2>&1 >/dev/null | tail -1)
    echo "moerack threads=$t num_seqs=$n: $line"
  done
  if [ -n "$gguf" ]; then
    echo "llama.cpp threads=$t: $(bash "$here/../shared/peer/peer.sh" bench "$gguf" $t 128 64 3 | tail -1)"
  fi
done
