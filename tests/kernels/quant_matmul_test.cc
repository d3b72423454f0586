// The matmul on packed weights (fp8 block / per-tensor / per-channel, NVFP4
// ModelOpt and compressed-tensors, MXFP4) against the scalar f64 reference
// over the dequantized values, on fresh random bytes and odd sizes, and the
// principle-2 bit-identity of a row alone and in a batch.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/expert_ffn.h"
#include "kernels/matmul.h"
#include "quant/fp8.h"
#include "quant/nvfp4.h"

namespace moerack {
namespace {

enum class Kind {
  kBf16,
  kFp8Block,
  kFp8Tensor,
  kFp8Channel,
  kFp8OddBlock,
  kFp8SmallBlock,
  kNvfp4,
  kNvfp4Ct,
  kMxfp4
};

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kBf16:
      return "Bf16";
    case Kind::kFp8Block:
      return "Fp8Block";
    case Kind::kFp8Tensor:
      return "Fp8Tensor";
    case Kind::kFp8Channel:
      return "Fp8Channel";
    case Kind::kFp8OddBlock:
      return "Fp8OddBlock";
    case Kind::kFp8SmallBlock:
      return "Fp8SmallBlock";
    case Kind::kNvfp4:
      return "Nvfp4";
    case Kind::kNvfp4Ct:
      return "Nvfp4CompressedTensors";
    case Kind::kMxfp4:
      return "Mxfp4";
  }
  return "?";
}

bool IsFp4(Kind k) { return k == Kind::kNvfp4 || k == Kind::kNvfp4Ct || k == Kind::kMxfp4; }
int64_t KMultiple(Kind k) { return k == Kind::kMxfp4 ? 32 : IsFp4(k) ? 16 : 1; }

// Owns the bytes behind a random LinearWeight of the given kind.
struct OwnedWeight {
  std::vector<uint8_t> data, scale_bytes;
  std::vector<float> scale_f32;
  LinearWeight w;
};

OwnedWeight RandomWeight(Kind kind, int64_t n, int64_t k, std::mt19937& rng) {
  OwnedWeight o;
  std::uniform_int_distribution<int> byte(0, 255);
  LinearWeight& w = o.w;
  w.rows = n;
  w.cols = k;
  if (kind == Kind::kBf16) {
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    o.data.resize(static_cast<size_t>(n * k * 2));
    for (int64_t i = 0; i < n * k; ++i) {
      const uint16_t b = F32ToBF16(u(rng));
      std::memcpy(o.data.data() + 2 * i, &b, 2);
    }
    w.format = WeightFormat::kBF16;
    w.data = o.data.data();
    return o;
  }
  if (!IsFp4(kind)) {
    w.format = WeightFormat::kFp8;
    for (int64_t i = 0; i < n * k; ++i) {
      uint8_t b = static_cast<uint8_t>(byte(rng));
      if ((b & 0x7f) == 0x7f) b ^= 1;  // no NaN
      o.data.push_back(b);
    }
    switch (kind) {
      case Kind::kFp8Block:
        w.block_n = w.block_k = 128;
        break;
      case Kind::kFp8Tensor:
        w.block_n = n;
        w.block_k = k;
        break;
      case Kind::kFp8Channel:
        w.block_n = 1;
        w.block_k = k;
        break;
      case Kind::kFp8SmallBlock:  // powers of two under a SIMD chunk (block indices by shifts)
        w.block_n = 2;
        w.block_k = 32;
        break;
      default:  // blocks that straddle the SIMD chunks: a multiple of the vector width
                // (per-vector scales inside a chunk) and, for odd K, one that is not (the
                // dequantizing fallback)
        w.block_n = 3;
        w.block_k = k % 2 ? 6 : 48;
        break;
    }
    std::uniform_real_distribution<float> s(1e-3f, 4e-3f);
    const int64_t sn = (n + w.block_n - 1) / w.block_n, sk = (k + w.block_k - 1) / w.block_k;
    for (int64_t i = 0; i < sn * sk; ++i) o.scale_f32.push_back(s(rng));
    w.data = o.data.data();
    w.scales = o.scale_f32.data();
    return o;
  }
  for (int64_t i = 0; i < n * k / 2; ++i) o.data.push_back(static_cast<uint8_t>(byte(rng)));
  if (kind == Kind::kMxfp4) {
    w.format = WeightFormat::kMxfp4;
    std::uniform_int_distribution<int> e(118, 130);
    for (int64_t i = 0; i < n * k / 32; ++i)
      o.scale_bytes.push_back(static_cast<uint8_t>(i % 29 == 5 ? 0 : e(rng)));  // 0: 2^-127
  } else {
    w.format = WeightFormat::kNvfp4;
    std::uniform_int_distribution<int> s(0x01, 0x7e);  // positive E4M3, subnormals included
    for (int64_t i = 0; i < n * k / 16; ++i) o.scale_bytes.push_back(static_cast<uint8_t>(s(rng)));
    std::uniform_real_distribution<float> g(1e-4f, 1e-3f);
    w.global_scale = g(rng);
    if (kind == Kind::kNvfp4Ct) {
      w.global_scale = 1.0f / w.global_scale;
      w.global_divides = true;
    }
  }
  w.data = o.data.data();
  w.scales = o.scale_bytes.data();
  return o;
}

