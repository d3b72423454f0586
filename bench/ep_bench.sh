#!/usr/bin/env bash
# Expert parallelism on the shared benchmark model, same total threads in each
# comparison (EP=1 x 2 threads vs EP=2 x 1 thread), LocalComm (threads) and
# MPI (mpirun), two-batch overlap off and on, --num-seqs 1 and 32, and the peak
# resident memory per rank.
#   bench/ep_bench.sh [MODEL_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/moerack
model=${1:-/tmp/bench-moe}
[ -f "$model/model.safetensors" ] ||
  "$bin" random-model --config "$here/../shared/bench/bench-moe.json" --out "$model" --seed 1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi=(mpirun --oversubscribe --allow-run-as-root)
prompt=$(python3 -c "print(','.join(str((i*7919)%31000+100) for i in range(128)))")
gen=(generate --model "$model" --tokens "$prompt" --max-tokens 33 --ignore-eos --output-tokens --temperature 1)
for n in 1 32; do
  echo "num-seqs=$n EP=1 threads=2: $("$bin" "${gen[@]}" --num-seqs $n --threads 2 2>&1 >/dev/null | tail -1)"
  echo "num-seqs=$n EP=2 threads=1 local: $("$bin" "${gen[@]}" --num-seqs $n --threads 1 --ep 2 2>&1 >/dev/null | tail -1)"
  echo "num-seqs=$n EP=2 threads=1 mpi: $("${mpi[@]}" -np 2 "$bin" "${gen[@]}" --num-seqs $n --threads 1 --ep 2 2>&1 >/dev/null | tail -1)"
  echo "num-seqs=$n EP=2 threads=1 local --overlap: $("$bin" "${gen[@]}" --num-seqs $n --threads 1 --ep 2 --overlap 2>&1 >/dev/null | tail -1)"
  echo "num-seqs=$n EP=2 threads=1 mpi --overlap: $("${mpi[@]}" -np 2 "$bin" "${gen[@]}" --num-seqs $n --threads 1 --ep 2 --overlap 2>&1 >/dev/null | tail -1)"
done
# Peak resident set of each rank (sampled from /proc while it runs).
for np in 1 2; do
  "${mpi[@]}" -np $np bash -c '"$@" >/dev/null 2>&1 & pid=$!; peak=0
    while kill -0 $pid 2>/dev/null; do
      r=$(awk "/VmRSS/{print \$2}" /proc/$pid/status 2>/dev/null || true)
      [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r; sleep 0.1; done
    echo "EP=$0 rank $OMPI_COMM_WORLD_RANK: peak RSS $((peak / 1024)) MiB"' \
    $np "$bin" "${gen[@]}" --num-seqs 4 --threads 1 --ep $np
done
