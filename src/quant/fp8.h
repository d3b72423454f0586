// FP8 E4M3 ("e4m3fn": bias 7, no infinities, 0x7f/0xff NaN, max 448) and
// DeepSeek's block-scaled FP8 weights: W[n, k] = fp8(W)[n, k] * scale_inv[n / B, k / B]
// with B = 128 (formats.md §3). Encoding rounds to nearest even and saturates.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace moerack {

inline constexpr float kFp8E4M3Max = 448.0f;

float Fp8E4M3ToF32(uint8_t v);
// Round-to-nearest-even, saturating to ±448; NaN stays NaN. Bit manipulation
// (a few ns); F32ToFp8E4M3Reference is the arithmetic definition it is tested
// against.
uint8_t F32ToFp8E4M3(float f);
uint8_t F32ToFp8E4M3Reference(float f);

// A block-quantized weight: `weight` F8_E4M3 [N, K] and `scale_inv` F32
// [ceil(N / block_n), ceil(K / block_k)]. Returns W in f32, [N, K] row-major.
StatusOr<std::vector<float>> DequantizeBlockFp8(const TensorView& weight,
                                                const TensorView& scale_inv, int block_n = 128,
                                                int block_k = 128);

// Quantizes f32 [N, K] to block FP8: per block, scale = amax / 448 (1 for an
// all-zero block), q = fp8(w / scale); scale_inv receives the scales.
void QuantizeBlockFp8(const float* w, int64_t n, int64_t k, int block, std::vector<uint8_t>* q,
                      std::vector<float>* scale_inv);

}  // namespace moerack
