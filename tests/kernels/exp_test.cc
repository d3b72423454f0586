#include "kernels/exp.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>
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

// Softmax against a double-precision one on fresh random inputs at odd sizes;
// -inf entries give 0, any NaN makes the whole row NaN (as a scalar softmax).
TEST(SoftmaxTest, MatchesDoubleReferenceAndPropagatesNaN) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0, 4);
  for (int64_t n : {1, 5, 16, 37, 1000}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = g(rng);
    if (n > 2) x[1] = -INFINITY;
    std::vector<double> want(x.size());
    double mx = -1e300, z = 0;
    for (float v : x) mx = std::max(mx, double{v});
    for (size_t i = 0; i < x.size(); ++i) z += want[i] = std::exp(double{x[i]} - mx);
    std::vector<float> y = x;
    Softmax(y.data(), n);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], want[i] / z, 1e-6) << "n " << n;
    if (n > 2) {
      EXPECT_EQ(y[1], 0.0f);
    }
    for (size_t at : {size_t{0}, x.size() - 1}) {  // a NaN in a whole vector, and in the tail
      std::vector<float> w = x;
      w[at] = NAN;
      Softmax(w.data(), n);
      for (float v : w) EXPECT_TRUE(std::isnan(v)) << "n " << n << " NaN at " << at;
    }
  }
}

}  // namespace
}  // namespace moerack
