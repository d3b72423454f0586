#include "kernels/exp.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <random>
#include <vector>

namespace moerack {
namespace {

// Against std::exp on fresh random inputs, odd sizes (tails), the sum too.
void CheckAgainstStdExp() {
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> u(-30.0f, 10.0f);
  for (int64_t n : {1, 7, 16, 33, 1000, 32001}) {
    std::vector<float> x(static_cast<size_t>(n)), out(static_cast<size_t>(n), -1.0f);
    for (float& v : x) v = u(rng);
    const float shift = 9.5f, scale = 0.8f;
    const double sum = ScaledExpSum(x.data(), n, shift, scale, out.data());
    double want_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float want = std::exp((x[i] - shift) * scale);
      want_sum += want;
      EXPECT_NEAR(out[i], want, 2.5e-7f * want) << "n " << n << " i " << i;
    }
    EXPECT_NEAR(sum, want_sum, 1e-5 * want_sum) << "n " << n;
  }
}

TEST(ScaledExpSumTest, MatchesStdExpWithinTwoUlpAtOddSizes) { CheckAgainstStdExp(); }

// Every SIMD target compiled in, not only the best one here.
TEST(ScaledExpSumTest, EveryCompiledTargetMatchesStdExp) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    CheckAgainstStdExp();
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST(ScaledExpSumTest, NonFiniteAndFarBelowGiveZero) {
  const std::vector<float> x = {-INFINITY, NAN, -1000.0f, 0.0f};
  std::vector<float> out(4);
  const double sum = ScaledExpSum(x.data(), 4, 0.0f, 1.0f, out.data());
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[3], 1.0f);
  EXPECT_EQ(sum, 1.0);
}

}  // namespace
}  // namespace moerack
