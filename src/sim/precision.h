// Precisions the simulator prices: weight/GEMM formats and KV-cache element
// types, with their storage cost.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace moerack::sim {

enum class Precision { kBf16, kFp8, kNvfp4 };

// Bytes per weight element including block scales: NVFP4 stores 4-bit codes
// plus one E4M3 scale per 16 elements; FP8's 128x128 block scales are
// negligible.
inline double BytesPerElement(Precision p) {
  switch (p) {
    case Precision::kBf16: return 2.0;
    case Precision::kFp8: return 1.0;
    case Precision::kNvfp4: return 0.5 + 1.0 / 16.0;
  }
  return 2.0;
}

inline const char* PrecisionName(Precision p) {
  switch (p) {
    case Precision::kBf16: return "bf16";
    case Precision::kFp8: return "fp8";
    case Precision::kNvfp4: return "nvfp4";
  }
  return "?";
}

inline StatusOr<Precision> ParsePrecision(std::string_view s, const std::string& what) {
  if (s == "bf16") return Precision::kBf16;
  if (s == "fp8") return Precision::kFp8;
  if (s == "nvfp4" || s == "fp4" || s == "mxfp4") return Precision::kNvfp4;
  return Error(what + ": unknown precision '" + std::string(s) + "' (bf16, fp8, nvfp4)");
}

// The wider of two precisions: Widest(nvfp4, fp8) = fp8 (the attention
// projections of an NVFP4 checkpoint stay FP8, as NVIDIA's DeepSeek-R1 NVFP4
// checkpoint keeps them).
inline Precision Widest(Precision a, Precision b) { return a < b ? a : b; }

}  // namespace moerack::sim
