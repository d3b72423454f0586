#!/usr/bin/env bash
# Issue-5 figures for BENCHMARKS.md: the shared benchmark model in bf16, fp8
# (DeepSeek 128x128 blocks), nvfp4 and mxfp4 (both with --quantize-lm-head, as
# llama.cpp's Q8_0 quantizes its output matrix too), decode and prefill at 1
# and 2 threads with f32 and bf16 activations (and int8 for the FP4 formats),
# batched decode at --num-seqs
# 1/8/32, the kernels' compute rooflines and FMA peak, and llama.cpp F16 and
# Q8_0 on the same weights in the same run.
#   bench/quant_bench.sh [WORK_DIR]      (default /tmp; ~6 GB of models)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/moerack
peer=$here/../shared/peer/peer.sh
w=${1:-/tmp}
base=$w/bench-moe
[ -f "$base/model.safetensors" ] ||
  "$bin" random-model --config "$here/../shared/bench/bench-moe.json" --out "$base" --seed 1
[ -d "$base-nvfp4" ] || "$bin" quantize --model "$base" --format nvfp4 --quantize-lm-head --out "$base-nvfp4" --threads 2
[ -d "$base-mxfp4" ] || "$bin" quantize --model "$base" --format mxfp4 --quantize-lm-head --out "$base-mxfp4"
[ -d "$base-fp8" ] || "$bin" quantize --model "$base" --format fp8 --out "$base-fp8"
[ -f "$w/bench-moe-f16.gguf" ] || bash "$peer" convert "$base" "$w/bench-moe-f16.gguf" f16
[ -f "$w/bench-moe-q8_0.gguf" ] || bash "$peer" convert "$base" "$w/bench-moe-q8_0.gguf" q8_0

echo "## machine"
for t in 1 2; do "$bin" membw --threads $t; done
"$here/build/moerack_bench" --benchmark_filter='PeakFma|MatMulFormat/.*/m:1/n:128/' \
  --benchmark_min_time=0.3 2>&1 | grep -E '^BM_'
for m in "" -fp8 -nvfp4 -mxfp4; do
  echo "$base$m: $("$bin" info --model "$base$m" | tail -1)"
done

prompt=$(python3 -c "print(','.join(str((i*7919)%31000+100) for i in range(128)))")
run() {  # model act threads num_seqs
  # Batches sample at temperature 1: greedy copies of one prompt would decode
  # the same tokens and route them all to the same experts.
  local temp=0; [ "$4" -gt 1 ] && temp=1
  "$bin" generate --model "$1" --tokens "$prompt" --max-tokens 65 --ignore-eos --output-tokens \
    --act-dtype "$2" --threads "$3" --num-seqs "$4" --temperature $temp 2>&1 >/dev/null | tail -1
}
echo "## decode and prefill, one sequence"
for t in 1 2; do
  for m in "" -fp8 -nvfp4 -mxfp4; do
    acts="f32 bf16"; case $m in -nvfp4|-mxfp4) acts="f32 bf16 int8";; esac
    for a in $acts; do echo "moerack ${m:-bf16} act=$a threads=$t: $(run "$base$m" $a $t 1)"; done
  done
  for g in f16 q8_0; do
    echo "llama.cpp $g threads=$t: $(bash "$peer" bench "$w/bench-moe-$g.gguf" $t 128 64 3 2>/dev/null | tail -1)"
  done
done
echo "## batched decode, 2 threads"
for m in "" -nvfp4; do
  acts="f32 bf16"; [ "$m" = -nvfp4 ] && acts="f32 bf16 int8"
  for a in $acts; do
    for n in 1 8 32; do echo "moerack ${m:-bf16} act=$a num-seqs=$n: $(run "$base$m" $a 2 $n)"; done
  done
done