std::vector<float> RandomVec(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// With ActDType::kBF16 the reference sees x rounded to bf16.
void CheckAgainstReference(Kind kind, ActDType act = ActDType::kF32) {
  std::mt19937 rng(static_cast<unsigned>(kind) * 101 + 5);
  ThreadPool pool(2);
  ActDTypeScope scope(act);
  const int64_t q = KMultiple(kind);
  // K: below, at and past the SIMD chunk (64 or 128 weights), with tails; an
  // odd number of 64-weight chunks (the int8 kernel's half step).
  for (auto [m, n, kq] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 5, 7}, {5, 17, 33},
                          {1, 9, 128 / q + 1}, {8, 64, 256 / q}, {37, 19, 1040 / q},
                          {2, 130, 2048 / q}, {3, 11, 192 / q}, {5, 6, 704 / q + 1}}) {
    const int64_t k = kq * q;
    OwnedWeight w = RandomWeight(kind, n, k, rng);
    const int64_t ldx = k + 3;
    std::vector<float> x = RandomVec(m * ldx + 1, rng);
    GemmProblem p{x.data() + 1, ldx, m, w.w, nullptr, n + 1};
    std::vector<float> y(static_cast<size_t>(m * (n + 1))), ref(y.size());
    p.y = y.data();
    MatMul(p, pool);
    if (act == ActDType::kInt8 && IsFp4(kind)) {
      // Bit for bit the portable kernel: MatMul's (the best this CPU runs, on
      // two threads) and each kernel this CPU runs, on one.
      std::vector<float> portable(y.size()), other(y.size());
      p.y = portable.data();
      MatMulInt8(p, Int8Kernel::kPortable);
      for (Int8Kernel kernel : SupportedInt8Kernels()) {
        p.y = other.data();
        MatMulInt8(p, kernel);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j)
            ASSERT_EQ(other[i * (n + 1) + j], portable[i * (n + 1) + j])
                << Int8KernelName(kernel) << " " << m << "x" << n << "x" << k;
      }
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
          ASSERT_EQ(y[i * (n + 1) + j], portable[i * (n + 1) + j]) << m << "x" << n << "x" << k;
      for (int64_t i = 0; i < m; ++i) {
        float* row = x.data() + 1 + i * ldx;
        std::vector<float> q(static_cast<size_t>(k));
        QuantizeDequantizeInt8(row, k, q.data());
        std::copy(q.begin(), q.end(), row);
      }
    }
    if (act == ActDType::kBF16)
      for (float& v : x) v = BF16ToF32(F32ToBF16(v));
    p.y = ref.data();
    MatMulReference(p);
    // Scale of the terms: sum |x| |w| bounds the f32 rounding error.
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t j = 0; j < n; ++j) {
      w.w.DequantizeRange(j, 0, k, row.data());
      for (int64_t i = 0; i < m; ++i) {
        double mag = 0;
        for (int64_t kk = 0; kk < k; ++kk) mag += std::fabs(double{x[1 + i * ldx + kk]} * row[kk]);
        const float a = y[i * (n + 1) + j], b = ref[i * (n + 1) + j];
        ASSERT_NEAR(a, b, 1e-6 * mag + 1e-30) << m << "x" << n << "x" << k << " at " << i << "," << j;
      }
    }
  }
}

