#include "kernels/exp.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/exp.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <limits>

HWY_BEFORE_NAMESPACE();
namespace moerack {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

double ScaledExpSumImpl(const float* x, int64_t n, float shift, float scale, float* out) {
  const hn::ScalableTag<float> df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  const auto vs = hn::Set(df, shift), vm = hn::Set(df, scale);
  HWY_ALIGN float lanes[hn::MaxLanes(df)];
  double total = 0;
  int64_t i = 0;
  while (i + L <= n) {  // blocks of up to 32 vectors summed in f32 lanes, then in double
    auto sum = hn::Zero(df);
    for (int v = 0; v < 32 && i + L <= n; ++v, i += L) {
      const auto e = hn::Exp(df, hn::Mul(hn::Sub(hn::LoadU(df, x + i), vs), vm));
      hn::StoreU(e, df, out + i);
      sum = hn::Add(sum, e);
    }
    hn::Store(sum, df, lanes);
    for (int64_t j = 0; j < L; ++j) total += lanes[j];
  }
  if (i < n) {  // the tail through one vector, padded with exp(0)s left out of the sum
    HWY_ALIGN float in[hn::MaxLanes(df)];
    for (int64_t j = 0; j < L; ++j) in[j] = i + j < n ? x[i + j] : shift;
    hn::Store(hn::Exp(df, hn::Mul(hn::Sub(hn::Load(df, in), vs), vm)), df, lanes);
    for (int64_t j = 0; i + j < n; ++j) total += out[i + j] = lanes[j];
  }
  return total;
}

void SoftmaxImpl(float* x, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  auto vmax = hn::Set(df, -INFINITY);
  auto nan = hn::Zero(df);  // lanes that met a NaN (Max and Exp would drop it)
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const auto v = hn::LoadU(df, x + i);
    vmax = hn::Max(vmax, v);
    nan = hn::Or(nan, hn::VecFromMask(df, hn::IsNaN(v)));
  }
  float mx = hn::GetLane(hn::MaxOfLanes(df, vmax));
  bool any_nan = !hn::AllFalse(df, hn::MaskFromVec(nan));
  for (; i < n; ++i) {
    mx = std::max(mx, x[i]);
    any_nan |= std::isnan(x[i]);
  }
  if (any_nan) {  // a NaN input makes every output NaN, as a scalar softmax would
    std::fill_n(x, n, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  const auto inv = hn::Set(df, static_cast<float>(1.0 / ScaledExpSumImpl(x, n, mx, 1.0f, x)));
  for (i = 0; i + L <= n; i += L) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), inv), df, x + i);
  for (; i < n; ++i) x[i] *= hn::GetLane(inv);
}

}  // namespace HWY_NAMESPACE
}  // namespace moerack
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moerack {
HWY_EXPORT(ScaledExpSumImpl);
HWY_EXPORT(SoftmaxImpl);
double ScaledExpSum(const float* x, int64_t n, float shift, float scale, float* out) {
  return HWY_DYNAMIC_DISPATCH(ScaledExpSumImpl)(x, n, shift, scale, out);
}
void Softmax(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(SoftmaxImpl)(x, n); }
}  // namespace moerack
#endif
