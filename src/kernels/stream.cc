#include "kernels/stream.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/stream.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace moerack {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float StreamSumImpl(const float* data, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t L = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    a0 = hn::Add(a0, hn::LoadU(df, data + i));
    a1 = hn::Add(a1, hn::LoadU(df, data + i + L));
    a2 = hn::Add(a2, hn::LoadU(df, data + i + 2 * L));
    a3 = hn::Add(a3, hn::LoadU(df, data + i + 3 * L));
  }
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += data[i];
  return s;
}

}  // namespace HWY_NAMESPACE
}  // namespace moerack
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moerack {
HWY_EXPORT(StreamSumImpl);
float StreamSum(const float* data, size_t n) {
  return HWY_DYNAMIC_DISPATCH(StreamSumImpl)(data, n);
}
}  // namespace moerack
#endif
