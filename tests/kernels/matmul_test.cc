#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/expert_ffn.h"

namespace moerack {
namespace {

struct Weights {
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  TensorView View(DType t, int64_t n, int64_t k) {
    return t == DType::kF32 ? TensorView(f32.data(), t, {n, k})
                            : TensorView(bf16.data(), t, {n, k});
  }
};

Weights RandomWeights(int64_t n, int64_t k, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1, 1);
  Weights w;
  for (int64_t i = 0; i < n * k; ++i) {
    w.f32.push_back(u(rng));
    w.bf16.push_back(F32ToBF16(w.f32.back()));
  }
  return w;
}

std::vector<float> RandomVec(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

class MatMulTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatMulTest, MatchesReferenceOnOddSizesAndMisalignedRows) {
  std::mt19937 rng(42);
  ThreadPool pool(2);
  for (auto [m, n, k] :
       {std::tuple{1, 1, 1}, {3, 5, 7}, {5, 17, 33}, {8, 64, 128}, {37, 19, 100}, {2, 130, 257}}) {
    Weights w = RandomWeights(n, k, rng);
    // x rows start one float past an aligned boundary and have a padded stride.
    const int64_t ldx = k + 3;
    std::vector<float> x = RandomVec(m * ldx + 1, rng);
    GemmProblem p{x.data() + 1, ldx, m, w.View(GetParam(), n, k), nullptr, n + 1};
    std::vector<float> y(static_cast<size_t>(m * (n + 1))), ref(y.size());
    p.y = y.data();
    MatMul(p, pool);
    p.y = ref.data();
    MatMulReference(p);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        const float a = y[i * (n + 1) + j], b = ref[i * (n + 1) + j];
        EXPECT_NEAR(a, b, 1e-5f * std::sqrt(static_cast<float>(k)) * (1 + std::fabs(b)))
            << m << "x" << n << "x" << k << " at " << i << "," << j;
      }
    }
  }
}

// DESIGN.md principle 2: a row's result does not depend on the batch it is in
// or on the thread count.
TEST_P(MatMulTest, RowBitIdenticalAloneAndInBatchOf37AtAnyThreads) {
  std::mt19937 rng(7);
  const int64_t n = 70, k = 301, m = 37;
  Weights w = RandomWeights(n, k, rng);
  std::vector<float> x = RandomVec(m * k, rng);
  std::vector<float> batch1(static_cast<size_t>(m * n)), batch2(batch1.size());
  {
    ThreadPool pool(1);
    MatMul({x.data(), k, m, w.View(GetParam(), n, k), batch1.data(), n}, pool);
  }
  {
    ThreadPool pool(2);
    MatMul({x.data(), k, m, w.View(GetParam(), n, k), batch2.data(), n}, pool);
  }
  EXPECT_EQ(batch1, batch2);
  for (int64_t row : {0, 13, 36}) {
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      std::vector<float> alone(static_cast<size_t>(n));
      MatMul({x.data() + row * k, k, 1, w.View(GetParam(), n, k), alone.data(), n}, pool);
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(alone[j], batch1[row * n + j]) << row << "," << j;
    }
  }
}

TEST_P(MatMulTest, GroupedEqualsSeparate) {
  std::mt19937 rng(3);
  ThreadPool pool(2);
  const int64_t k = 48;
  std::vector<Weights> ws;
  std::vector<std::vector<float>> xs, ys, singles;
  std::vector<GemmProblem> problems;
  const int64_t rows[] = {3, 0, 1, 9};
  const int64_t ns[] = {16, 8, 21, 5};
  for (int e = 0; e < 4; ++e) {
    ws.push_back(RandomWeights(ns[e], k, rng));
    xs.push_back(RandomVec(std::max<int64_t>(rows[e], 1) * k, rng));
    ys.emplace_back(static_cast<size_t>(rows[e] * ns[e]));
    singles.emplace_back(static_cast<size_t>(rows[e] * ns[e]));
  }
  for (int e = 0; e < 4; ++e) {
    problems.push_back(
        {xs[e].data(), k, rows[e], ws[e].View(GetParam(), ns[e], k), ys[e].data(), ns[e]});
  }
  GroupedMatMul(problems, pool);
  for (int e = 0; e < 4; ++e) {
    GemmProblem p = problems[e];
    p.y = singles[e].data();
    MatMul(p, pool);
    EXPECT_EQ(ys[e], singles[e]) << e;
  }
}

INSTANTIATE_TEST_SUITE_P(Weights, MatMulTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(ExpertFfnTest, MatchesScalarSwiGlu) {
  std::mt19937 rng(11);
  ThreadPool pool(2);
  const int64_t hidden = 24, inter = 40, num_experts = 3;
  std::vector<Weights> gate, up, down;
  std::vector<ExpertWeights> experts;
  for (int e = 0; e < num_experts; ++e) {
    gate.push_back(RandomWeights(inter, hidden, rng));
    up.push_back(RandomWeights(inter, hidden, rng));
    down.push_back(RandomWeights(hidden, inter, rng));
  }
  for (int e = 0; e < num_experts; ++e) {
    experts.push_back({gate[e].View(DType::kBF16, inter, hidden),
                       up[e].View(DType::kBF16, inter, hidden),
                       down[e].View(DType::kBF16, hidden, inter)});
  }
  const std::vector<int64_t> offsets = {0, 2, 2, 7};
  std::vector<float> x = RandomVec(7 * hidden, rng), out(x.size());
  GroupedExpertFfn({experts, offsets, x.data(), out.data(), hidden}, pool);
  for (int e = 0; e < num_experts; ++e) {
    for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r) {
      std::vector<double> h(static_cast<size_t>(inter));
      for (int64_t i = 0; i < inter; ++i) {
        double g = 0, u = 0;
        for (int64_t j = 0; j < hidden; ++j) {
          g += double{x[r * hidden + j]} * BF16ToF32(gate[e].bf16[i * hidden + j]);
          u += double{x[r * hidden + j]} * BF16ToF32(up[e].bf16[i * hidden + j]);
        }
        h[i] = g / (1 + std::exp(-g)) * u;
      }
      for (int64_t j = 0; j < hidden; ++j) {
        double y = 0;
        for (int64_t i = 0; i < inter; ++i) y += h[i] * BF16ToF32(down[e].bf16[j * inter + i]);
        EXPECT_NEAR(out[r * hidden + j], y, 1e-4 * (1 + std::fabs(y))) << e << "," << r << "," << j;
      }
    }
  }
}

}  // namespace
}  // namespace moerack
