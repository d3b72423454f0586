// Small elementwise and per-row ops of the transformer block, in f32 (SIMD via
// Highway, dispatched at run time). Each row is reduced in an order that
// depends only on its length, and each element of SiluMul is computed the same
// way wherever a range starts, so results do not depend on the batch or on
// how the threads split the work.
// Thread-safety: pure functions over caller-owned memory.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace moerack {

// Copies (and converts to f32) `num` elements starting at element `offset` of a
// f32/bf16/f16 tensor.
void LoadF32(const TensorView& t, int64_t offset, int64_t num, float* out);

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for `rows` rows of `dim`.
// x and y may alias. w is f32/bf16/f16 [dim].
void RmsNorm(const float* x, int64_t x_stride, const TensorView& w, float eps, int64_t rows,
             int64_t dim, float* y, int64_t y_stride);

// RoPE pairing: NeoX (i, i + d/2) or interleaved (2i, 2i+1); see model/rope.h.
enum class RopeStyle { kNeox, kInterleaved };

// gate[i] = silu(gate[i]) * up[i].
void SiluMul(float* gate, const float* up, int64_t n);

}  // namespace moerack
