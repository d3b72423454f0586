// Google Benchmark for the matmul, the grouped expert GEMM and paged attention,
// on the shapes of the shared benchmark model (../shared/bench/bench-moe.json:
// hidden 2048, expert FFN 768, 64 experts, top-8; 32 query heads over 4 kv
// heads of 128). Bytes/s counts weight bytes (attention: KV cache bytes) read.
//   build/moerack_bench --benchmark_filter=. [--benchmark_min_time=1]
#include <algorithm>
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "core/huge_pages.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "kernels/attention.h"
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

// One weight of a given format with random (valid) bytes, owning its storage.
struct BenchWeight {
  HugePageBuffer bytes;  // on huge pages, as the engine's resident weights
  std::vector<uint8_t> scale_bytes;
  std::vector<float> scale_f32;
  LinearWeight w;
};

BenchWeight MakeWeight(WeightFormat f, int64_t n, int64_t k) {
  BenchWeight b;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  LinearWeight& w = b.w;
  w.format = f;
  w.rows = n;
  w.cols = k;
  const int64_t bytes = f == WeightFormat::kBF16 ? n * k * 2 : f == WeightFormat::kFp8 ? n * k : n * k / 2;
  b.bytes = HugePageBuffer(static_cast<size_t>(bytes));
  if (b.bytes.empty()) std::abort();
  uint8_t* data = b.bytes.data();
  for (int64_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(byte(rng));
  if (f == WeightFormat::kBF16) {
    for (int64_t i = 0; i < n * k; ++i) reinterpret_cast<uint16_t*>(data)[i] &= 0xbfff;
  } else if (f == WeightFormat::kFp8) {
    for (int64_t i = 0; i < bytes; ++i) data[i] &= 0xbf;  // finite
    w.block_n = w.block_k = 128;
    b.scale_f32.assign(static_cast<size_t>((n + 127) / 128 * ((k + 127) / 128)), 1e-3f);
    w.scales = b.scale_f32.data();
  } else {
    const int64_t block = f == WeightFormat::kNvfp4 ? 16 : 32;
    b.scale_bytes.resize(static_cast<size_t>(n * k / block));
    for (auto& x : b.scale_bytes) x = static_cast<uint8_t>(f == WeightFormat::kNvfp4 ? 0x30 + byte(rng) % 16 : 120 + byte(rng) % 8);
    w.scales = b.scale_bytes.data();
    w.global_scale = 1e-3f;
  }
  w.data = data;
  return b;
}

// Weight bytes, weights and FLOPs of an m x n x k matmul per second.
void SetMatMulCounters(benchmark::State& state, int64_t m, int64_t n, int64_t k, int64_t bytes) {
  const double it = static_cast<double>(state.iterations());
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["Gweights/s"] = benchmark::Counter(it * n * k / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOPS"] = benchmark::Counter(it * 2 * m * n * k / 1e9, benchmark::Counter::kIsRate);
}

// y = x · Wᵀ for each weight format. args: format (0 bf16, 1 fp8, 2 nvfp4, 3 mxfp4), m, n,
// k, threads, act (0 f32, 1 bf16, 2 int8 activations: FP4 only). n = 128 keeps W in L2 (512 KB as bf16): the decode compute roofline (unpacking arithmetic
// alone; for FP4 at two threads n = 512, whose ~300 KB a thread stay in L2); n = 65536 streams W
// from memory.
void BM_MatMulFormat(benchmark::State& state) {
  const WeightFormat formats[] = {WeightFormat::kBF16, WeightFormat::kFp8, WeightFormat::kNvfp4,
                                  WeightFormat::kMxfp4};
  const WeightFormat f = formats[state.range(0)];
  const int64_t m = state.range(1), n = state.range(2), k = state.range(3);
  ThreadPool pool(static_cast<int>(state.range(4)));
  const ActDType acts[] = {ActDType::kF32, ActDType::kBF16, ActDType::kInt8};
  ActDTypeScope act(acts[state.range(5)]);
  BenchWeight w = MakeWeight(f, n, k);
  auto x = RandomF32(m * k, 2);
  std::vector<float> y(static_cast<size_t>(m * n));
  GemmProblem p{x.data(), k, m, w.w, y.data(), n};
  for (auto _ : state) {
    MatMul(p, pool);
    benchmark::DoNotOptimize(y.data());
  }
  const char* act_names[] = {" act=f32", " act=bf16", " act=int8"};
  state.SetLabel(std::string(WeightFormatName(f)) + act_names[state.range(5)]);
  SetMatMulCounters(state, m, n, k, w.w.nbytes());
}
BENCHMARK(BM_MatMulFormat)
    ->ArgNames({"fmt", "m", "n", "k", "threads", "act"})
    ->ArgsProduct({{0, 1, 2, 3}, {1}, {128, 65536}, {2048}, {1, 2}, {0, 1}})
    ->ArgsProduct({{0, 1, 2, 3}, {128}, {4096}, {2048}, {1, 2}, {0, 1}})
    ->ArgsProduct({{2, 3}, {1}, {128, 65536}, {2048}, {1, 2}, {2}})  // act=int8: FP4 only
    // FP4 from L2 at two threads: 512 rows (~300 KB a thread), so that the
    // pool's hand-off (~10 us) does not bound it as it does n = 128.
    ->ArgsProduct({{2, 3}, {1}, {512}, {2048}, {1, 2}, {0, 2}})
    ->ArgsProduct({{2, 3}, {128}, {4096}, {2048}, {1, 2}, {2}})
    ->UseRealTime();

// The int8-activation kernels (--act-dtype int8) side by side on one thread:
// each one this CPU runs (args: kernel 0 portable, 1 AVX2, 2 AVX-512 VNNI;
// format 2 nvfp4, 3 mxfp4; m; n). n = 128 keeps W in L2 (the unpacking
// arithmetic alone), n = 65536 streams it from memory; k = 2048.
void BM_Int8Kernel(benchmark::State& state) {
  const auto kernel = static_cast<Int8Kernel>(state.range(0));
  const std::vector<Int8Kernel> supported = SupportedInt8Kernels();
  if (std::find(supported.begin(), supported.end(), kernel) == supported.end()) {
    state.SkipWithError("this CPU does not run this kernel");
    return;
  }
  const WeightFormat f = state.range(1) == 2 ? WeightFormat::kNvfp4 : WeightFormat::kMxfp4;
  const int64_t m = state.range(2), n = state.range(3), k = 2048;
  BenchWeight w = MakeWeight(f, n, k);
  auto x = RandomF32(m * k, 2);
  std::vector<float> y(static_cast<size_t>(m * n));
  GemmProblem p{x.data(), k, m, w.w, y.data(), n};
  for (auto _ : state) {
    MatMulInt8(p, kernel);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(WeightFormatName(f)) + " " + Int8KernelName(kernel));
  SetMatMulCounters(state, m, n, k, w.w.nbytes());
}
BENCHMARK(BM_Int8Kernel)
    ->ArgNames({"kernel", "fmt", "m", "n"})
    ->ArgsProduct({{1, 2}, {2, 3}, {1}, {128, 65536}})
    ->ArgsProduct({{1, 2}, {2, 3}, {128}, {4096}})
    ->UseRealTime();

// The machine's f32 FMA peak per thread: kChains independent chains of
// 512-bit FMAs (AVX-512, 16 chains in its 32 registers; 256-bit AVX2+FMA
// elsewhere, 12 chains, as 16 plus the two constants spilled to the stack and
// read 58 instead of 101 GFLOP/s on Zen 3), no memory traffic. The denominator
// of the prefill GFLOP/s figures.
// Inlined into the two ISA-specific wrappers below, so compiled for each.
template <typename V, int kChains>
__attribute__((always_inline)) inline float PeakBody(int64_t iters) {
  V a[kChains];
  for (int i = 0; i < kChains; ++i) a[i] = V{} + static_cast<float>(i);
  const V m = V{} + 0.999999f, c = V{} + 1e-7f;
  for (int64_t it = 0; it < iters; ++it)
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i) a[i] = a[i] * m + c;
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += a[i][0];
  return s;
}
constexpr int kChains512 = 16, kChains256 = 12;
using V16 = float __attribute__((vector_size(64)));
using V8 = float __attribute__((vector_size(32)));
__attribute__((target("avx512f,fma"))) float PeakLoop512(int64_t iters) {
  return PeakBody<V16, kChains512>(iters);
}
__attribute__((target("avx2,fma"))) float PeakLoop256(int64_t iters) {
  return PeakBody<V8, kChains256>(iters);
}

void BM_PeakFma(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const bool avx512 = __builtin_cpu_supports("avx512f");
  ThreadPool pool(threads);
  constexpr int64_t kIters = 1 << 20;
  for (auto _ : state) {
    pool.ParallelFor(threads, [&](int64_t, int) {
      benchmark::DoNotOptimize(avx512 ? PeakLoop512(kIters) : PeakLoop256(kIters));
    });
  }
  state.counters["GFLOPS"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * threads * kIters *
          (avx512 ? kChains512 * 16 : kChains256 * 8) * 2 / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PeakFma)->ArgNames({"threads"})->Arg(1)->Arg(2)->UseRealTime();

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

// bench-moe's attention (32 query heads, 4 kv heads, head dim 128) for one
// sequence: `tokens` query tokens (1: a decode step; more: a prefill chunk)
// ending at position `context` - 1, over a paged cache of 16-token blocks in a
// scrambled order. args: context, tokens, threads, fp8 (0: f32 cache, 1: FP8).
void BM_PagedAttention(benchmark::State& state) {
  const int64_t context = state.range(0), tokens = state.range(1);
  const bool fp8 = state.range(3) != 0;
  ThreadPool pool(static_cast<int>(state.range(2)));
  const int heads = 32, kv_heads = 4, dim = 128, block = 16;
  const int64_t per_token = 2 * kv_heads * dim, blocks = (context + block - 1) / block;
  KvCache kv(1, blocks, block, per_token, fp8 ? DType::kFP8E4M3 : DType::kF32);
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) table[static_cast<size_t>(b)] = static_cast<int32_t>((b * 7) % blocks);
  if (blocks % 7 == 0) std::iota(table.begin(), table.end(), 0);
  const auto slot = RandomF32(per_token, 6);
  for (int64_t pos = 0; pos < context; ++pos)
    kv.view().Store(0, table, pos, 0, slot.data(), per_token);  // content does not change the cost
  const auto q = RandomF32(tokens * heads * dim, 7);
  std::vector<float> out(static_cast<size_t>(tokens * heads * dim));
  AttentionParams p;
  p.q = q.data();
  p.q_stride = heads * dim;
  p.out = out.data();
  p.out_stride = heads * dim;
  p.num_heads = heads;
  p.num_kv_heads = kv_heads;
  p.head_dim = p.v_head_dim = dim;
  p.v_offset = kv_heads * dim;
  p.scale = 0.088f;
  const AttentionSeq seq{0, tokens, context - tokens, table};
  for (auto _ : state) {
    PagedAttention(p, {&seq, 1}, kv.view(), pool);
    benchmark::DoNotOptimize(out.data());
  }
  // Keys seen summed over the query tokens; q.k and the weighted sum of V are
  // 2 * dim FLOPs each per query head and key.
  const double keys = static_cast<double>(tokens) * (context - tokens) + tokens * (tokens + 1) / 2.0;
  state.SetBytesProcessed(state.iterations() * context * per_token * (fp8 ? 1 : 4));
  state.counters["GFLOPS"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * keys * heads * 4 * dim / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PagedAttention)
    ->ArgNames({"context", "tokens", "threads", "fp8"})
    ->ArgsProduct({{512, 4096}, {1}, {1, 2}, {0, 1}})
    ->ArgsProduct({{2048}, {256}, {1, 2}, {0, 1}})
    ->UseRealTime();

// MLA decode (DeepSeek-V2-Lite's shape: 16 heads over one latent kv head of
// kv_lora_rank 512 + rope 64 = 576 floats, values the first 512): one query
// token at position `context` - 1, f32 cache. One latent head is one task,
// whose heads split in runs across the threads. args: context, threads.
void BM_PagedAttentionMla(benchmark::State& state) {
  const int64_t context = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  const int heads = 16, dim = 576, v_dim = 512, block = 16;
  const int64_t blocks = (context + block - 1) / block;
  KvCache kv(1, blocks, block, dim, DType::kF32);
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  std::iota(table.begin(), table.end(), 0);
  const auto slot = RandomF32(dim, 6);
  for (int64_t pos = 0; pos < context; ++pos) kv.view().Store(0, table, pos, 0, slot.data(), dim);
  const auto q = RandomF32(heads * dim, 7);
  std::vector<float> out(static_cast<size_t>(heads * v_dim));
  AttentionParams p;
  p.q = q.data();
  p.q_stride = heads * dim;
  p.out = out.data();
  p.out_stride = heads * v_dim;
  p.num_heads = heads;
  p.num_kv_heads = 1;
  p.head_dim = dim;
  p.v_head_dim = v_dim;
  p.scale = 0.07f;
  const AttentionSeq seq{0, 1, context - 1, table};
  for (auto _ : state) {
    PagedAttention(p, {&seq, 1}, kv.view(), pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * context * dim * 4);
  state.counters["GFLOPS"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * context * heads * 2 * (dim + v_dim) / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PagedAttentionMla)
    ->ArgNames({"context", "threads"})
    ->ArgsProduct({{512, 4096}, {1, 2}})
    ->UseRealTime();

// One sampled token from a 32k-vocabulary row of logits (bench-moe's vocab;
// uniform logits in [-5, 5]). args: top_k (0: all), top_p in percent.
void BM_SampleToken(benchmark::State& state) {
  std::vector<float> logits = RandomF32(32000, 5);
  for (float& l : logits) l *= 5.0f;
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = static_cast<int>(state.range(0));
  p.top_p = static_cast<float>(state.range(1)) / 100.0f;
  std::mt19937_64 rng(1);
  for (auto _ : state) {
    benchmark::DoNotOptimize(SampleToken(logits.data(), 32000, p, rng));
  }
}
BENCHMARK(BM_SampleToken)->ArgNames({"top_k", "top_p"})->Args({0, 100})->Args({0, 90})->Args({40, 95});

}  // namespace
}  // namespace moerack
