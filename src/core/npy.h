// NumPy .npy read/write for float32 arrays (logits dumps and golden files).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace moerack {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // row-major
};

Status WriteNpyF32(const std::string& path, const float* data, const std::vector<int64_t>& shape);
// Reads a little-endian float32 C-order array ('<f4').
StatusOr<NpyArray> ReadNpyF32(const std::string& path);

}  // namespace moerack
