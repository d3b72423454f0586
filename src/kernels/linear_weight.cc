#include "kernels/linear_weight.h"

#include <cmath>

#include "quant/fp8.h"
#include "quant/mxfp4.h"
#include "quant/nvfp4.h"

namespace moerack {

const char* WeightFormatName(WeightFormat f) {
  switch (f) {
    case WeightFormat::kF32:
      return "f32";
    case WeightFormat::kBF16:
      return "bf16";
    case WeightFormat::kFp8:
      return "fp8";
    case WeightFormat::kNvfp4:
      return "nvfp4";
    case WeightFormat::kMxfp4:
      return "mxfp4";
  }
  return "?";
}

LinearWeight::LinearWeight(const TensorView& v) {
  if (v.empty()) return;
  CHECK(v.ndim == 2 && (v.dtype == DType::kF32 || v.dtype == DType::kBF16))
      << "a plain linear weight must be f32/bf16 2-D, got " << DTypeName(v.dtype) << " "
      << v.ShapeString();
  format = v.dtype == DType::kF32 ? WeightFormat::kF32 : WeightFormat::kBF16;
  rows = v.shape[0];
  cols = v.shape[1];
  data = v.data;
}

namespace {
int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
}  // namespace

int64_t LinearWeight::nbytes() const {
  switch (format) {
    case WeightFormat::kF32:
      return rows * cols * 4;
    case WeightFormat::kBF16:
      return rows * cols * 2;
    case WeightFormat::kFp8:
      return rows * cols + CeilDiv(rows, block_n) * CeilDiv(cols, block_k) * 4;
    case WeightFormat::kNvfp4:
      return rows * cols / 2 + rows * cols / kNvfp4BlockSize;
    case WeightFormat::kMxfp4:
      return rows * cols / 2 + rows * cols / kMxfp4BlockSize;
  }
  return 0;
}

double LinearWeight::row_bytes() const {
  return rows == 0 ? 0.0 : static_cast<double>(nbytes()) / static_cast<double>(rows);
}

LinearWeight LinearWeight::RowSlice(int64_t r0, int64_t r1) const {
  CHECK(0 <= r0 && r0 <= r1 && r1 <= rows) << "rows [" << r0 << ", " << r1 << ") of " << rows;
  LinearWeight s = *this;
  s.rows = r1 - r0;
  const auto* d = static_cast<const uint8_t*>(data);
  const auto* sc = static_cast<const uint8_t*>(scales);
  switch (format) {
    case WeightFormat::kF32:
      s.data = d + r0 * cols * 4;
      break;
    case WeightFormat::kBF16:
      s.data = d + r0 * cols * 2;
      break;
    case WeightFormat::kFp8:
      CHECK_EQ(r0 % block_n, 0) << "fp8 row slice must start on a scale block";
      s.data = d + r0 * cols;
      s.scales = sc + (r0 / block_n) * CeilDiv(cols, block_k) * 4;
      break;
    case WeightFormat::kNvfp4:
      s.data = d + r0 * cols / 2;
      s.scales = sc + r0 * cols / kNvfp4BlockSize;
      break;
    case WeightFormat::kMxfp4:
      s.data = d + r0 * cols / 2;
      s.scales = sc + r0 * cols / kMxfp4BlockSize;
      break;
  }
  return s;
}

void LinearWeight::TouchPages() const {
  const auto* d = static_cast<const uint8_t*>(data);
  const int64_t data_bytes = format == WeightFormat::kF32    ? rows * cols * 4
                             : format == WeightFormat::kBF16 ? rows * cols * 2
                             : format == WeightFormat::kFp8  ? rows * cols
                                                             : rows * cols / 2;
  volatile uint8_t sink = 0;
  for (int64_t i = 0; i < data_bytes; i += 4096) sink = sink + d[i];
  const auto* s = static_cast<const uint8_t*>(scales);
  const int64_t scale_bytes = nbytes() - data_bytes;
  for (int64_t i = 0; s != nullptr && i < scale_bytes; i += 4096) sink = sink + s[i];
}

std::string LinearWeight::Describe() const {
  return std::string(WeightFormatName(format)) + " [" + std::to_string(rows) + ", " +
         std::to_string(cols) + "]";
}

void LinearWeight::DequantizeRange(int64_t n, int64_t k0, int64_t k1, float* out) const {
  CHECK(0 <= n && n < rows && 0 <= k0 && k0 <= k1 && k1 <= cols);
  const auto* d = static_cast<const uint8_t*>(data);
  const auto* sc = static_cast<const uint8_t*>(scales);
  switch (format) {
    case WeightFormat::kF32:
      for (int64_t k = k0; k < k1; ++k) out[k - k0] = reinterpret_cast<const float*>(d)[n * cols + k];
      return;
    case WeightFormat::kBF16:
      for (int64_t k = k0; k < k1; ++k)
        out[k - k0] = BF16ToF32(reinterpret_cast<const uint16_t*>(d)[n * cols + k]);
      return;
    case WeightFormat::kFp8: {
      const float* srow = reinterpret_cast<const float*>(sc) + (n / block_n) * CeilDiv(cols, block_k);
      for (int64_t k = k0; k < k1; ++k) out[k - k0] = Fp8E4M3ToF32(d[n * cols + k]) * srow[k / block_k];
      return;
    }
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4: {
      const bool nv = format == WeightFormat::kNvfp4;
      const int64_t block = nv ? kNvfp4BlockSize : kMxfp4BlockSize;
      const uint8_t* prow = d + n * cols / 2;
      const uint8_t* srow = sc + n * cols / block;
      for (int64_t k = k0; k < k1; ++k) {
        const uint8_t byte = prow[k / 2];
        const float e2m1 = kE2M1Values[(k & 1) ? byte >> 4 : byte & 0xf];
        float s;
        if (nv) {
          const float bs = Fp8E4M3ToF32(srow[k / block]);
          s = global_divides ? bs / global_scale : bs * global_scale;
        } else {
          s = E8M0ToF32(srow[k / block]);
        }
        out[k - k0] = e2m1 * s;
      }
      return;
    }
  }
}

std::vector<float> LinearWeight::Dequantize() const {
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t n = 0; n < rows; ++n) DequantizeRange(n, 0, cols, w.data() + n * cols);
  return w;
}

std::string ValidateLinearWeight(const LinearWeight& w) {
  if (w.data == nullptr || w.rows <= 0 || w.cols <= 0) return "empty weight";
  switch (w.format) {
    case WeightFormat::kF32:
    case WeightFormat::kBF16:
      return "";
    case WeightFormat::kFp8:
      if (w.scales == nullptr || w.block_n <= 0 || w.block_k <= 0) return "fp8 without scales";
      return "";
    case WeightFormat::kNvfp4:
      if (w.cols % kNvfp4BlockSize != 0) return "nvfp4 K must be a multiple of 16";
      if (w.scales == nullptr) return "nvfp4 without block scales";
      if (!(w.global_scale > 0) || !std::isfinite(w.global_scale))
        return "nvfp4 global scale must be finite and > 0";
      return "";
    case WeightFormat::kMxfp4:
      if (w.cols % kMxfp4BlockSize != 0) return "mxfp4 K must be a multiple of 32";
      if (w.scales == nullptr) return "mxfp4 without scales";
      return "";
  }
  return "unknown format";
}

}  // namespace moerack
