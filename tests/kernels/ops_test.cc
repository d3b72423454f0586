#include "kernels/ops.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace moerack {
namespace {

std::vector<float> Random(int64_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

// Against double-precision references on fresh random inputs at odd sizes;
// bf16 and f32 weights.
void CheckRmsNorm() {
  std::mt19937 rng(5);
  for (int64_t dim : {1, 7, 16, 100, 128, 2049}) {
    const int64_t rows = 3, stride = dim + 5;
    const std::vector<float> x = Random(rows * stride, rng, -3.0f, 3.0f);
    const std::vector<float> wf = Random(dim, rng, 0.5f, 1.5f);
    std::vector<uint16_t> wb(static_cast<size_t>(dim));
    for (int64_t i = 0; i < dim; ++i) wb[i] = F32ToBF16(wf[i]);
    for (const bool bf16 : {false, true}) {
      const TensorView w = bf16 ? TensorView(wb.data(), DType::kBF16, {dim})
                                : TensorView(const_cast<float*>(wf.data()), DType::kF32, {dim});
      std::vector<float> y(static_cast<size_t>(rows * dim));
      RmsNorm(x.data(), stride, w, 1e-6f, rows, dim, y.data(), dim);
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < dim; ++i) ss += double{x[r * stride + i]} * x[r * stride + i];
        const double inv = 1.0 / std::sqrt(ss / dim + 1e-6);
        for (int64_t i = 0; i < dim; ++i) {
          const double wi = bf16 ? BF16ToF32(wb[i]) : wf[i];
          const double want = x[r * stride + i] * inv * wi;
          EXPECT_NEAR(y[r * dim + i], want, 2e-6 * std::max(1.0, std::fabs(want)))
              << "dim " << dim << " row " << r << " i " << i << (bf16 ? " bf16" : " f32");
        }
      }
    }
  }
}

void CheckSiluMul() {
  std::mt19937 rng(6);
  for (int64_t n : {1, 5, 16, 17, 1000, 6147}) {
    std::vector<float> g = Random(n, rng, -20.0f, 20.0f);
    const std::vector<float> u = Random(n, rng, -2.0f, 2.0f), g0 = g;
    SiluMul(g.data(), u.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double want = g0[i] / (1.0 + std::exp(-double{g0[i]})) * u[i];
      EXPECT_NEAR(g[i], want, 1e-6 * std::max(1.0, std::fabs(want))) << "n " << n << " i " << i;
    }
  }
}

TEST(OpsTest, RmsNormMatchesDoubleReference) { CheckRmsNorm(); }
TEST(OpsTest, SiluMulMatchesDoubleReference) { CheckSiluMul(); }

TEST(OpsTest, EveryCompiledTargetMatchesReference) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    CheckRmsNorm();
    CheckSiluMul();
  }
  hwy::SetSupportedTargetsForTest(0);
}

// A value does not depend on where the caller's range starts or ends (the
// expert FFN splits its rows across threads): every element equals the same
// element computed in one call.
TEST(OpsTest, SiluMulDoesNotDependOnTheSplit) {
  std::mt19937 rng(7);
  const int64_t n = 1003;
  const std::vector<float> g0 = Random(n, rng, -10.0f, 10.0f), u = Random(n, rng, -2.0f, 2.0f);
  std::vector<float> whole = g0;
  SiluMul(whole.data(), u.data(), n);
  for (int64_t split : {1, 3, 17, 500}) {
    std::vector<float> parts = g0;
    for (int64_t i = 0; i < n; i += split)
      SiluMul(parts.data() + i, u.data() + i, std::min(split, n - i));
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(parts[i], whole[i]) << "split " << split << " i " << i;
  }
}

TEST(OpsTest, SiluMulExtremes) {
  std::vector<float> g = {-1000.0f, -89.0f, 1000.0f, 0.0f, std::numeric_limits<float>::quiet_NaN()};
  const std::vector<float> u(g.size(), 1.5f);
  SiluMul(g.data(), u.data(), static_cast<int64_t>(g.size()));
  EXPECT_NEAR(g[0], 0.0f, 1e-30f);
  EXPECT_NEAR(g[1], 0.0f, 1e-30f);
  EXPECT_EQ(g[2], 1500.0f);
  EXPECT_EQ(g[3], 0.0f);
  EXPECT_TRUE(std::isnan(g[4]));
}

}  // namespace
}  // namespace moerack
