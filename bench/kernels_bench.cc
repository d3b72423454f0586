// Google Benchmark for the matmul and the grouped expert GEMM, on the shapes of
// the shared benchmark model (../shared/bench/bench-moe.json: hidden 2048,
// expert FFN 768, 64 experts, top-8). Bytes/s counts weight bytes read.
//   build/moerack_bench --benchmark_filter=. [--benchmark_min_time=1]
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/expert_ffn.h"
#include "kernels/matmul.h"

namespace moerack {
namespace {

std::vector<uint16_t> RandomBf16(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = F32ToBF16(u(rng));
  return v;
}

std::vector<float> RandomF32(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// args: rows M, N, K, threads. The attention projection shape by default.
void BM_MatMulBf16(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  ThreadPool pool(static_cast<int>(state.range(3)));
  auto w = RandomBf16(n * k, 1);
  auto x = RandomF32(m * k, 2);
  std::vector<float> y(static_cast<size_t>(m * n));
  GemmProblem p{x.data(), k, m, TensorView(w.data(), DType::kBF16, {n, k}), y.data(), n};
  for (auto _ : state) {
    MatMul(p, pool);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * n * k * 2);
  state.counters["GFLOPS"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2 * m * n * k / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MatMulBf16)
    ->ArgNames({"m", "n", "k", "threads"})
    ->Args({1, 32000, 2048, 1})
    ->Args({1, 4096, 2048, 1})
    ->Args({1, 4096, 2048, 2})
    ->Args({8, 4096, 2048, 1})
    ->Args({8, 4096, 2048, 2})
    ->Args({128, 4096, 2048, 1})
    ->Args({128, 4096, 2048, 2})
    ->UseRealTime();

// The MoE layer of bench-moe: `tokens` tokens routed top-8 over 64 experts
// (round-robin routing so every expert is hit evenly). args: tokens, threads.
void BM_GroupedExpertFfn(benchmark::State& state) {
  const int64_t tokens = state.range(0), hidden = 2048, inter = 768, num_experts = 64, top_k = 8;
  ThreadPool pool(static_cast<int>(state.range(1)));
  std::vector<std::vector<uint16_t>> storage;
  std::vector<ExpertWeights> experts;
  for (int e = 0; e < num_experts; ++e) {
    storage.push_back(RandomBf16(inter * hidden, 10 + 3 * e));
    storage.push_back(RandomBf16(inter * hidden, 11 + 3 * e));
    storage.push_back(RandomBf16(hidden * inter, 12 + 3 * e));
    experts.push_back(
        {TensorView(storage[storage.size() - 3].data(), DType::kBF16, {inter, hidden}),
         TensorView(storage[storage.size() - 2].data(), DType::kBF16, {inter, hidden}),
         TensorView(storage.back().data(), DType::kBF16, {hidden, inter})});
  }
  const int64_t rows = tokens * top_k;
  std::vector<int64_t> offsets(num_experts + 1);
  for (int e = 0; e <= num_experts; ++e) offsets[e] = rows * e / num_experts;
  auto x = RandomF32(rows * hidden, 3);
  std::vector<float> out(x.size());
  const int64_t active = std::min<int64_t>(rows, num_experts);
  for (auto _ : state) {
    GroupedExpertFfn({experts, offsets, x.data(), out.data(), hidden}, pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * active * 3 * inter * hidden * 2);
  state.counters["GFLOPS"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2 * rows * 3 * inter * hidden / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_GroupedExpertFfn)
    ->ArgNames({"tokens", "threads"})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Args({8, 1})
    ->Args({8, 2})
    ->Args({128, 1})
    ->Args({128, 2})
    ->UseRealTime();

}  // namespace
}  // namespace moerack