class QuantMatMulTest : public ::testing::TestWithParam<Kind> {};

TEST_P(QuantMatMulTest, MatchesReferenceOnOddSizes) { CheckAgainstReference(GetParam()); }

// Every SIMD target compiled in (AVX2 as well as AVX-512 ...), not only the best one here.
TEST_P(QuantMatMulTest, EveryCompiledTargetMatchesReference) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    CheckAgainstReference(GetParam());
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_P(QuantMatMulTest, Bf16ActivationsMatchReferenceOnRoundedX) {
  CheckAgainstReference(GetParam(), ActDType::kBF16);
}

// --act-dtype int8: FP4 weights against the reference on x quantized to int8
// and back (and bit for bit against the portable kernel); others see x as it is.
TEST_P(QuantMatMulTest, Int8ActivationsMatchReferenceOnQuantizedX) {
  CheckAgainstReference(GetParam(), ActDType::kInt8);
}

void CheckRowBitIdentity(Kind kind, ActDType act) {
  ActDTypeScope scope(act);
  std::mt19937 rng(77);
  const int64_t n = 70, k = 400 / KMultiple(kind) * KMultiple(kind) + (IsFp4(kind) ? 0 : 3),
                m = 37;
  OwnedWeight w = RandomWeight(kind, n, k, rng);
  std::vector<float> x = RandomVec(m * k, rng);
  std::vector<float> batch1(static_cast<size_t>(m * n)), batch2(batch1.size());
  {
    ThreadPool pool(1);
    MatMul({x.data(), k, m, w.w, batch1.data(), n}, pool);
  }
  {
    ThreadPool pool(2);
    MatMul({x.data(), k, m, w.w, batch2.data(), n}, pool);
  }
  EXPECT_EQ(batch1, batch2);
  for (int64_t row : {0, 13, 36}) {
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      std::vector<float> alone(static_cast<size_t>(n));
      MatMul({x.data() + row * k, k, 1, w.w, alone.data(), n}, pool);
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(alone[j], batch1[row * n + j]) << row << "," << j;
    }
  }
  // Small batches (decode of a few sequences: tiles of 4 and of the 1-3 rows left).
  ThreadPool pool(2);
  for (int64_t rows = 2; rows <= 7; ++rows) {
    std::vector<float> small(static_cast<size_t>(rows * n));
    MatMul({x.data(), k, rows, w.w, small.data(), n}, pool);
    for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(small[i], batch1[i]) << rows << " rows, " << i;
  }
}

TEST_P(QuantMatMulTest, RowBitIdenticalAloneAndInBatchOf37AtAnyThreads) {
  CheckRowBitIdentity(GetParam(), ActDType::kF32);
  CheckRowBitIdentity(GetParam(), ActDType::kBF16);
  CheckRowBitIdentity(GetParam(), ActDType::kInt8);
}

// Each target tiles differently (AVX2: up to 3 rows of x by one weight row,
// one row of x by two; AVX-512: 4x1 and 2x4), so each is checked, not only the best one here.
TEST_P(QuantMatMulTest, RowBitIdenticalOnEveryCompiledTarget) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    CheckRowBitIdentity(GetParam(), ActDType::kF32);
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_P(QuantMatMulTest, ExpertFfnMatchesDequantizedWeights) {
  const Kind kind = GetParam();
  std::mt19937 rng(9);
  ThreadPool pool(2);
  const int64_t hidden = 256, inter = 96;
  OwnedWeight gate = RandomWeight(kind, inter, hidden, rng), up = RandomWeight(kind, inter, hidden, rng),
              down = RandomWeight(kind, hidden, inter, rng);
  std::vector<float> gf = gate.w.Dequantize(), uf = up.w.Dequantize(), df = down.w.Dequantize();
  const ExpertWeights packed{gate.w, up.w, down.w};
  const ExpertWeights plain{TensorView(gf.data(), DType::kF32, {inter, hidden}),
                            TensorView(uf.data(), DType::kF32, {inter, hidden}),
                            TensorView(df.data(), DType::kF32, {hidden, inter})};
  const std::vector<int64_t> offsets = {0, 5};
  std::vector<float> x = RandomVec(5 * hidden, rng), a(x.size()), b(x.size());
  GroupedExpertFfn({{&packed, 1}, offsets, x.data(), a.data(), hidden}, pool);
  GroupedExpertFfn({{&plain, 1}, offsets, x.data(), b.data(), hidden}, pool);
  float scale = 0;
  for (float v : b) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 0);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5 * scale) << i;
}

