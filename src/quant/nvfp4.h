// NVFP4 weights (formats.md §1): FP4 E2M1 elements in 16-element blocks along K, one FP8 E4M3
// scale per block and one f32 scale per tensor:
//   W[n, k] ≈ E2M1(q[n, k]) * (float(E4M3(block_scale[n, k / 16])) * global_scale)
// This is the encode/decode layer: the E2M1 codec, a quantizer that is bit-exact with NVIDIA
// ModelOpt's `NVFP4QTensor.quantize` (torch float32 on CPU), and f32 dequantization for tests and
// references. Kernels and checkpoint loading live elsewhere.
//
// Layout (ModelOpt and compressed-tensors checkpoints alike), for a weight of shape [N, K]:
//   packed       U8 [N, K/2]  byte j holds element 2j in its low nibble, 2j+1 in its high nibble
//   block_scale  U8 [N, K/16] E4M3 bytes, row-major (not the swizzled kernel layout)
//   global_scale f32          ModelOpt `weight_scale_2` = amax / 2688 (a decode multiplier)
// compressed-tensors stores the reciprocal (`weight_global_scale` = 2688 / amax); convert with the
// helpers below.
//
// Thread-safety: pure functions and value types.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"

namespace moerack {

// Elements per NVFP4 block (along K).
inline constexpr int kNvfp4BlockSize = 16;
// Largest E2M1 magnitude; E2M1 has no Inf or NaN.
inline constexpr float kE2M1Max = 6.0f;
// E2M1 max times E4M3 max: global_scale = amax / kNvfp4ScaleDenominator.
inline constexpr float kNvfp4ScaleDenominator = 6.0f * 448.0f;

// Code = (sign << 3) | magnitude index. 0x8 decodes to -0.0.
inline constexpr float kE2M1Values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                          -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// Decodes `num_bytes` packed E2M1 bytes (low nibble = even element) into
// 2 * num_bytes floats, each times `scale`. Shared by NVFP4 and MXFP4.
inline void DecodeE2M1Bytes(const uint8_t* bytes, int num_bytes, float scale, float* out) {
  for (int i = 0; i < num_bytes; ++i) {
    out[2 * i] = kE2M1Values[bytes[i] & 0xf] * scale;
    out[2 * i + 1] = kE2M1Values[bytes[i] >> 4] * scale;
  }
}

// Encodes x as E2M1 exactly like ModelOpt's `_cast_fp4`: round half to even on the decision bounds
// [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0] (0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2,
// 3.5 -> 4, 5 -> 4), anything above 5 saturates to 6, ±Inf to ±6. The sign comes from x < 0, so
// -0.0 encodes as 0x0 while -0.1 encodes as 0x8; NaN encodes as 0x7 (torch.searchsorted puts it
// past every bound and NaN < 0 is false).
uint8_t F32ToE2M1(float x);

// A quantized [num_rows, num_cols] weight; see the layout at the top of the file.
struct Nvfp4Tensor {
  std::vector<uint8_t> packed;       // [num_rows, num_cols / 2], low nibble = even column
  std::vector<uint8_t> block_scale;  // [num_rows, num_cols / 16] E4M3 bytes
  float global_scale = 0.0f;         // ModelOpt weight_scale_2 (amax / 2688)
  int64_t num_rows = 0;              // N (output features)
  int64_t num_cols = 0;              // K (input features), a multiple of 16
};

// ModelOpt's per-tensor scale for a tensor whose max |w| is `amax`: amax / 2688 rounded once in
// f32 (torch CPU divides by a Python scalar with a true division). ModelOpt's CUDA path instead
// multiplies by float(1/2688), which differs in the last bit for ~22% of amax values; pass such a
// scale (or a checkpoint's weight_scale_2) to QuantizeNvfp4WithGlobalScale.
float Nvfp4GlobalScale(float amax);

// Quantizes w, row-major f32 [n, k], the way ModelOpt does in torch float32:
//   s2          = Nvfp4GlobalScale(max |w| over the whole tensor)
//   block scale = E4M3(block_amax / (6 * s2)), the byte for 1.0 (0x38) if that quotient is 0
//   code        = F32ToE2M1(w / (float(block scale) * s2))
// Every step is one f32 operation in that order, so the output matches ModelOpt byte for byte.
// Errors: k not a positive multiple of 16, n < 1, a non-finite element, or 0 < amax with
// amax / 2688 not a normal f32. An all-zero tensor gives global_scale 0, scale bytes 0x38 and
// codes 0 (ModelOpt would compute 0/0 there and emit NaN scales).
StatusOr<Nvfp4Tensor> QuantizeNvfp4(const float* w, int64_t n, int64_t k);

// As QuantizeNvfp4 but with a given per-tensor scale (> 0, finite), e.g. a checkpoint's
// weight_scale_2. Block scales above 448 saturate to 448 (torch would produce NaN at >= 480).
StatusOr<Nvfp4Tensor> QuantizeNvfp4WithGlobalScale(const float* w, int64_t n, int64_t k,
                                                   float global_scale);

// Decodes one row: `packed_row` [k/2], `scale_row` [k/16] E4M3 bytes, k a multiple of 16, into
// out[k]. Each value is kE2M1Values[code] * (float(scale) * global_scale), ModelOpt's order.
void DequantizeNvfp4Row(const uint8_t* packed_row, const uint8_t* scale_row, float global_scale,
                        int64_t k, float* out);

// The whole tensor as row-major f32 [num_rows, num_cols].
std::vector<float> DequantizeNvfp4(const Nvfp4Tensor& t);

// One element (row, col) of t, decoded as in DequantizeNvfp4Row. CHECKs the indices.
float Nvfp4Value(const Nvfp4Tensor& t, int64_t row, int64_t col);

// compressed-tensors stores weight_global_scale = 2688 / amax and dequantizes with
// float(scale) / weight_global_scale; ModelOpt stores weight_scale_2 = amax / 2688 and multiplies.
// The conversions are reciprocals in f32; a round trip may move the last bit, and the two
// dequantization orders may differ by one ulp.
inline float Nvfp4GlobalScaleFromCompressedTensors(float weight_global_scale) {
  return 1.0f / weight_global_scale;
}
inline float CompressedTensorsGlobalScaleFromNvfp4(float weight_scale_2) {
  return 1.0f / weight_scale_2;
}

}  // namespace moerack
