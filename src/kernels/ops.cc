#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace moerack {

void LoadF32(const TensorView& t, int64_t offset, int64_t num, float* out) {
  switch (t.dtype) {
    case DType::kF32:
      std::copy_n(t.as<const float>() + offset, num, out);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < num; ++i) out[i] = BF16ToF32(t.as<const uint16_t>()[offset + i]);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < num; ++i) out[i] = F16ToF32(t.as<const uint16_t>()[offset + i]);
      return;
    default:
      CHECK(false) << "LoadF32: unsupported dtype " << DTypeName(t.dtype);
  }
}

void RmsNorm(const float* x, int64_t x_stride, const TensorView& w, float eps, int64_t rows,
             int64_t dim, float* y, int64_t y_stride) {
  CHECK_EQ(w.numel(), dim);
  std::vector<float> wf(static_cast<size_t>(dim));
  LoadF32(w, 0, dim, wf.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    float ss = 0.0f;
    for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * wf[i];
  }
}

void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace moerack
