#include "core/dtype.h"

#include <cmath>

namespace moerack {

int DTypeBits(DType t) {
  switch (t) {
    case DType::kF32:
      return 32;
    case DType::kBF16:
      return 16;
    case DType::kF16:
      return 16;
    case DType::kFP8E4M3:
      return 8;
    case DType::kFP8E5M2:
    case DType::kFP8E8M0:
      return 8;
    case DType::kFP4E2M1:
      return 4;
    case DType::kU8:
      return 8;
    case DType::kI32:
      return 32;
    case DType::kI64:
      return 64;
  }
  return 0;
}

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kFP8E4M3:
      return "F8_E4M3";
    case DType::kFP8E5M2:
      return "F8_E5M2";
    case DType::kFP8E8M0:
      return "F8_E8M0";
    case DType::kFP4E2M1:
      return "F4";
    case DType::kU8:
      return "U8";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
  }
  return "?";
}

std::optional<DType> DTypeFromSafetensors(std::string_view name) {
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kFP8E4M3, DType::kFP8E5M2,
                  DType::kFP8E8M0, DType::kFP4E2M1, DType::kU8, DType::kI32, DType::kI64}) {
    if (DTypeName(t) == name) return t;
  }
  return std::nullopt;
}

float F16ToF32(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

uint16_t F32ToF16(float f) {
  // Via the hardware-independent path: scale into the half range and round to
  // nearest even using float arithmetic on the mantissa.
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00;
  if (a >= 65520.0f) return sign | 0x7c00;  // rounds to infinity
  if (a < std::ldexp(1.0f, -14)) {          // subnormal: multiples of 2^-24
    const float q = std::nearbyint(a * std::ldexp(1.0f, 24));
    return sign | static_cast<uint16_t>(q);
  }
  int e;
  std::frexp(a, &e);                                      // a = m * 2^e, m in [0.5, 1)
  const float q = std::nearbyint(std::ldexp(a, 11 - e));  // 11 significant bits
  uint32_t mant = static_cast<uint32_t>(q);
  int exp = e - 1 + 15;
  if (mant == 2048) {  // rounding carried into the next binade
    mant = 1024;
    ++exp;
  }
  if (exp >= 31) return sign | 0x7c00;
  return sign | static_cast<uint16_t>((exp << 10) | (mant & 0x3ff));
}

}  // namespace moerack
