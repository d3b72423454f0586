#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/npy.h"
#include "core/scratch.h"
#include "core/status.h"
#include "core/thread_pool.h"

namespace moerack {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2) return Error("odd: " + std::to_string(x));
  return x / 2;
}

Status Chain(int x, int* out) {
  MR_ASSIGN_OR_RETURN(int h, Half(x));
  MR_ASSIGN_OR_RETURN(*out, Half(h));
  return Status::Ok();
}

TEST(StatusTest, PropagatesErrorsWithMessage) {
  int out = 0;
  EXPECT_TRUE(Chain(8, &out).ok());
  EXPECT_EQ(out, 2);
  Status s = Chain(6, &out);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "odd: 3");
  EXPECT_EQ(s.WithContext("file.json").message(), "file.json: odd: 3");
}

TEST(DTypeTest, Bf16RoundTripAndRounding) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-100, 100);
  for (int i = 0; i < 1000; ++i) {
    const float x = u(rng);
    const float y = BF16ToF32(F32ToBF16(x));
    EXPECT_LE(std::fabs(x - y), std::fabs(x) * (1.0f / 256));
    EXPECT_EQ(F32ToBF16(y), F32ToBF16(x));  // idempotent
  }
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: round to even (1.0).
  EXPECT_EQ(BF16ToF32(F32ToBF16(1.0f + 0x1.0p-8f)), 1.0f);
  EXPECT_EQ(BF16ToF32(F32ToBF16(1.0f + 0x1.8p-8f)), 1.0f + 0x1.0p-7f);
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(NAN))));
}

TEST(DTypeTest, F16RoundTrip) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(F32ToF16(f), h) << h;
  }
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F32ToF16(1e6f), 0x7c00);  // overflow to inf
}

TEST(DTypeTest, SafetensorsNames) {
  EXPECT_EQ(DTypeFromSafetensors("BF16"), DType::kBF16);
  EXPECT_EQ(DTypeFromSafetensors("F8_E4M3"), DType::kFP8E4M3);
  EXPECT_FALSE(DTypeFromSafetensors("Q4_K").has_value());
}

TEST(ThreadPoolTest, RunsEveryTaskOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int rep = 0; rep < 50; ++rep) {
      std::vector<std::atomic<int>> hits(97);
      pool.ParallelFor(97, [&](int64_t t, int thread) {
        EXPECT_LT(thread, threads);
        hits[t]++;
      });
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
    std::vector<int> covered(1000, 0);
    pool.ParallelRange(1000, 7, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) covered[i]++;
    });
    for (int c : covered) EXPECT_EQ(c, 1);
  }
}

TEST(ScratchTest, StartsOnACacheLineGrowsAndNeverShrinks) {
  ScratchVector<float> v;
  for (int64_t n : {1, 3, 17, 1000, 5, 4099, 100000}) {
    float* p = Scratch(v, n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kCacheLine, 0u) << n;
    EXPECT_GE(v.size(), static_cast<size_t>(n));
    p[n - 1] = 1.0f;  // writable to the last element asked for
  }
  const float* big = v.data();
  EXPECT_EQ(Scratch(v, 10), big);  // smaller requests keep the buffer
  EXPECT_EQ(v.size(), 100000u);
  ScratchVector<uint16_t> h;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(Scratch(h, 33)) % kCacheLine, 0u);
}

// From 1 MB a buffer takes whole 2 MB pages on a 2 MB boundary (advised onto
// huge pages); growing keeps the contents, as any vector does.
TEST(ScratchTest, LargeBuffersSitOnHugePageBoundaries) {
  ScratchVector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  for (size_t n : {size_t{100} << 10, size_t{700} << 10, size_t{3} << 20}) {  // floats
    v.resize(n);
    const auto at = reinterpret_cast<uintptr_t>(v.data());
    if (n * sizeof(float) >= kHugeScratchBytes) {
      EXPECT_EQ(at % (size_t{2} << 20), 0u) << n;
    } else {
      EXPECT_EQ(at % kCacheLine, 0u) << n;
    }
    v[n - 1] = 1.0f;
    for (size_t i = 0; i < 1000; ++i) ASSERT_EQ(v[i], static_cast<float>(i)) << n;
  }
  ScratchVector<uint8_t> bytes(size_t{5} << 20, 7);  // an explicit value still fills
  EXPECT_EQ(bytes[0], 7);
  EXPECT_EQ(bytes.back(), 7);
}

TEST(NpyTest, RoundTrip) {
  std::vector<float> data = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  const std::string path = ::testing::TempDir() + "/a.npy";
  ASSERT_TRUE(WriteNpyF32(path, data.data(), {2, 3}).ok());
  auto arr = ReadNpyF32(path);
  ASSERT_TRUE(arr.ok()) << arr.status().message();
  EXPECT_EQ(arr->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(arr->data, data);
}

}  // namespace
}  // namespace moerack

namespace moerack {
namespace {

// A resident file of several huge pages is a byte-exact copy (on 2 MB-aligned
// huge pages when the kernel offers them) or a map advised onto huge pages; a
// lazy one is a plain map. All read the same bytes.
TEST(MappedFileTest, ResidentCopyAndLazyMapReadTheSameBytes) {
  const std::string path = testing::TempDir() + "/mapped_file_test.bin";
  std::string bytes(5 * (size_t{1} << 20) + 12345, '\0');
  uint32_t state = 12345;
  for (char& c : bytes) {
    state = state * 1664525u + 1013904223u;
    c = static_cast<char>(state >> 24);
  }
  ASSERT_TRUE(WriteStringToFile(path, bytes).ok());
  auto resident = MappedFile::Open(path, MappedFile::Mode::kHugePageCopy);
  auto lazy = MappedFile::Open(path, MappedFile::Mode::kLazy);
  auto map = MappedFile::Open(path, MappedFile::Mode::kHugePageMap);
  ASSERT_TRUE(resident.ok() && lazy.ok() && map.ok());
  // The huge-page map: the file's bytes at a 2 MB boundary, never writable (on
  // 2 MB pages or not, as the kernel and filesystem allow).
  ASSERT_EQ((*map)->size(), bytes.size());
  EXPECT_EQ(std::memcmp((*map)->data(), bytes.data(), bytes.size()), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*map)->data()) % (size_t{2} << 20), 0u);
  EXPECT_EQ((*map)->writable_copy(), nullptr);
  ASSERT_EQ((*resident)->size(), bytes.size());
  ASSERT_EQ((*lazy)->size(), bytes.size());
  EXPECT_EQ(std::memcmp((*resident)->data(), bytes.data(), bytes.size()), 0);
  EXPECT_EQ(std::memcmp((*lazy)->data(), bytes.data(), bytes.size()), 0);
  EXPECT_FALSE((*lazy)->huge_pages());
  if ((*resident)->huge_pages()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>((*resident)->data()) % (size_t{2} << 20), 0u);
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace moerack
