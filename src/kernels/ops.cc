#include "kernels/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/ops.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/scratch.h"

HWY_BEFORE_NAMESPACE();
namespace moerack {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The sum of squares in four lane-wise chains over whole vectors, the chains
// added, the lanes reduced by SumOfLanes, then the tail in order: the order
// depends only on dim. y = (x * inv) * w, lane by lane as in the tail.
void RmsNormImpl(const float* x, int64_t x_stride, const float* w, float eps, int64_t rows,
                 int64_t dim, float* y, int64_t y_stride) {
  const hn::ScalableTag<float> df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 4 * L <= dim; i += 4 * L) {
      const auto v0 = hn::LoadU(df, xr + i), v1 = hn::LoadU(df, xr + i + L),
                 v2 = hn::LoadU(df, xr + i + 2 * L), v3 = hn::LoadU(df, xr + i + 3 * L);
      a0 = hn::MulAdd(v0, v0, a0);
      a1 = hn::MulAdd(v1, v1, a1);
      a2 = hn::MulAdd(v2, v2, a2);
      a3 = hn::MulAdd(v3, v3, a3);
    }
    for (; i + L <= dim; i += L) {
      const auto v = hn::LoadU(df, xr + i);
      a0 = hn::MulAdd(v, v, a0);
    }
    float ss = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
    for (; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    const auto vinv = hn::Set(df, inv);
    for (i = 0; i + L <= dim; i += L)
      hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, xr + i), vinv), hn::LoadU(df, w + i)), df, yr + i);
    for (; i < dim; ++i) yr[i] = xr[i] * inv * w[i];
  }
}

// silu(g) * u = g / (1 + exp(-g)) * u, every element through the same vector
// code (the tail padded), so a value does not depend on where a caller's range
// starts. exp's argument is capped at 88 (Highway's Exp is valid up to there):
// below g = -88 the result stays within 1e-37 of zero; a NaN g stays NaN.
void SiluMulImpl(float* gate, const float* up, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  const auto one = hn::Set(df, 1.0f), cap = hn::Set(df, 88.0f);
  auto silu_mul = [&](auto g, auto u) {
    return hn::Mul(hn::Div(g, hn::Add(one, hn::Exp(df, hn::Min(hn::Neg(g), cap)))), u);
  };
  int64_t i = 0;
  for (; i + L <= n; i += L)
    hn::StoreU(silu_mul(hn::LoadU(df, gate + i), hn::LoadU(df, up + i)), df, gate + i);
  if (i < n) {
    HWY_ALIGN float g[hn::MaxLanes(df)] = {}, u[hn::MaxLanes(df)] = {};
    std::copy(gate + i, gate + n, g);
    std::copy(up + i, up + n, u);
    hn::Store(silu_mul(hn::Load(df, g), hn::Load(df, u)), df, g);
    std::copy(g, g + (n - i), gate + i);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moerack
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moerack {

HWY_EXPORT(RmsNormImpl);
HWY_EXPORT(SiluMulImpl);

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
  const float* wf = w.dtype == DType::kF32 ? w.as<const float>() : nullptr;
  if (wf == nullptr) {  // converted into this thread's buffer (no allocation per call)
    thread_local ScratchVector<float> converted;
    float* buf = Scratch(converted, dim);
    LoadF32(w, 0, dim, buf);
    wf = buf;
  }
  HWY_DYNAMIC_DISPATCH(RmsNormImpl)(x, x_stride, wf, eps, rows, dim, y, y_stride);
}

void SiluMul(float* gate, const float* up, int64_t n) {
  if (n > 0) HWY_DYNAMIC_DISPATCH(SiluMulImpl)(gate, up, n);
}

}  // namespace moerack
#endif  // HWY_ONCE
