#include "quant/nvfp4.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "quant/fp8.h"

namespace moerack {
namespace {

TEST(Nvfp4Test, E2M1EncodesEveryTableValue) {
  for (int c = 0; c < 16; ++c) {
    const uint8_t expected = c == 0x8 ? 0x0 : static_cast<uint8_t>(c);  // -0.0 encodes as +0
    EXPECT_EQ(F32ToE2M1(kE2M1Values[c]), expected) << c;
  }
}

TEST(Nvfp4Test, E2M1RoundsHalfToEvenOnEveryBound) {
  struct Case {
    float x;
    uint8_t code;
  };
  const Case cases[] = {
      {0.25f, 0x0}, {0.75f, 0x2}, {1.25f, 0x2}, {1.75f, 0x4},  // ties go to the even mantissa
      {2.5f, 0x4},  {3.5f, 0x6},  {5.0f, 0x6},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(F32ToE2M1(c.x), c.code) << c.x;
    EXPECT_EQ(F32ToE2M1(-c.x), c.code | 0x8) << -c.x;
    // One ulp either side of the bound leaves the tie.
    const float below = std::nextafter(c.x, 0.0f), above = std::nextafter(c.x, 10.0f);
    const int lower = F32ToE2M1(below), upper = F32ToE2M1(above);
    EXPECT_EQ(upper, lower + 1) << c.x;
    EXPECT_TRUE(lower == c.code || upper == c.code) << c.x;
  }
}

TEST(Nvfp4Test, E2M1MidpointsOfIntervalsAndSaturation) {
  // Values strictly inside each rounding interval map to its table value.
  const float inside[] = {0.1f, 0.5f, 0.9f, 1.5f, 2.2f, 3.0f, 4.4f, 5.5f};
  const uint8_t codes[] = {0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(F32ToE2M1(inside[i]), codes[i]) << inside[i];
    EXPECT_EQ(F32ToE2M1(-inside[i]), codes[i] | 0x8) << -inside[i];
  }
  EXPECT_EQ(F32ToE2M1(6.0f), 0x7);
  EXPECT_EQ(F32ToE2M1(6.5f), 0x7);  // saturates, no Inf in E2M1
  EXPECT_EQ(F32ToE2M1(1e30f), 0x7);
  EXPECT_EQ(F32ToE2M1(-100.0f), 0xF);
  EXPECT_EQ(F32ToE2M1(std::numeric_limits<float>::infinity()), 0x7);
  EXPECT_EQ(F32ToE2M1(-std::numeric_limits<float>::infinity()), 0xF);
  // Sign from x < 0, as ModelOpt: -0.0 -> 0x0 but a negative value that rounds to 0 keeps its sign.
  EXPECT_EQ(F32ToE2M1(-0.0f), 0x0);
  EXPECT_EQ(F32ToE2M1(-0.1f), 0x8);
  EXPECT_EQ(F32ToE2M1(std::numeric_limits<float>::quiet_NaN()), 0x7);  // torch.searchsorted: last
}

TEST(Nvfp4Test, E2M1PicksANearestValueForRandomInputs) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-7.0f, 7.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = u(rng);
    const float q = kE2M1Values[F32ToE2M1(x)];
    const float clamped = std::clamp(x, -kE2M1Max, kE2M1Max);
    for (float v : kE2M1Values) EXPECT_LE(std::fabs(clamped - q), std::fabs(clamped - v)) << x;
  }
}

// formats.md §1.8: one block of a tensor whose amax is 26.88. The second block carries the amax.
TEST(Nvfp4Test, ReproducesWorkedExampleByteForByte) {
  std::vector<float> w = {0.3f, -1.2f, 2.5f, 4.1f, 0.0f,  0.05f, -0.75f, 1.0f,
                          3.3f, -2.2f, 0.6f, 1.9f, -4.4f, 0.15f, 2.9f,   0.9f};
  w.push_back(26.88f);
  w.resize(32, 0.0f);
  const StatusOr<Nvfp4Tensor> t = QuantizeNvfp4(w.data(), 1, 32);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->global_scale, 0.01f);  // 26.88f / 2688 rounds to exactly the float nearest 0.01
  ASSERT_EQ(t->block_scale.size(), 2u);
  EXPECT_EQ(t->block_scale[0], 0x69);  // E4M3(73.33) = 72
  // The doc flags 0.9 / 0.72 = 1.25 as a tie in float64 that might not be one in float32. It is
  // one: float(72) * 0.01f = 0.71999997f and 0.9f / 0.71999997f rounds to exactly 1.25f, so
  // ModelOpt's torch float32 code (re-run on CPU) rounds it to even, 1.0 (code 2), and the packed
  // bytes are the doc's. The same holds for -0.75f / 0.71999997f = -1.0416667f (not a tie).
  const float eff = Fp8E4M3ToF32(0x69) * 0.01f;
  EXPECT_EQ(0.9f / eff, 1.25f);
  const uint8_t expected[8] = {0xB1, 0x75, 0x00, 0x3A, 0xD6, 0x52, 0x0F, 0x26};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(t->packed[i], expected[i]) << i;
  // Block 1: 26.88 / (6 * 0.01) = 448 -> 0x7e, 26.88 / 4.48 = 6 -> code 7, zeros -> 0.
  EXPECT_EQ(t->block_scale[1], 0x7e);
  EXPECT_EQ(t->packed[8], 0x07);
  const float dequant[16] = {0.36f, -1.08f, 2.16f, 4.32f, 0.0f,   0.0f, -0.72f, 1.08f,
                             2.88f, -2.16f, 0.72f, 2.16f, -4.32f, 0.0f, 2.88f,  0.72f};
  const std::vector<float> out = DequantizeNvfp4(*t);
  for (int i = 0; i < 16; ++i) {
    EXPECT_NEAR(out[i], dequant[i], 1e-6f) << i;
    EXPECT_EQ(out[i], Nvfp4Value(*t, 0, i)) << i;
  }
  // compressed-tensors stores the reciprocal, 2688 / 26.88 = 100 (formats.md §1.8 says 268.8,
  // which is not 1 / 0.01).
  EXPECT_EQ(CompressedTensorsGlobalScaleFromNvfp4(t->global_scale), 100.0f);
  EXPECT_EQ(Nvfp4GlobalScaleFromCompressedTensors(0.5f), 2.0f);
}

