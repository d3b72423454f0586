#include "quant/fp8.h"

#include <gtest/gtest.h>

#include <bit>

#include <cmath>
#include <random>

namespace moerack {
namespace {

TEST(Fp8Test, DecodesKnownCodes) {
  EXPECT_EQ(Fp8E4M3ToF32(0x00), 0.0f);
  EXPECT_EQ(Fp8E4M3ToF32(0x38), 1.0f);    // E=7, M=0
  EXPECT_EQ(Fp8E4M3ToF32(0x7e), 448.0f);  // max finite
  EXPECT_EQ(Fp8E4M3ToF32(0xfe), -448.0f);
  EXPECT_EQ(Fp8E4M3ToF32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(Fp8E4M3ToF32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_TRUE(std::isnan(Fp8E4M3ToF32(0x7f)));
  EXPECT_TRUE(std::isnan(Fp8E4M3ToF32(0xff)));
}

TEST(Fp8Test, EncodeIsInverseOnEveryCodeAndRoundsToNearestEven) {
  for (int c = 0; c < 256; ++c) {
    if (c == 0x7f || c == 0xff) continue;
    const float v = Fp8E4M3ToF32(static_cast<uint8_t>(c));
    if (c == 0x80) {
      EXPECT_EQ(F32ToFp8E4M3(v), 0x80);  // -0
      continue;
    }
    EXPECT_EQ(F32ToFp8E4M3(v), c) << c;
  }
  EXPECT_EQ(F32ToFp8E4M3(1000.0f), 0x7e);  // saturates
  EXPECT_EQ(F32ToFp8E4M3(-1e9f), 0xfe);
  EXPECT_EQ(F32ToFp8E4M3(1.0625f), 0x38);                // halfway 1 and 1.125: to even (1.0)
  EXPECT_EQ(F32ToFp8E4M3(1.1875f), 0x3a);                // halfway 1.125 and 1.25: to even (1.25)
  EXPECT_EQ(F32ToFp8E4M3(std::ldexp(1.0f, -10)), 0x00);  // half the smallest subnormal: to even (0)
  EXPECT_EQ(F32ToFp8E4M3(std::ldexp(3.0f, -10)), 0x02);  // 1.5 subnormal steps: to even (2)
  // Nearest for random values: no representable value is closer.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-500, 500);
  for (int i = 0; i < 2000; ++i) {
    const float x = u(rng) * (i % 2 ? 1.0f : 0.01f);
    const float q = Fp8E4M3ToF32(F32ToFp8E4M3(x));
    for (int c = 0; c < 256; ++c) {
      const float v = Fp8E4M3ToF32(static_cast<uint8_t>(c));
      if (!std::isnan(v) && std::fabs(x) <= 448) {
        ASSERT_LE(std::fabs(x - q), std::fabs(x - v)) << x;
      }
    }
  }
}

TEST(Fp8Test, BlockRoundTripWithinOneStep) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0, 1);
  const int64_t n = 130, k = 260;  // edge blocks on both axes
  std::vector<float> w(n * k);
  for (auto& x : w) x = g(rng);
  std::vector<uint8_t> q;
  std::vector<float> s;
  QuantizeBlockFp8(w.data(), n, k, 128, &q, &s);
  ASSERT_EQ(s.size(), 2u * 3u);
  TensorView qv(q.data(), DType::kFP8E4M3, {n, k}), sv(s.data(), DType::kF32, {2, 3});
  auto d = DequantizeBlockFp8(qv, sv);
  ASSERT_TRUE(d.ok()) << d.status().message();
  for (int64_t i = 0; i < n * k; ++i) {
    const float scale = s[(i / k / 128) * 3 + (i % k) / 128];
    EXPECT_LE(std::fabs((*d)[i] - w[i]), scale * 448.0f / 16)
        << i;  // half a step at the top binade
  }
  TensorView bad(s.data(), DType::kF32, {3, 2});
  EXPECT_FALSE(DequantizeBlockFp8(qv, bad).ok());
}

// The bit-manipulation encoder equals the arithmetic definition everywhere:
// every f32 whose low 13 mantissa bits are 0 (all binades, ties included) and
// fresh random bit patterns.
TEST(Fp8Test, FastEncoderEqualsReferenceEverywhere) {
  for (uint32_t hi = 0; hi < (1u << 19); ++hi) {
    const float f = std::bit_cast<float>(hi << 13);
    ASSERT_EQ(F32ToFp8E4M3(f), F32ToFp8E4M3Reference(f)) << f << " bits " << (hi << 13);
  }
  std::mt19937 rng(123);
  for (int i = 0; i < 2000000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToFp8E4M3(f), F32ToFp8E4M3Reference(f)) << f;
  }
}

}  // namespace
}  // namespace moerack
