#!/usr/bin/env bash
# Issue-7 figures for BENCHMARKS.md:
#  1. the `cpu` catalog entry against moerack's own measured decode on the
#     shared benchmark model (bf16 weights, one sequence, 2 threads, and at
#     --num-seqs 8 and 32): simulated / measured, target within 25%; also with the
#     matmul's stream and GEMM rates measured in this run substituted for the catalog's (decode
#     phase: the KV of the 128-token prompt present, as `generate` reports decode;
#     sampled at temperature 1 so the copies of the prompt decode different
#     tokens: greedy copies would route every step's tokens to the same experts);
#  2. the speed of a full sweep: DeepSeek-R1 on GB200 NVL72 (nvfp4) and HGX
#     H200 (fp8), `moerack sim --compare`, wall time.
#   bench/sim_bench.sh [WORK_DIR]      (default /tmp)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/moerack
w=${1:-/tmp}
base=$w/bench-moe
cfg=$here/../shared/bench/bench-moe.json
[ -f "$base/model.safetensors" ] || "$bin" random-model --config "$cfg" --out "$base" --seed 1

echo "## cpu calibration"
# The catalog holds rates moerack's kernels achieve ("rates": "measured"), so
# this run's substitutes are the bf16 matmul's own rates: its stream from memory
# at m=1 (weights on huge pages) and its GEMM at m=128, both at 2 threads.
# `membw` is printed beside them: on some hosts a plain sum streams much faster
# than the matmul's decode loop does.
membw=$("$bin" membw --threads 2 | sed -E 's/.*: ([0-9.]+) GB\/s.*/\1/')
kb=$("$here/build/moerack_bench" \
  --benchmark_filter='BM_MatMulFormat/fmt:0/m:(1/n:65536|128/n:4096)/k:2048/threads:2/act:0' \
  --benchmark_min_time=0.5 2>&1 | grep -E '^BM_')
bw=$(echo "$kb" | grep '/m:1/' | sed -E 's/.*bytes_per_second=([0-9.]+)G.*/\1/')
gemm=$(echo "$kb" | grep '/m:128/' | sed -E 's/.*GFLOPS=([0-9.]+).*/\1/')
python3 - "$here/hardware/cpu.json" "$w/cpu-now.json" "$bw" "$gemm" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); j["name"] = "cpu-now"
j["hbm_tb_s"] = float(sys.argv[3]) / 1000; j["sources"]["hbm_tb_s"] = "BM_MatMulFormat bf16 m=1 from memory, this run"
j["tflops"]["bf16"] = float(sys.argv[4]) / 1000; j["sources"]["tflops.bf16"] = "BM_MatMulFormat bf16 m=128, this run"
json.dump(j, open(sys.argv[2], "w"), indent=1)
PY
cat_bw=$(python3 -c "import json;print(json.load(open('$here/hardware/cpu.json'))['hbm_tb_s']*1000)")
cat_gemm=$(python3 -c "import json;print(json.load(open('$here/hardware/cpu.json'))['tflops']['bf16']*1000)")
echo "this run, 2 threads: bf16 matmul stream $bw GB/s (membw $membw GB/s), bf16 GEMM $gemm GFLOP/s;" \
  "catalog: $cat_bw GB/s, $cat_gemm GFLOP/s"
prompt=$(python3 -c "print(','.join(str((i*7919)%31000+100) for i in range(128)))")
for seqs in 1 8 32; do
  line=$("$bin" generate --model "$base" --tokens "$prompt" --max-tokens 65 --ignore-eos \
    --output-tokens --threads 2 --num-seqs $seqs --temperature 1 2>&1 >/dev/null | tail -1)
  measured=$(echo "$line" | sed -E 's/.*decode: [0-9]+ tok, ([0-9.]+) tok\/s.*/\1/')
  for hw in cpu "$w/cpu-now.json"; do
    sim=$("$bin" sim --model "$cfg" --hardware "$hw" --precision bf16 --kv-dtype bf16 \
      --isl 128 --osl 64 --layout "decode:gpus=1,batch=$seqs" --phase decode --json |
      python3 -c "import json,sys;j=json.load(sys.stdin);print(j['output_tokens_per_s_per_gpu'])")
    python3 -c "print('num-seqs $seqs, hardware $(basename $hw .json): measured decode %.1f tok/s, simulated %.1f tok/s, simulated/measured %.2f' % ($measured, $sim, $sim/$measured))"
  done
done

echo "## sweep speed"
/usr/bin/time -f "wall %e s" "$bin" sim --model deepseek-r1 --compare gb200-nvl72:nvfp4,h200:fp8 \
  --json 2>&1 >/dev/null | tail -1
"$bin" sim --model deepseek-r1 --compare gb200-nvl72:nvfp4,h200:fp8 --json |
  python3 -c "import json,sys;j=json.load(sys.stdin);print('configurations simulated:', sum(s['configurations'] for s in j['systems']), '; search time per system:', [round(s['elapsed_s'],2) for s in j['systems']])"
