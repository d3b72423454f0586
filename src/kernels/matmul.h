// Matrix multiplication with weights in the HF Linear layout: y = x · Wᵀ,
// x [rows, K] f32, W [N, K] (f32 or bf16; quantized formats come later),
// y [rows, N] f32. GroupedMatMul runs many independent problems (one per
// expert) as one parallel job: it is the grouped expert GEMM of the MoE layer.
//
// Reduction order: each y[m, n] is one SIMD-lane-strided accumulation over K
// followed by a fixed lane reduction and a scalar tail, whatever the number of
// rows, the tiling and the thread count (DESIGN.md principle 2).
// Thread-safety: calls are independent; each uses the pool it is given.
#pragma once

#include <cstdint>
#include <span>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace moerack {

struct GemmProblem {
  const float* x = nullptr;  // [rows, K], row stride x_stride (floats)
  int64_t x_stride = 0;
  int64_t rows = 0;
  TensorView w;        // [N, K] contiguous rows
  float* y = nullptr;  // [rows, N], row stride y_stride (floats)
  int64_t y_stride = 0;
};

void MatMul(const GemmProblem& p, ThreadPool& pool);
void GroupedMatMul(std::span<const GemmProblem> problems, ThreadPool& pool);

// Scalar reference: f64 accumulation, for tests.
void MatMulReference(const GemmProblem& p);

}  // namespace moerack
