#include "quant/mxfp4.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace moerack {
namespace {

// floor(log2(6)) for E2M1: the scale maps amax into [4, 8) element units.
constexpr int kE2M1MaxExponent = 2;

}  // namespace

float E8M0ToF32(uint8_t e) {
  if (e == kE8M0NaN) return NAN;
  return std::ldexp(1.0f, static_cast<int>(e) - kE8M0Bias);
}

uint8_t Mxfp4ScaleFloor(float amax) {
  if (!std::isfinite(amax)) return kE8M0NaN;
  // ilogb is floor(log2) exactly, subnormals included; log2f could round up just below a power
  // of two. Zero takes the clamp to the smallest scale.
  const int floor_log2 = amax > 0.0f ? std::ilogb(amax) : -kE8M0Bias - kE2M1MaxExponent;
  const int unbiased = std::clamp(floor_log2 - kE2M1MaxExponent, -kE8M0Bias, kE8M0Bias);
  return static_cast<uint8_t>(unbiased + kE8M0Bias);
}

StatusOr<Mxfp4Tensor> QuantizeMxfp4(const float* w, int64_t n, int64_t k) {
  if (n < 1) return Error("MXFP4 quantization needs at least one row, got " + std::to_string(n));
  if (k < kMxfp4BlockSize || k % kMxfp4BlockSize != 0) {
    return Error("MXFP4 needs K to be a positive multiple of " + std::to_string(kMxfp4BlockSize) +
                 ", got K = " + std::to_string(k));
  }
  Mxfp4Tensor t;
  t.num_rows = n;
  t.num_cols = k;
  const int64_t num_blocks = n * k / kMxfp4BlockSize;
  t.blocks.resize(static_cast<size_t>(num_blocks * kMxfp4BlockBytes));
  t.scales.resize(static_cast<size_t>(num_blocks));
  for (int64_t b = 0; b < num_blocks; ++b) {
    const float* x = w + b * kMxfp4BlockSize;
    float amax = 0.0f;
    for (int i = 0; i < kMxfp4BlockSize; ++i) {
      if (!std::isfinite(x[i])) {
        const int64_t index = b * kMxfp4BlockSize + i;
        return Error("MXFP4 quantization: non-finite value at row " + std::to_string(index / k) +
                     ", column " + std::to_string(index % k));
      }
      amax = std::max(amax, std::fabs(x[i]));
    }
    const uint8_t scale_byte = Mxfp4ScaleFloor(amax);
    t.scales[static_cast<size_t>(b)] = scale_byte;
    // Dividing by a power of two is exact unless the quotient is subnormal, and such quotients
    // are far below 0.25, so they encode as 0 either way.
    const float scale = E8M0ToF32(scale_byte);
    uint8_t* out = t.blocks.data() + b * kMxfp4BlockBytes;
    for (int i = 0; i < kMxfp4BlockBytes; ++i) {
      out[i] = static_cast<uint8_t>(F32ToE2M1(x[2 * i] / scale) |
                                    (F32ToE2M1(x[2 * i + 1] / scale) << 4));
    }
  }
  return t;
}

void DequantizeMxfp4Row(const uint8_t* blocks_row, const uint8_t* scales_row, int64_t k,
                        float* out) {
  CHECK(k % kMxfp4BlockSize == 0) << "K = " << k;
  for (int64_t b = 0; b < k / kMxfp4BlockSize; ++b) {
    DecodeE2M1Bytes(blocks_row + b * kMxfp4BlockBytes, kMxfp4BlockBytes, E8M0ToF32(scales_row[b]),
                    out + b * kMxfp4BlockSize);
  }
}

std::vector<float> DequantizeMxfp4(const Mxfp4Tensor& t) {
  CHECK_EQ(t.blocks.size(), static_cast<size_t>(t.num_rows * t.num_cols / 2));
  CHECK_EQ(t.scales.size(), static_cast<size_t>(t.num_rows * t.num_cols / kMxfp4BlockSize));
  std::vector<float> out(static_cast<size_t>(t.num_rows * t.num_cols));
  for (int64_t r = 0; r < t.num_rows; ++r) {
    DequantizeMxfp4Row(t.blocks.data() + r * t.num_cols / 2,
                       t.scales.data() + r * t.num_cols / kMxfp4BlockSize, t.num_cols,
                       out.data() + r * t.num_cols);
  }
  return out;
}

float Mxfp4Value(const Mxfp4Tensor& t, int64_t row, int64_t col) {
  CHECK(row >= 0 && row < t.num_rows && col >= 0 && col < t.num_cols)
      << "(" << row << ", " << col << ") outside [" << t.num_rows << ", " << t.num_cols << "]";
  const int64_t index = row * t.num_cols + col;
  const uint8_t byte = t.blocks[static_cast<size_t>(index / 2)];
  const uint8_t code = col % 2 == 0 ? byte & 0xf : byte >> 4;
  return kE2M1Values[code] * E8M0ToF32(t.scales[static_cast<size_t>(index / kMxfp4BlockSize)]);
}

}  // namespace moerack
