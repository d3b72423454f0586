// Pieces of the matmul shared between its translation units (not an API).
#pragma once

#include <cstdint>

#include "core/scratch.h"
#include "kernels/matmul.h"

namespace moerack {

// Dense k loops run this many steps per iteration, the unrolling written in the
// source (an inner loop of constant trip count). `#pragma GCC unroll 4` on the
// loop itself (trip count unknown) made GCC peel a step and enter the unrolled
// body through a jump table, and that loop streamed a bf16 weight row at 27-28
// GB/s on one thread against 34-36 for the same body entered at its top (Zen 5;
// BENCHMARKS.md).
inline constexpr int kUnrolledSteps = 4;

// Decode loops prefetch the weight stream this far ahead of their loads. FP4
// decode keeps only ~1 KB of codes in flight per thread (its out-of-order
// window spans ~16 chunks): 4 KB ahead measured +25% decode on one thread
// (bench-moe nvfp4). The bf16 row loop streamed 38-39.5 GB/s without and
// 41.4-42.3 with it, a plain sum 41.5-42.6 (standalone, one thread, Zen 5);
// 1 and 2 KB ahead gained less, 8 KB a little less.
inline constexpr int64_t kPrefetchAheadBytes = 4096;

// Whether this CPU has AVX512-BF16 (VDPBF16PS), checked once at run time.
bool HasAvx512Bf16();

// Rows [m0, m1) x outputs [n0, n1) of p with activations rounded to bf16, on the
// AVX512-BF16 kernel (matmul_bf16.cc). Returns false, doing nothing, when the CPU
// lacks the instructions or the weight format has no bf16 kernel.
bool RunBf16ActivationBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

// Rows [m0, m1) x outputs [n0, n1) of p with int8 activations (matmul_int8.cc):
// the best kernel this CPU runs (all give the same bits). `call` numbers the
// GroupedMatMul call (nonzero, never reused), so that a thread's next task
// over the same rows of x in the same call reuses their quantization. Returns
// false, doing nothing, for weights other than NVFP4/MXFP4.
bool RunInt8ActivationBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                            uint64_t call);

// NVFP4 block scales decode as float_bits(E4M3 byte << 20) * 2^120, times the
// global scale. When 2^120 * global is a normal float, one multiply by it
// rounds the same real product once, as the two multiplies do: bit-identical.
inline bool Nvfp4GlobalScaleFusable(const LinearWeight& w) {
  return w.format == WeightFormat::kNvfp4 && !w.global_divides && w.global_scale > 0x1p-100f &&
         w.global_scale < 0x1p7f;
}

}  // namespace moerack