// Experts reading their rows from the tokens in place (row_token: each
// expert a run of consecutive tokens) give the same bits as from a dispatched
// copy, for every activation type (int8 then quantizes the shared x once).
TEST_P(QuantMatMulTest, ExpertFfnInPlaceRowsBitIdenticalToDispatchedCopy) {
  const Kind kind = GetParam();
  std::mt19937 rng(13);
  ThreadPool pool(2);
  const int64_t hidden = 256, inter = 96, tokens = 4;
  std::vector<OwnedWeight> owned;
  std::vector<ExpertWeights> experts;
  for (int e = 0; e < 3; ++e) {
    owned.push_back(RandomWeight(kind, inter, hidden, rng));
    owned.push_back(RandomWeight(kind, inter, hidden, rng));
    owned.push_back(RandomWeight(kind, hidden, inter, rng));
  }
  for (int e = 0; e < 3; ++e)
    experts.push_back({owned[3 * e].w, owned[3 * e + 1].w, owned[3 * e + 2].w});
  // Expert 0: tokens 1, 2; expert 1: none; expert 2: tokens 0..3; then token 2 again (a
  // fourth expert, the first one's weights).
  experts.push_back(experts[0]);
  const std::vector<int64_t> offsets = {0, 2, 2, 6, 7};
  const std::vector<int32_t> row_token = {1, 2, 0, 1, 2, 3, 2};
  EXPECT_TRUE(RowsAreTokenRuns(offsets, row_token));
  EXPECT_FALSE(RowsAreTokenRuns(std::vector<int64_t>{0, 2}, std::vector<int32_t>{1, 3}));
  EXPECT_FALSE(RowsAreTokenRuns(std::vector<int64_t>{0, 2}, std::vector<int32_t>{1, 1}));
  const std::vector<float> x = RandomVec(tokens * hidden, rng);
  std::vector<float> copy;
  for (int32_t t : row_token) copy.insert(copy.end(), x.begin() + t * hidden, x.begin() + (t + 1) * hidden);
  for (ActDType act : {ActDType::kF32, ActDType::kBF16, ActDType::kInt8}) {
    ActDTypeScope scope(act);
    std::vector<float> a(copy.size(), -1.0f), b(copy.size(), -2.0f);
    GroupedExpertFfn({experts, offsets, copy.data(), a.data(), hidden}, pool);
    GroupedExpertFfn({experts, offsets, x.data(), b.data(), hidden, row_token}, pool);
    ASSERT_EQ(a, b) << "act " << static_cast<int>(act);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantMatMulTest,
                         ::testing::Values(Kind::kBf16, Kind::kFp8Block, Kind::kFp8Tensor, Kind::kFp8Channel,
                                           Kind::kFp8OddBlock, Kind::kFp8SmallBlock, Kind::kNvfp4,
                                           Kind::kNvfp4Ct,
                                           Kind::kMxfp4),
                         [](const auto& info) { return std::string(KindName(info.param)); });

// A thread reuses its quantized rows of x for later tasks of the same matmul
// (column blocks, weights sharing x); never across calls: x rewritten in place
// between two calls, and two weights over one x in one grouped call, match the
// portable kernel on the x each call sees.
TEST(Int8ActivationTest, QuantizedRowsReusedOnlyWithinACall) {
  ActDTypeScope scope(ActDType::kInt8);
  std::mt19937 rng(31);
  ThreadPool pool(2);
  const int64_t m = 9, n = 300, k = 512;  // several column blocks per row block
  OwnedWeight a = RandomWeight(Kind::kNvfp4, n, k, rng), b = RandomWeight(Kind::kMxfp4, n, k, rng);
  std::vector<float> x = RandomVec(m * k, rng);
  std::vector<float> ya(static_cast<size_t>(m * n)), yb(ya.size()), want(ya.size());
  for (int round = 0; round < 3; ++round) {
    const GemmProblem both[2] = {{x.data(), k, m, a.w, ya.data(), n},
                                 {x.data(), k, m, b.w, yb.data(), n}};
    GroupedMatMul(both, pool);
    MatMulInt8({x.data(), k, m, a.w, want.data(), n}, Int8Kernel::kPortable);
    ASSERT_EQ(ya, want) << "round " << round;
    MatMulInt8({x.data(), k, m, b.w, want.data(), n}, Int8Kernel::kPortable);
    ASSERT_EQ(yb, want) << "round " << round;
    for (float& v : x) v = -2.0f * v + 0.25f;  // same buffer, new values
  }
}

// LinearWeight decodes an NVFP4 tensor exactly as the quant layer does (ModelOpt's order).
// Int8 activations: per 32 values d = amax/127 and q = round-half-even(x/d):
// the block's largest |x| gives +-127, others are within d/2; a block of zeros
// stays zero; the last, partial block has its own scale.
TEST(Int8ActivationTest, QuantizesPerBlockOf32) {
  std::vector<float> x(80);
  for (int i = 0; i < 32; ++i) x[i] = 0.01f * static_cast<float>(i - 16);
  x[5] = 1.0f;
  x[6] = -0.5f;    // -63.5 -> -64 (half to even)
  x[7] = 0.25f;    //  31.75 -> 32
  // x[32..63] all zero; x[64..79]: a 16-value tail
  for (int i = 64; i < 80; ++i) x[i] = 100.0f * static_cast<float>(i - 70);
  std::vector<float> q(x.size());
  QuantizeDequantizeInt8(x.data(), static_cast<int64_t>(x.size()), q.data());
  const float d0 = 1.0f / 127.0f, d2 = 900.0f / 127.0f;
  EXPECT_FLOAT_EQ(q[5], 127 * d0);
  EXPECT_FLOAT_EQ(q[6], -64 * d0);
  EXPECT_FLOAT_EQ(q[7], 32 * d0);
  for (int i = 0; i < 32; ++i) EXPECT_LE(std::fabs(q[i] - x[i]), 0.5f * d0 * 1.0001f) << i;
  for (int i = 32; i < 64; ++i) EXPECT_EQ(q[i], 0.0f) << i;
  EXPECT_FLOAT_EQ(q[79], 127 * d2);
  for (int i = 64; i < 80; ++i) EXPECT_LE(std::fabs(q[i] - x[i]), 0.5f * d2 * 1.0001f) << i;
}

TEST(LinearWeightTest, Nvfp4DecodeEqualsQuantLayer) {
  std::mt19937 rng(5);
  const int64_t n = 7, k = 96;
  std::vector<float> w = RandomVec(n * k, rng);
  auto t = QuantizeNvfp4(w.data(), n, k);
  ASSERT_TRUE(t.ok());
  LinearWeight lw;
  lw.format = WeightFormat::kNvfp4;
  lw.rows = n;
  lw.cols = k;
  lw.data = t.value().packed.data();
  lw.scales = t.value().block_scale.data();
  lw.global_scale = t.value().global_scale;
  EXPECT_EQ(lw.Dequantize(), DequantizeNvfp4(t.value()));
  EXPECT_EQ(lw.nbytes(), n * k / 2 + n * k / 16);
  const LinearWeight rows = lw.RowSlice(2, 5);
  std::vector<float> a(static_cast<size_t>(k)), b(a.size());
  rows.DequantizeRange(1, 0, k, a.data());
  lw.DequantizeRange(3, 0, k, b.data());
  EXPECT_EQ(a, b);
}

TEST(LinearWeightTest, ValidationNamesTheProblem) {
  LinearWeight w;
  uint8_t bytes[64] = {};
  w.format = WeightFormat::kNvfp4;
  w.rows = 2;
  w.cols = 24;
  w.data = bytes;
  w.scales = bytes;
  EXPECT_NE(ValidateLinearWeight(w).find("multiple of 16"), std::string::npos);
  w.cols = 32;
  w.global_scale = 0;
  EXPECT_NE(ValidateLinearWeight(w).find("global scale"), std::string::npos);
  w.format = WeightFormat::kMxfp4;
  w.cols = 48;
  EXPECT_NE(ValidateLinearWeight(w).find("multiple of 32"), std::string::npos);
}

}  // namespace
}  // namespace moerack
