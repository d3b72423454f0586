// LinearWeight: a non-owning view of one Linear weight W [N, K] (HF layout,
// y = x · Wᵀ) in any format the matmul reads directly, packed as the
// checkpoint stores it. Kernels dequantize inside their inner loop; nothing
// here materialises a dequantized matrix except the scalar reference helpers.
//
//   kF32, kBF16  data [N, K]
//   kFp8         data E4M3 [N, K]; scales f32 [ceil(N/block_n), ceil(K/block_k)],
//                W = fp8 * scale (DeepSeek block 128x128, per tensor N x K, per channel 1 x K)
//   kNvfp4       data [N, K/2] E2M1 (low nibble = even k); scales E4M3 [N, K/16];
//                W = e2m1 * (float(scale) * global_scale)   (ModelOpt's order, formats.md §1)
//                or e2m1 * (float(scale) / global_scale) when global_divides
//                (compressed-tensors' reciprocal weight_global_scale, §1.7b)
//   kMxfp4       data [N, K/2] E2M1; scales E8M0 [N, K/32]; W = e2m1 * 2^(scale - 127) (§2)
// Thread-safety: a value; concurrent reads are safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moerack {

enum class WeightFormat : uint8_t { kF32, kBF16, kFp8, kNvfp4, kMxfp4 };

const char* WeightFormatName(WeightFormat f);

struct LinearWeight {
  WeightFormat format = WeightFormat::kF32;
  int64_t rows = 0;  // N (output features)
  int64_t cols = 0;  // K (input features)
  const void* data = nullptr;
  const void* scales = nullptr;
  int64_t block_n = 0, block_k = 0;  // kFp8 scale blocks
  float global_scale = 1.0f;         // kNvfp4
  bool global_divides = false;       // kNvfp4 from compressed-tensors
  float input_scale = 0.0f;          // activation scale of W4A4/W8A8 checkpoints; unused on CPU

  LinearWeight() = default;
  // An f32 or bf16 [N, K] view (implicit: plain weights pass wherever a LinearWeight goes).
  LinearWeight(const TensorView& v);  // NOLINT(google-explicit-constructor)

  bool empty() const { return data == nullptr; }
  // Bytes the matmul reads for the whole weight, scales included.
  int64_t nbytes() const;
  // Bytes of one row of W, scales included (amortised for block scales).
  double row_bytes() const;
  // Rows [r0, r1) as a weight of their own (views, no copy). kFp8 needs r0 on a block boundary.
  LinearWeight RowSlice(int64_t r0, int64_t r1) const;
  std::string Describe() const;  // "nvfp4 [N, K]"
  // Touches one byte per page of the weight and its scales (faults a lazily
  // mapped weight in; EPLB's weight mover).
  void TouchPages() const;

  // Scalar decode of W[n, k0:k1] into out, the exact values the kernels use.
  void DequantizeRange(int64_t n, int64_t k0, int64_t k1, float* out) const;
  std::vector<float> Dequantize() const;  // the whole [N, K], for references and tests
};

// Checks that the format's shape rules hold (K a multiple of the block, scales present).
// Returns an empty string when valid, else what is wrong.
std::string ValidateLinearWeight(const LinearWeight& w);

}  // namespace moerack