TEST(Nvfp4Test, AllZeroBlockGetsScaleOneAndZeroCodes) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  std::vector<float> w(3 * 32);
  for (float& x : w) x = g(rng);
  std::fill(w.begin() + 32, w.begin() + 48, 0.0f);  // row 1, block 0
  w[40] = -0.0f;
  const StatusOr<Nvfp4Tensor> t = QuantizeNvfp4(w.data(), 3, 32);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->block_scale[2], 0x38);  // E4M3 1.0
  for (int i = 16; i < 24; ++i) EXPECT_EQ(t->packed[i], 0x00) << i;
  for (int c = 0; c < 16; ++c) EXPECT_EQ(Nvfp4Value(*t, 1, c), 0.0f);
}

TEST(Nvfp4Test, AllZeroTensorDecodesToZero) {
  std::vector<float> w(2 * 16, 0.0f);
  const StatusOr<Nvfp4Tensor> t = QuantizeNvfp4(w.data(), 2, 16);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->global_scale, 0.0f);
  for (float x : DequantizeNvfp4(*t)) EXPECT_EQ(x, 0.0f);
}

TEST(Nvfp4Test, RejectsBadShapesAndValues) {
  std::vector<float> w(64, 1.0f);
  EXPECT_FALSE(QuantizeNvfp4(w.data(), 1, 24).ok());  // K not a multiple of 16
  EXPECT_FALSE(QuantizeNvfp4(w.data(), 0, 16).ok());
  EXPECT_FALSE(QuantizeNvfp4WithGlobalScale(w.data(), 1, 16, 0.0f).ok());
  w[5] = std::numeric_limits<float>::quiet_NaN();
  const StatusOr<Nvfp4Tensor> t = QuantizeNvfp4(w.data(), 2, 32);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("column 5"), std::string::npos) << t.status().message();
}

// Each element decodes to a nearest point of its block's grid {±E2M1} * eff_scale, so its error is
// at most half the local step (or the overshoot past 6 * eff_scale, which E4M3 rounding of the
// block scale can cause).
TEST(Nvfp4Test, RoundTripOfRandomNormalsIsNearestOnTheBlockGrid) {
  std::mt19937 rng(2024);
  const int64_t shapes[][2] = {{7, 48}, {1, 16}, {13, 160}, {3, 32}};
  for (const auto& shape : shapes) {
    const int64_t n = shape[0], k = shape[1];
    std::normal_distribution<float> g(0.0f, 0.02f);
    std::vector<float> w(static_cast<size_t>(n * k));
    for (float& x : w) x = g(rng);
    w[static_cast<size_t>(n * k / 2)] *= 40.0f;  // an outlier: small blocks elsewhere
    const StatusOr<Nvfp4Tensor> t = QuantizeNvfp4(w.data(), n, k);
    ASSERT_TRUE(t.ok()) << t.status().message();
    float amax = 0.0f;
    for (float x : w) amax = std::max(amax, std::fabs(x));
    EXPECT_EQ(t->global_scale, amax / 2688.0f);
    const std::vector<float> out = DequantizeNvfp4(*t);
    for (int64_t i = 0; i < n * k; ++i) {
      const float eff = Fp8E4M3ToF32(t->block_scale[i / 16]) * t->global_scale;
      const float err = std::fabs(out[i] - w[i]);
      float best = std::numeric_limits<float>::infinity();
      for (float v : kE2M1Values) best = std::min(best, std::fabs(v * eff - w[i]));
      EXPECT_LE(err, best + 1e-6f * eff) << "n=" << n << " k=" << k << " i=" << i;
      const float a = std::fabs(w[i]) / eff;
      const float half_step = a <= 2.0f ? 0.25f : a <= 4.0f ? 0.5f : 1.0f;
      EXPECT_LE(err, std::max(half_step, a - kE2M1Max) * eff * (1 + 1e-6f)) << i;
    }
  }
}

TEST(Nvfp4Test, GivenGlobalScaleIsUsedAsIs) {
  std::mt19937 rng(8);
  std::normal_distribution<float> g;
  std::vector<float> w(2 * 32);
  for (float& x : w) x = g(rng);
  float amax = 0.0f;
  for (float x : w) amax = std::max(amax, std::fabs(x));
  // ModelOpt's CUDA path: amax * float(1 / 2688) instead of amax / 2688.
  const float cuda_s2 = amax * (1.0f / 2688.0f);
  const StatusOr<Nvfp4Tensor> t = QuantizeNvfp4WithGlobalScale(w.data(), 2, 32, cuda_s2);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->global_scale, cuda_s2);
  const StatusOr<Nvfp4Tensor> same = QuantizeNvfp4WithGlobalScale(w.data(), 2, 32, amax / 2688.0f);
  const StatusOr<Nvfp4Tensor> ref = QuantizeNvfp4(w.data(), 2, 32);
  ASSERT_TRUE(same.ok() && ref.ok());
  EXPECT_EQ(same->packed, ref->packed);
  EXPECT_EQ(same->block_scale, ref->block_scale);
}

}  // namespace
}  // namespace moerack
