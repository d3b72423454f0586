#include "engine/kv_cache.h"

#include <gtest/gtest.h>

#include <random>

#include "quant/fp8.h"

namespace moerack {
namespace {

TEST(KvCacheTest, StoreLoadRoundTripsF32ExactlyAndFp8ToNearestCode) {
  std::mt19937 rng(4);
  std::normal_distribution<float> g(0, 3);
  const std::vector<int32_t> table = {2, 0, 1};  // a scrambled block table
  for (DType dtype : {DType::kF32, DType::kFP8E4M3}) {
    const float scale = dtype == DType::kF32 ? 1.0f : 0.5f;
    KvCache cache(2, 3, 4, 10, dtype);
    const KvCacheView v = cache.view();
    std::vector<std::vector<float>> written;
    for (int64_t pos = 0; pos < 12; ++pos) {
      std::vector<float> row(10);
      for (float& x : row) x = g(rng);
      v.Store(1, table, pos, 0, row.data(), 10, scale);
      written.push_back(row);
    }
    std::vector<float> scratch(10);
    for (int64_t pos = 0; pos < 12; ++pos) {
      const float* got = v.Load(1, table, pos, 3, 7, scratch.data(), scale);
      for (int i = 0; i < 7; ++i) {
        const float x = written[pos][3 + i];
        const float want = dtype == DType::kF32 ? x : Fp8E4M3ToF32(F32ToFp8E4M3(x / scale)) * scale;
        EXPECT_EQ(got[i], want) << DTypeName(dtype) << " pos " << pos << " i " << i;
      }
    }
  }
  EXPECT_EQ(*ParseKvDType("fp8"), DType::kFP8E4M3);
  EXPECT_FALSE(ParseKvDType("int4").ok());
}

}  // namespace
}  // namespace moerack
