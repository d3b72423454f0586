#include "quant/fp8.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>

namespace moerack {

float Fp8E4M3ToF32(uint8_t v) {
  const int sign = v >> 7, exp = (v >> 3) & 0xf, mant = v & 0x7;
  if (exp == 0xf && mant == 0x7) return NAN;
  const float mag = exp == 0 ? std::ldexp(static_cast<float>(mant), -9)  // 2^-6 * m/8
                             : std::ldexp(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
  return sign ? -mag : mag;
}

uint8_t F32ToFp8E4M3Reference(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  const float a = std::min(std::fabs(f), kFp8E4M3Max);
  // Spacing of representable values around `a`: 2^(e-3) in the binade
  // [2^e, 2^(e+1)), e >= -6; subnormals share the spacing 2^-9.
  int e = a > 0 ? std::ilogb(a) : -6;
  e = std::max(e, -6);
  const float step = std::ldexp(1.0f, e - 3);
  const float q = std::nearbyint(a / step) * step;  // ties to even under the default rounding mode
  // Re-encode q (exact in E4M3; rounding may have carried into the next binade).
  if (q == 0.0f) return sign;
  int qe = std::ilogb(q);
  if (qe < -6) return sign | static_cast<uint8_t>(q / std::ldexp(1.0f, -9));  // subnormal
  const int mant = static_cast<int>(std::ldexp(q, -qe) * 8.0f) - 8;
  return sign | static_cast<uint8_t>(((qe + 7) << 3) | mant);
}

uint8_t F32ToFp8E4M3(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return 0x7f;     // NaN
  if (abs_bits >= 0x43e00000u) return sign | 0x7e;  // >= 448 (and inf): saturate
  if (abs_bits < 0x3c800000u) {                // < 2^-6: subnormal steps of 2^-9
    // Adding 2^23 rounds a * 2^9 to an integer, ties to even (the default mode).
    const float a = std::bit_cast<float>(abs_bits) * 512.0f;
    const uint32_t m = static_cast<uint32_t>((a + 8388608.0f) - 8388608.0f);
    return sign | static_cast<uint8_t>(m);     // m == 8 is 2^-6, the first normal
  }
  // Normal: keep 3 of the 23 mantissa bits, rounding to nearest even; a carry
  // moves into the exponent, which the encoding absorbs.
  const uint32_t exp = (abs_bits >> 23) - 127 + 7;  // 1..15
  const uint32_t mant = abs_bits & 0x7fffffu;
  const uint32_t rounded = ((exp << 23) | mant) + 0x7ffffu + ((mant >> 20) & 1u);
  const uint32_t code = rounded >> 20;  // exponent (4 bits) and mantissa (3 bits)
  return sign | static_cast<uint8_t>(code > 0x7e ? 0x7e : code);
}

StatusOr<std::vector<float>> DequantizeBlockFp8(const TensorView& weight,
                                                const TensorView& scale_inv, int block_n,
                                                int block_k) {
  if (block_n <= 0 || block_k <= 0) return Error("FP8 block size must be > 0");
  if (weight.ndim != 2 || weight.dtype != DType::kFP8E4M3)
    return Error("weight is not F8_E4M3 2-D");
  const int64_t n = weight.shape[0], k = weight.shape[1];
  const int64_t nb = (n + block_n - 1) / block_n, kb = (k + block_k - 1) / block_k;
  if (scale_inv.dtype != DType::kF32 || scale_inv.ndim != 2 || scale_inv.shape[0] != nb ||
      scale_inv.shape[1] != kb) {
    return Error("weight_scale_inv must be F32 [" + std::to_string(nb) + ", " + std::to_string(kb) +
                 "] for a weight of " + weight.ShapeString() + ", got " +
                 std::string(DTypeName(scale_inv.dtype)) + " " + scale_inv.ShapeString());
  }
  std::vector<float> out(static_cast<size_t>(n * k));
  const auto* q = weight.as<const uint8_t>();
  const auto* s = scale_inv.as<const float>();
  float lut[256];
  for (int i = 0; i < 256; ++i) lut[i] = Fp8E4M3ToF32(static_cast<uint8_t>(i));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c)
      out[r * k + c] = lut[q[r * k + c]] * s[(r / block_n) * kb + c / block_k];
  }
  return out;
}

void QuantizeBlockFp8(const float* w, int64_t n, int64_t k, int block, std::vector<uint8_t>* q,
                      std::vector<float>* scale_inv) {
  const int64_t nb = (n + block - 1) / block, kb = (k + block - 1) / block;
  q->resize(static_cast<size_t>(n * k));
  scale_inv->assign(static_cast<size_t>(nb * kb), 1.0f);
  for (int64_t bi = 0; bi < nb; ++bi) {
    for (int64_t bj = 0; bj < kb; ++bj) {
      const int64_t r1 = std::min(n, (bi + 1) * block), c1 = std::min(k, (bj + 1) * block);
      float amax = 0;
      for (int64_t r = bi * block; r < r1; ++r)
        for (int64_t c = bj * block; c < c1; ++c) amax = std::max(amax, std::fabs(w[r * k + c]));
      const float scale = amax > 0 ? amax / kFp8E4M3Max : 1.0f;
      (*scale_inv)[bi * kb + bj] = scale;
      for (int64_t r = bi * block; r < r1; ++r)
        for (int64_t c = bj * block; c < c1; ++c)
          (*q)[r * k + c] = F32ToFp8E4M3(w[r * k + c] / scale);
    }
  }
}

}  // namespace moerack
