// Element types of weights, activations and caches, with the conversions the
// engine needs on the hot path (bf16/f16 <-> f32). Quantized types (fp8, fp4)
// have their own codecs in quant/; here they are only named and sized.
// Thread-safety: pure functions.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace moerack {

enum class DType : uint8_t {
  kF32,
  kBF16,
  kF16,
  kFP8E4M3,
  kFP8E5M2,
  kFP8E8M0,  // MX scales: a biased power of two
  kFP4E2M1,
  kU8,
  kI32,
  kI64
};

// Bits per element (fp4 is 4; everything else whole bytes).
int DTypeBits(DType t);
// Name as in safetensors ("F32", "BF16", "F8_E4M3", ...).
std::string_view DTypeName(DType t);
// Parses a safetensors dtype string; nullopt when unknown or unsupported.
std::optional<DType> DTypeFromSafetensors(std::string_view name);

inline float BF16ToF32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t F32ToBF16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

}  // namespace moerack
