#!/usr/bin/env bash
# Issue-5 decode targets measured as interleaved rounds: this VM's bandwidth
# moves 30-50% within minutes, so each round runs every contender back to back
# and the ratios are taken within the round; the script prints every round and
# the median of each ratio over the rounds.
#   bf16 1 thread  / memory roofline (585.1 MB per token, `membw --threads 1` of the round)
#   bf16 2 threads (f32 and bf16 activations) / llama.cpp F16 2 threads
#   nvfp4 2 threads (f32, bf16 and int8 activations) / llama.cpp Q8_0 2 threads
#   nvfp4 2 threads / bf16 2 threads (same activations; and nvfp4 bf16 / bf16 f32)
#   bench/decode_ab.sh [WORK_DIR] [ROUNDS]     (default /tmp 6; run bench/quant_bench.sh first:
#                                              it makes the checkpoints and GGUFs)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/moerack
peer=$here/../shared/peer/peer.sh
w=${1:-/tmp}
rounds=${2:-6}
base=$w/bench-moe
for f in "$base/model.safetensors" "$base-nvfp4" "$w/bench-moe-f16.gguf" "$w/bench-moe-q8_0.gguf"; do
  [ -e "$f" ] || { echo "missing $f: run bench/quant_bench.sh $w first" >&2; exit 1; }
done
bytes=$("$bin" info --model "$base" | tail -1 | sed -E 's/.*, ([0-9.]+) MB read per decoded token.*/\1/')
prompt=$(python3 -c "print(','.join(str((i*7919)%31000+100) for i in range(128)))")
decode() {  # model threads act -> tok/s
  "$bin" generate --model "$1" --tokens "$prompt" --max-tokens 65 --ignore-eos --output-tokens \
    --threads "$2" --act-dtype "$3" 2>&1 >/dev/null | tail -1 | sed -E 's/.*decode: [0-9]+ tok, ([0-9.]+) tok\/s.*/\1/'
}
llama() {  # gguf -> decode tok/s at 2 threads
  bash "$peer" bench "$1" 2 128 64 3 2>/dev/null | tail -1 | sed -E 's/.* decode_tok_s=([0-9.]+).*/\1/'
}
out=$(mktemp)
for r in $(seq "$rounds"); do
  bw1=$("$bin" membw --threads 1 | sed -E 's/.*: ([0-9.]+) GB\/s.*/\1/')
  b1=$(decode "$base" 1 f32); b1b=$(decode "$base" 1 bf16)
  b2=$(decode "$base" 2 f32); b2b=$(decode "$base" 2 bf16); f16=$(llama "$w/bench-moe-f16.gguf")
  n2=$(decode "$base-nvfp4" 2 f32); n2b=$(decode "$base-nvfp4" 2 bf16); n2i=$(decode "$base-nvfp4" 2 int8)
  q8=$(llama "$w/bench-moe-q8_0.gguf")
  echo "$bw1 $b1 $b1b $b2 $b2b $f16 $n2 $n2b $n2i $q8" >> "$out"
  echo "round $r: membw-1t $bw1 GB/s; bf16 1t $b1 (bf16-act $b1b); bf16 2t $b2 (bf16-act $b2b), llama F16 $f16;" \
       "nvfp4 2t $n2 (bf16-act $n2b, int8-act $n2i), llama Q8_0 $q8 tok/s"
done
python3 - "$out" "$bytes" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
mb = float(sys.argv[2])
def med(name, f):
    v = [f(*r) for r in rows]
    print(f"{name}: median {statistics.median(v):.2f} (rounds: {', '.join(f'{x:.2f}' for x in v)})")
def r(f):
    return lambda bw, b1, b1b, b2, b2b, f16, n2, n2b, n2i, q8: f(**locals())
med("bf16 1t f32-act / memory roofline", r(lambda **v: v["b1"] * mb / 1000 / v["bw"]))
med("bf16 1t bf16-act / memory roofline", r(lambda **v: v["b1b"] * mb / 1000 / v["bw"]))
med("bf16 2t f32-act / llama.cpp F16", r(lambda **v: v["b2"] / v["f16"]))
med("bf16 2t bf16-act / llama.cpp F16", r(lambda **v: v["b2b"] / v["f16"]))
med("nvfp4 2t f32-act / llama.cpp Q8_0", r(lambda **v: v["n2"] / v["q8"]))
med("nvfp4 2t bf16-act / llama.cpp Q8_0", r(lambda **v: v["n2b"] / v["q8"]))
med("nvfp4 2t int8-act / llama.cpp Q8_0", r(lambda **v: v["n2i"] / v["q8"]))
med("nvfp4 2t f32-act / bf16 2t f32-act", r(lambda **v: v["n2"] / v["b2"]))
med("nvfp4 2t bf16-act / bf16 2t bf16-act", r(lambda **v: v["n2b"] / v["b2b"]))
med("nvfp4 2t bf16-act / bf16 2t f32-act", r(lambda **v: v["n2b"] / v["b2"]))
med("nvfp4 2t int8-act / bf16 2t f32-act", r(lambda **v: v["n2i"] / v["b2"]))
med("nvfp4 2t int8-act / bf16 2t bf16-act", r(lambda **v: v["n2i"] / v["b2b"]))
PY
rm -f "$out"
