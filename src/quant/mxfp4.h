// MXFP4 weights (OCP Microscaling, formats.md §2): FP4 E2M1 elements in 32-element blocks along
// K, each block sharing one power-of-two scale stored as E8M0:
//   W[n, k] = E2M1(q[n, k]) * 2^(scale[n, k / 32] - 127)
// This is the encode/decode layer: E8M0 decoding, the OCP-recommended FLOOR quantizer and f32
// dequantization for tests and references. Kernels and checkpoint loading live elsewhere.
//
// Layout (gpt-oss, e.g. `down_proj_blocks` / `down_proj_scales`), for a weight of shape [N, K]:
//   blocks U8 [N, K/32, 16]  byte j of a block holds element 2j (low nibble) and 2j+1 (high)
//   scales U8 [N, K/32]      E8M0 biased exponents
// ggml's block_mxfp4 uses another nibble order (element j with j+16); it is not handled here.
//
// Thread-safety: pure functions and value types.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "quant/nvfp4.h"  // the E2M1 codec

namespace moerack {

// Elements per MXFP4 block (along K) and bytes per packed block.
inline constexpr int kMxfp4BlockSize = 32;
inline constexpr int kMxfp4BlockBytes = kMxfp4BlockSize / 2;
inline constexpr int kE8M0Bias = 127;
inline constexpr uint8_t kE8M0NaN = 0xff;

// 2^(e - 127) for e in [0, 254] (0x00 is 2^-127, an f32 subnormal; there is no zero); NaN for 0xff.
float E8M0ToF32(uint8_t e);

// The E8M0 scale byte the OCP FLOOR rule picks for a block whose max |x| is `amax`:
// 2^(floor(log2(amax)) - 2), the unbiased exponent clamped to [-127, 127]. Values in (6, 8) times
// that scale clip to 6 (the known "FLOOR overflow"). amax == 0 gives 0x00 (2^-127), as torchao and
// ggml do; a NaN or Inf amax gives 0xff.
uint8_t Mxfp4ScaleFloor(float amax);

// A quantized [num_rows, num_cols] weight; see the layout at the top of the file.
struct Mxfp4Tensor {
  std::vector<uint8_t> blocks;  // [num_rows, num_cols / 32, 16], low nibble = even element
  std::vector<uint8_t> scales;  // [num_rows, num_cols / 32] E8M0 bytes
  int64_t num_rows = 0;         // N (output features)
  int64_t num_cols = 0;         // K (input features), a multiple of 32
};

// Quantizes w, row-major f32 [n, k]: per block, scale = Mxfp4ScaleFloor(block amax), then
// code = F32ToE2M1(x / 2^(scale - 127)) (round half to even, saturating at ±6; -0.0 -> 0x0). The
// division by a power of two is exact, so the result does not depend on f32 vs f64. An all-zero
// block gets scale byte 0x00 and codes 0. Errors: k not a positive multiple of 32, n < 1, or a
// non-finite element.
StatusOr<Mxfp4Tensor> QuantizeMxfp4(const float* w, int64_t n, int64_t k);

// Decodes one row: `blocks_row` [k/2], `scales_row` [k/32], k a multiple of 32, into out[k].
void DequantizeMxfp4Row(const uint8_t* blocks_row, const uint8_t* scales_row, int64_t k,
                        float* out);

// The whole tensor as row-major f32 [num_rows, num_cols].
std::vector<float> DequantizeMxfp4(const Mxfp4Tensor& t);

// One element (row, col) of t. CHECKs the indices.
float Mxfp4Value(const Mxfp4Tensor& t, int64_t row, int64_t col);

}  // namespace moerack
