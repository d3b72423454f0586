#include "quant/mxfp4.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace moerack {
namespace {

TEST(Mxfp4Test, E8M0DecodesEdges) {
  EXPECT_EQ(E8M0ToF32(127), 1.0f);
  EXPECT_EQ(E8M0ToF32(128), 2.0f);
  EXPECT_EQ(E8M0ToF32(126), 0.5f);
  EXPECT_EQ(E8M0ToF32(0), std::ldexp(1.0f, -127));  // smallest, an f32 subnormal; no zero
  EXPECT_GT(E8M0ToF32(0), 0.0f);
  EXPECT_EQ(E8M0ToF32(254), std::ldexp(1.0f, 127));  // largest
  EXPECT_TRUE(std::isnan(E8M0ToF32(255)));
}

TEST(Mxfp4Test, FloorScaleRule) {
  EXPECT_EQ(Mxfp4ScaleFloor(4.4f), 127);  // floor(log2 4.4) - 2 = 0
  EXPECT_EQ(Mxfp4ScaleFloor(4.0f), 127);
  EXPECT_EQ(Mxfp4ScaleFloor(std::nextafter(4.0f, 0.0f)), 126);  // just below a power of two
  EXPECT_EQ(Mxfp4ScaleFloor(7.99f), 127);
  EXPECT_EQ(Mxfp4ScaleFloor(8.0f), 128);
  EXPECT_EQ(Mxfp4ScaleFloor(1.0f), 125);
  EXPECT_EQ(Mxfp4ScaleFloor(0.0f), 0);    // all-zero block: the smallest scale
  EXPECT_EQ(Mxfp4ScaleFloor(1e-40f), 0);  // subnormal amax clamps to 2^-127
  EXPECT_EQ(Mxfp4ScaleFloor(std::numeric_limits<float>::max()), 127 + 125);
  EXPECT_EQ(Mxfp4ScaleFloor(std::numeric_limits<float>::infinity()), 255);
  EXPECT_EQ(Mxfp4ScaleFloor(std::numeric_limits<float>::quiet_NaN()), 255);
}

// formats.md §2.4: the §1.8 values plus 16 zeros as one 32-block.
TEST(Mxfp4Test, ReproducesWorkedExample) {
  std::vector<float> w = {0.3f, -1.2f, 2.5f, 4.1f, 0.0f,  0.05f, -0.75f, 1.0f,
                          3.3f, -2.2f, 0.6f, 1.9f, -4.4f, 0.15f, 2.9f,   0.9f};
  w.resize(32, 0.0f);
  const StatusOr<Mxfp4Tensor> t = QuantizeMxfp4(w.data(), 1, 32);
  ASSERT_TRUE(t.ok()) << t.status().message();
  ASSERT_EQ(t->scales.size(), 1u);
  EXPECT_EQ(t->scales[0], 127);
  const uint8_t expected[16] = {0xA1, 0x64, 0x00, 0x2A, 0xC5, 0x41, 0x0E, 0x25};  // then zeros
  for (int i = 0; i < 16; ++i) EXPECT_EQ(t->blocks[i], expected[i]) << i;
}

TEST(Mxfp4Test, ExactPowersOfTwoAndFloorOverflow) {
  std::vector<float> w(3 * 32, 0.0f);
  // Row 0: amax 48 -> scale 2^3; every E2M1 value times 8 is exact.
  for (int i = 0; i < 16; ++i) w[i] = kE2M1Values[i] * 8.0f;
  w[16] = 48.0f;
  // Row 1: amax 7 -> scale 1; values in (6, 8) clip to 6 (FLOOR overflow).
  w[32] = 7.0f;
  w[33] = -7.9f;
  w[34] = 6.5f;
  w[35] = 0.5f;
  // Row 2: tiny values, scale 2^-20 (amax 2^-18).
  w[64] = std::ldexp(1.0f, -18);
  w[65] = -std::ldexp(1.5f, -20);
  const StatusOr<Mxfp4Tensor> t = QuantizeMxfp4(w.data(), 3, 32);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->scales[0], 130);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(Mxfp4Value(*t, 0, i), kE2M1Values[i] * 8.0f) << i;
  EXPECT_EQ(Mxfp4Value(*t, 0, 16), 48.0f);
  EXPECT_EQ(t->scales[1], 127);
  EXPECT_EQ(Mxfp4Value(*t, 1, 0), 6.0f);
  EXPECT_EQ(Mxfp4Value(*t, 1, 1), -6.0f);
  EXPECT_EQ(Mxfp4Value(*t, 1, 2), 6.0f);
  EXPECT_EQ(Mxfp4Value(*t, 1, 3), 0.5f);
  EXPECT_EQ(t->scales[2], 127 - 20);
  EXPECT_EQ(Mxfp4Value(*t, 2, 0), std::ldexp(1.0f, -18));
  EXPECT_EQ(Mxfp4Value(*t, 2, 1), -std::ldexp(1.5f, -20));
}

TEST(Mxfp4Test, AllZeroBlockAndBadInputs) {
  std::mt19937 rng(4);
  std::normal_distribution<float> g;
  std::vector<float> w(64);
  for (float& x : w) x = g(rng);
  std::fill(w.begin() + 32, w.end(), 0.0f);
  const StatusOr<Mxfp4Tensor> t = QuantizeMxfp4(w.data(), 1, 64);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->scales[1], 0);
  for (int i = 16; i < 32; ++i) EXPECT_EQ(t->blocks[i], 0) << i;
  for (int c = 32; c < 64; ++c) EXPECT_EQ(Mxfp4Value(*t, 0, c), 0.0f);

  EXPECT_FALSE(QuantizeMxfp4(w.data(), 1, 48).ok());  // K not a multiple of 32
  EXPECT_FALSE(QuantizeMxfp4(w.data(), 0, 32).ok());
  w[3] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(QuantizeMxfp4(w.data(), 1, 64).ok());
}

// Every element decodes to a nearest point of its block's grid {±E2M1} * 2^e, and within the
// block's range the error is at most half the local step.
TEST(Mxfp4Test, RoundTripOfRandomNormalsIsNearestOnTheBlockGrid) {
  std::mt19937 rng(77);
  const int64_t shapes[][2] = {{5, 96}, {1, 32}, {9, 64}};
  for (const auto& shape : shapes) {
    const int64_t n = shape[0], k = shape[1];
    std::normal_distribution<float> g(0.0f, 3.0f);
    std::vector<float> w(static_cast<size_t>(n * k));
    for (float& x : w) x = g(rng);
    const StatusOr<Mxfp4Tensor> t = QuantizeMxfp4(w.data(), n, k);
    ASSERT_TRUE(t.ok()) << t.status().message();
    const std::vector<float> out = DequantizeMxfp4(*t);
    for (int64_t i = 0; i < n * k; ++i) {
      const float scale = E8M0ToF32(t->scales[i / 32]);
      const float err = std::fabs(out[i] - w[i]);
      float best = std::numeric_limits<float>::infinity();
      for (float v : kE2M1Values) best = std::min(best, std::fabs(v * scale - w[i]));
      EXPECT_EQ(err, best) << "n=" << n << " k=" << k << " i=" << i;
      const float a = std::fabs(w[i]) / scale;
      const float half_step = a <= 2.0f ? 0.25f : a <= 4.0f ? 0.5f : 1.0f;
      EXPECT_LE(err, std::max(half_step, a - kE2M1Max) * scale) << i;
      EXPECT_EQ(out[i], Mxfp4Value(*t, i / k, i % k));
    }
  }
}

}  // namespace
}  // namespace moerack
