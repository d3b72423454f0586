#include "quant/nvfp4.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "quant/fp8.h"

namespace moerack {
namespace {

// ModelOpt's `e2m1_bounds`: the midpoints between consecutive E2M1 magnitudes.
constexpr float kE2M1Bounds[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};

// Byte of E4M3 1.0 (exponent 7, mantissa 0): ModelOpt's scale for an all-zero block.
constexpr uint8_t kE4M3One = 0x38;

Status CheckShape(int64_t n, int64_t k) {
  if (n < 1) return Error("NVFP4 quantization needs at least one row, got " + std::to_string(n));
  if (k < kNvfp4BlockSize || k % kNvfp4BlockSize != 0) {
    return Error("NVFP4 needs K to be a positive multiple of " + std::to_string(kNvfp4BlockSize) +
                 ", got K = " + std::to_string(k));
  }
  return Status::Ok();
}

}  // namespace

uint8_t F32ToE2M1(float x) {
  const uint8_t sign = x < 0 ? 0x8 : 0x0;  // false for -0.0 and NaN, as in ModelOpt
  const float a = std::fabs(x);
  if (std::isnan(a)) return 0x7;
  // torch.searchsorted(bounds, a) with right=False: the number of bounds strictly below a, so a
  // value on a bound rounds down...
  uint8_t index = 0;
  while (index < 7 && kE2M1Bounds[index] < a) ++index;
  // ...except on the bounds whose upper neighbour has an even mantissa (1.0, 2.0, 4.0): together
  // this is round half to even.
  if (a == 0.75f || a == 1.75f || a == 3.5f) ++index;
  return sign | index;
}

float Nvfp4GlobalScale(float amax) { return amax / kNvfp4ScaleDenominator; }

StatusOr<Nvfp4Tensor> QuantizeNvfp4(const float* w, int64_t n, int64_t k) {
  MR_RETURN_IF_ERROR(CheckShape(n, k));
  float amax = 0.0f;
  for (int64_t i = 0; i < n * k; ++i) {
    if (!std::isfinite(w[i])) {
      return Error("NVFP4 quantization: non-finite value at row " + std::to_string(i / k) +
                   ", column " + std::to_string(i % k));
    }
    amax = std::max(amax, std::fabs(w[i]));
  }
  if (amax == 0.0f) {
    // ModelOpt divides 0 by 0 here; a zero tensor is better served by scale 1.0 and code 0.
    Nvfp4Tensor t;
    t.packed.assign(static_cast<size_t>(n * k / 2), 0);
    t.block_scale.assign(static_cast<size_t>(n * k / kNvfp4BlockSize), kE4M3One);
    t.global_scale = 0.0f;
    t.num_rows = n;
    t.num_cols = k;
    return t;
  }
  const float global_scale = Nvfp4GlobalScale(amax);
  if (!std::isnormal(global_scale)) {
    return Error("NVFP4 quantization: amax " + std::to_string(amax) +
                 " is too small for an f32 global scale (amax / 2688 < FLT_MIN)");
  }
  return QuantizeNvfp4WithGlobalScale(w, n, k, global_scale);
}

StatusOr<Nvfp4Tensor> QuantizeNvfp4WithGlobalScale(const float* w, int64_t n, int64_t k,
                                                   float global_scale) {
  MR_RETURN_IF_ERROR(CheckShape(n, k));
  if (!(global_scale > 0.0f) || !std::isfinite(global_scale)) {
    return Error("NVFP4 global scale must be finite and > 0, got " + std::to_string(global_scale));
  }
  Nvfp4Tensor t;
  t.num_rows = n;
  t.num_cols = k;
  t.global_scale = global_scale;
  t.packed.resize(static_cast<size_t>(n * k / 2));
  t.block_scale.resize(static_cast<size_t>(n * k / kNvfp4BlockSize));
  // ModelOpt computes `per_block_amax / (6.0 * weights_scaling_factor_2)`: the product is rounded
  // to f32 first, then the quotient. Keeping that exact order (and f32, not f64) is what makes the
  // bytes match.
  const float six_s2 = 6.0f * global_scale;
  uint8_t codes[kNvfp4BlockSize];
  for (int64_t b = 0; b < n * k / kNvfp4BlockSize; ++b) {
    const float* x = w + b * kNvfp4BlockSize;
    float block_amax = 0.0f;
    for (int i = 0; i < kNvfp4BlockSize; ++i) block_amax = std::max(block_amax, std::fabs(x[i]));
    float scale = block_amax / six_s2;
    if (scale == 0.0f) scale = 1.0f;
    const uint8_t scale_byte = F32ToFp8E4M3(scale);  // RNE; <= 448 unless global_scale is forced
    t.block_scale[static_cast<size_t>(b)] = scale_byte;
    // `input / (float(scale) * s2)`: one f32 product per block, then a true f32 division per
    // element (not a product with the reciprocal, which can move a quotient by one ulp, onto or
    // off a rounding bound).
    // A scale byte that rounded to 0 makes this ±Inf or NaN, which F32ToE2M1 encodes like torch.
    const float block_decode_scale = Fp8E4M3ToF32(scale_byte) * global_scale;
    for (int i = 0; i < kNvfp4BlockSize; ++i) codes[i] = F32ToE2M1(x[i] / block_decode_scale);
    uint8_t* out = t.packed.data() + b * (kNvfp4BlockSize / 2);
    for (int i = 0; i < kNvfp4BlockSize / 2; ++i) {
      out[i] = static_cast<uint8_t>(codes[2 * i] | (codes[2 * i + 1] << 4));
    }
  }
  return t;
}

void DequantizeNvfp4Row(const uint8_t* packed_row, const uint8_t* scale_row, float global_scale,
                        int64_t k, float* out) {
  CHECK(k % kNvfp4BlockSize == 0) << "K = " << k;
  for (int64_t b = 0; b < k / kNvfp4BlockSize; ++b) {
    // ModelOpt's dequantize: `per_block_scale = float(scale) * double_scale`, then one product.
    const float block_decode_scale = Fp8E4M3ToF32(scale_row[b]) * global_scale;
    DecodeE2M1Bytes(packed_row + b * (kNvfp4BlockSize / 2), kNvfp4BlockSize / 2, block_decode_scale,
                    out + b * kNvfp4BlockSize);
  }
}

std::vector<float> DequantizeNvfp4(const Nvfp4Tensor& t) {
  CHECK_EQ(t.packed.size(), static_cast<size_t>(t.num_rows * t.num_cols / 2));
  CHECK_EQ(t.block_scale.size(), static_cast<size_t>(t.num_rows * t.num_cols / kNvfp4BlockSize));
  std::vector<float> out(static_cast<size_t>(t.num_rows * t.num_cols));
  for (int64_t r = 0; r < t.num_rows; ++r) {
    DequantizeNvfp4Row(t.packed.data() + r * t.num_cols / 2,
                       t.block_scale.data() + r * t.num_cols / kNvfp4BlockSize, t.global_scale,
                       t.num_cols, out.data() + r * t.num_cols);
  }
  return out;
}

float Nvfp4Value(const Nvfp4Tensor& t, int64_t row, int64_t col) {
  CHECK(row >= 0 && row < t.num_rows && col >= 0 && col < t.num_cols)
      << "(" << row << ", " << col << ") outside [" << t.num_rows << ", " << t.num_cols << "]";
  const uint8_t byte = t.packed[static_cast<size_t>((row * t.num_cols + col) / 2)];
  const uint8_t code = col % 2 == 0 ? byte & 0xf : byte >> 4;
  const uint8_t scale =
      t.block_scale[static_cast<size_t>((row * t.num_cols + col) / kNvfp4BlockSize)];
  return kE2M1Values[code] * (Fp8E4M3ToF32(scale) * t.global_scale);
}

}  // namespace moerack
