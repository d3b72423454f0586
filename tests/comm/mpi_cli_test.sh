#!/usr/bin/env bash
# `mpirun -np N moerack logits|generate --ep N` writes exactly the bytes of
# the single-rank run, for a Qwen3-MoE and a DeepSeek-V3 model (also 4-bit
# quantized with int8 activations); and a
# rank-count mismatch is a clear error. Args: MPIEXEC MOERACK SOURCE_DIR N
set -euo pipefail
mpiexec=$1 bin=$2 src=$3 np=$4
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
tokens=3,17,99,42,7,150,8,64,5,230,11
for m in tiny-qwen3-moe tiny-deepseek-v3; do
  "$bin" logits --model "$src/tests/data/$m" --tokens $tokens --decode-from 4 --out "$out/one.npy"
  "$mpiexec" --oversubscribe --allow-run-as-root -np "$np" \
    "$bin" logits --model "$src/tests/data/$m" --tokens $tokens --decode-from 4 --ep "$np" \
    --out "$out/ep.npy"
  cmp "$out/one.npy" "$out/ep.npy"
  gen=(generate --model "$src/tests/data/$m" --tokens 3,4,5 --max-tokens 8 --ignore-eos
       --output-tokens --temperature 0.8 --seed 2 --num-seqs 5)
  "$bin" "${gen[@]}" >"$out/one.txt" 2>/dev/null
  "$mpiexec" --oversubscribe --allow-run-as-root -np "$np" "$bin" "${gen[@]}" --ep "$np" \
    >"$out/ep.txt" 2>/dev/null
  cmp "$out/one.txt" "$out/ep.txt"
  "$mpiexec" --oversubscribe --allow-run-as-root -np "$np" "$bin" "${gen[@]}" --ep "$np" --overlap \
    >"$out/ep.txt" 2>/dev/null
  cmp "$out/one.txt" "$out/ep.txt"
  echo "$m: mpirun -np $np logits and generate bit-identical"
done
# 4-bit experts with int8 activations (W4A8): each rank quantizes the rows of x
# its experts receive, which must give the single rank's bytes too.
for spec in tiny-qwen3-moe:nvfp4 tiny-deepseek-v3:mxfp4; do
  m=${spec%%:*} fmt=${spec##*:}
  "$bin" quantize --model "$src/tests/data/$m" --format "$fmt" --out "$out/q-$m" >/dev/null
  "$bin" logits --model "$out/q-$m" --tokens $tokens --decode-from 4 --act-dtype int8 \
    --out "$out/one.npy"
  "$mpiexec" --oversubscribe --allow-run-as-root -np "$np" \
    "$bin" logits --model "$out/q-$m" --tokens $tokens --decode-from 4 --act-dtype int8 \
    --ep "$np" --out "$out/ep.npy"
  cmp "$out/one.npy" "$out/ep.npy"
  "$bin" logits --model "$out/q-$m" --tokens $tokens --decode-from 4 --out "$out/f32.npy"
  if cmp -s "$out/f32.npy" "$out/one.npy"; then echo "--act-dtype int8 changed nothing"; exit 1; fi
  echo "$m $fmt, int8 activations: mpirun -np $np logits bit-identical"
done
if "$mpiexec" --oversubscribe --allow-run-as-root -np "$np" "$bin" logits \
     --model "$src/tests/data/tiny-qwen3-moe" --tokens 1,2 --ep 3 --out "$out/x.npy" 2>"$out/err"; then
  echo "mismatched --ep accepted"; exit 1
fi
grep -q -- "--ep 3 but mpirun started $np ranks" "$out/err"
