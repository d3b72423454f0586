// PagedAttention against a double-precision reference on fresh random inputs:
// GQA groups, head and value dims that leave SIMD tails, a value dim unlike the
// key dim (MLA-style), sliding windows, scrambled block tables, a prefill chunk
// long enough to split into several token tiles and key chunks, beside decode
// tokens, f32 and FP8 caches, on every SIMD target compiled in. A token's
// output must not depend on the thread count or on the other tokens of the
// batch (DESIGN.md principle 2): each is checked against itself decoded alone.
#include "kernels/attention.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/kv_cache.h"

namespace moerack {
namespace {

struct Case {
  DType dtype;
  int heads, kv_heads, head_dim, v_head_dim, window;
};

std::string Name(const Case& c) {
  return std::string(DTypeName(c.dtype)) + " heads " + std::to_string(c.heads) + "/" +
         std::to_string(c.kv_heads) + " dims " + std::to_string(c.head_dim) + "/" +
         std::to_string(c.v_head_dim) + " window " + std::to_string(c.window);
}

// softmax(scale * q.k) . v over the keys a query at `pos` sees, in double,
// reading K and V through the cache view (so FP8 rounding matches).
std::vector<double> Reference(const AttentionParams& p, const KvCacheView& cache,
                              std::span<const int32_t> table, const float* q, int64_t pos) {
  const int group = p.num_heads / p.num_kv_heads;
  const int64_t first = p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
  std::vector<double> out(static_cast<size_t>(p.num_heads * p.v_head_dim), 0.0);
  std::vector<float> ks(static_cast<size_t>(p.head_dim)), vs(static_cast<size_t>(p.v_head_dim));
  for (int h = 0; h < p.num_heads; ++h) {
    const int kvh = h / group;
    std::vector<double> s;
    double mx = -1e300;
    for (int64_t j = first; j <= pos; ++j) {
      const float* k = cache.Load(p.layer, table, j, p.k_offset + int64_t{kvh} * p.head_dim,
                                  p.head_dim, ks.data(), p.k_scale);
      double d = 0;
      for (int i = 0; i < p.head_dim; ++i) d += double{q[h * p.head_dim + i]} * k[i];
      s.push_back(d * p.scale);
      mx = std::max(mx, s.back());
    }
    double z = 0;
    for (double& x : s) z += (x = std::exp(x - mx));
    for (int64_t j = first; j <= pos; ++j) {
      const float* v = cache.Load(p.layer, table, j, p.v_offset + int64_t{kvh} * p.v_head_dim,
                                  p.v_head_dim, vs.data(), p.v_scale);
      for (int i = 0; i < p.v_head_dim; ++i)
        out[static_cast<size_t>(h * p.v_head_dim + i)] +=
            s[static_cast<size_t>(j - first)] / z * v[i];
    }
  }
  return out;
}

void CheckAgainstReference() {
  const Case cases[] = {
      {DType::kF32, 8, 2, 40, 40, 0},       {DType::kF32, 4, 4, 128, 128, 0},
      {DType::kF32, 6, 2, 64, 200, 5},      {DType::kF32, 32, 2, 16, 16, 37},
      {DType::kF32, 80, 1, 72, 64, 0},  // MLA-like: one kv head, a group over the tile's 64 rows
      {DType::kFP8E4M3, 8, 2, 128, 128, 0}, {DType::kFP8E4M3, 4, 1, 24, 136, 3},
  };
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0, 1);
  for (const Case& c : cases) {
    SCOPED_TRACE(Name(c));
    const int layer = 1, block_size = 4;
    const int64_t k_offset = 3;  // padding before K, as an architecture may lay out a slot
    const int64_t v_offset = k_offset + int64_t{c.kv_heads} * c.head_dim;
    const int64_t floats_per_token = v_offset + int64_t{c.kv_heads} * c.v_head_dim + 1;
    KvCache kv(2, 24, block_size, floats_per_token, c.dtype);
    const KvCacheView cache = kv.view();
    const bool fp8 = c.dtype == DType::kFP8E4M3;
    // Sequence A: a 45-token prefill chunk at positions 13..57; B: decode at 21; C: decode at 0.
    const std::vector<int32_t> ta = {5, 2, 9, 0, 7, 12, 14, 13, 15, 16, 17, 19, 18, 20, 21},
                               tb = {1, 3, 4, 6, 8, 10}, tc = {11};
    const std::vector<int32_t>* tables[] = {&ta, &tb, &tc};
    const int64_t last_pos[] = {57, 21, 0};
    for (int sq = 0; sq < 3; ++sq) {
      for (int64_t pos = 0; pos <= last_pos[sq]; ++pos) {
        std::vector<float> row(static_cast<size_t>(floats_per_token));
        for (float& x : row) x = 2 * g(rng);
        cache.Store(layer, *tables[sq], pos, k_offset, row.data() + k_offset, v_offset - k_offset,
                    fp8 ? 0.5f : 1.0f);
        cache.Store(layer, *tables[sq], pos, v_offset, row.data() + v_offset,
                    floats_per_token - 1 - v_offset, fp8 ? 0.25f : 1.0f);
      }
    }
    const std::vector<AttentionSeq> seqs = {{0, 45, 13, ta}, {45, 1, 21, tb}, {46, 1, 0, tc}};
    const int64_t rows = 47, q_stride = int64_t{c.heads} * c.head_dim + 5;
    const int64_t out_stride = int64_t{c.heads} * c.v_head_dim + 2;
    std::vector<float> q(static_cast<size_t>(rows * q_stride));
    for (float& x : q) x = g(rng);
    AttentionParams p;
    p.q = q.data();
    p.q_stride = q_stride;
    p.out_stride = out_stride;
    p.num_heads = c.heads;
    p.num_kv_heads = c.kv_heads;
    p.head_dim = c.head_dim;
    p.v_head_dim = c.v_head_dim;
    p.k_offset = k_offset;
    p.v_offset = v_offset;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    p.k_scale = fp8 ? 0.5f : 1.0f;
    p.v_scale = fp8 ? 0.25f : 1.0f;
    p.sliding_window = c.window;
    p.layer = layer;
    std::vector<float> out1(static_cast<size_t>(rows * out_stride), -7.0f), out2 = out1;
    ThreadPool one(1), two(2);
    p.out = out1.data();
    PagedAttention(p, seqs, cache, one);
    p.out = out2.data();
    PagedAttention(p, seqs, cache, two);

    const int64_t width = int64_t{c.heads} * c.v_head_dim;
    for (int sq = 0; sq < 3; ++sq) {
      for (int64_t t = 0; t < seqs[sq].num_tokens; ++t) {
        const int64_t row = seqs[sq].first_row + t, pos = seqs[sq].start_pos + t;
        const std::vector<double> want =
            Reference(p, cache, *tables[sq], q.data() + row * q_stride, pos);
        // The same token alone, as a decode of its own.
        std::vector<float> alone(static_cast<size_t>(out_stride), -7.0f);
        AttentionParams pa = p;
        pa.q = q.data() + row * q_stride;
        pa.out = alone.data();
        const AttentionSeq single[] = {{0, 1, pos, *tables[sq]}};
        PagedAttention(pa, single, cache, two);
        for (int64_t i = 0; i < width; ++i) {
          const float got = out1[static_cast<size_t>(row * out_stride + i)];
          ASSERT_NEAR(got, want[static_cast<size_t>(i)],
                      1e-5 * (1 + std::fabs(want[static_cast<size_t>(i)])))
              << "row " << row << " element " << i;
          ASSERT_EQ(got, out2[static_cast<size_t>(row * out_stride + i)]) << "threads, row " << row;
          ASSERT_EQ(got, alone[static_cast<size_t>(i)]) << "batch vs alone, row " << row;
        }
        // Padding between rows is left alone.
        for (int64_t i = width; i < out_stride; ++i)
          ASSERT_EQ(out1[static_cast<size_t>(row * out_stride + i)], -7.0f);
      }
    }
  }
}

// A dot product must not depend on the heads computed beside it: kv groups of
// 5 heads (a block of 4 and a single) whose last head repeats the first's
// query give bit-identical outputs for the two.
TEST(PagedAttentionTest, AHeadsResultDoesNotDependOnItsNeighbours) {
  for (int dim : {64, 40}) {  // whole vectors, and a tail past them
    SCOPED_TRACE(dim);
    const int heads = 10, kv_heads = 2, group = heads / kv_heads, block_size = 8;
    const int64_t floats_per_token = 2 * int64_t{kv_heads} * dim;
    KvCache kv(1, 8, block_size, floats_per_token);
    const std::vector<int32_t> table = {3, 0, 6, 1, 7, 2};
    std::mt19937 rng(5);
    std::normal_distribution<float> g(0, 1);
    std::vector<float> row(static_cast<size_t>(floats_per_token));
    for (int64_t pos = 0; pos < 45; ++pos) {
      for (float& x : row) x = g(rng);
      kv.view().Store(0, table, pos, 0, row.data(), floats_per_token);
    }
    const int64_t tokens = 3, width = int64_t{heads} * dim;
    std::vector<float> q(static_cast<size_t>(tokens * width)), out(q.size());
    for (float& x : q) x = g(rng);
    for (int64_t t = 0; t < tokens; ++t)
      for (int h = 0; h < kv_heads; ++h)
        std::copy_n(&q[static_cast<size_t>(t * width + h * group * dim)], dim,
                    &q[static_cast<size_t>(t * width + (h * group + group - 1) * dim)]);
    AttentionParams p;
    p.q = q.data();
    p.q_stride = width;
    p.out = out.data();
    p.out_stride = width;
    p.num_heads = heads;
    p.num_kv_heads = kv_heads;
    p.head_dim = p.v_head_dim = dim;
    p.v_offset = int64_t{kv_heads} * dim;
    p.scale = 0.125f;
    const AttentionSeq seq[] = {{0, tokens, 42, table}};
    ThreadPool pool(2);
    PagedAttention(p, seq, kv.view(), pool);
    for (int64_t t = 0; t < tokens; ++t)
      for (int h = 0; h < kv_heads; ++h)
        for (int i = 0; i < dim; ++i)
          ASSERT_EQ(out[static_cast<size_t>(t * width + h * group * dim + i)],
                    out[static_cast<size_t>(t * width + (h * group + group - 1) * dim + i)])
              << "token " << t << " kv head " << h << " element " << i;
  }
}

// A NaN stored into an FP8 cache (E4M3 0x7F) reads back NaN, as KvCacheView::Load
// gives it, not as the code's magnitude: the output of every head that sees it
// is NaN there. At an element the SIMD byte check covers and one in its tail.
TEST(PagedAttentionTest, Fp8CacheKeepsNaN) {
  const int dim = 96, block_size = 4;
  for (int at : {3, 70}) {
    SCOPED_TRACE(at);
    KvCache kv(1, 4, block_size, 2 * dim, DType::kFP8E4M3);
    const std::vector<int32_t> table = {2, 0, 3};
    std::vector<float> row(2 * dim, 0.5f);
    for (int64_t pos = 0; pos < 9; ++pos) {
      row[static_cast<size_t>(dim + at)] = pos == 6 ? NAN : 0.25f;  // a value element of token 6
      kv.view().Store(0, table, pos, 0, row.data(), 2 * dim);
    }
    std::vector<float> q(2 * dim, 0.1f), out(2 * dim);
    AttentionParams p;
    p.q = q.data();
    p.q_stride = p.out_stride = 2 * dim;
    p.out = out.data();
    p.num_heads = 2;
    p.num_kv_heads = 1;
    p.head_dim = p.v_head_dim = dim;
    p.v_offset = dim;
    p.scale = 0.2f;
    const AttentionSeq seq[] = {{0, 1, 8, table}};
    ThreadPool pool(1);
    PagedAttention(p, seq, kv.view(), pool);
    for (int h = 0; h < 2; ++h) {
      EXPECT_TRUE(std::isnan(out[static_cast<size_t>(h * dim + at)])) << "head " << h;
      EXPECT_FALSE(std::isnan(out[static_cast<size_t>(h * dim + at + 1)])) << "head " << h;
    }
  }
}

TEST(PagedAttentionTest, MatchesReferenceAndIsIndependentOfThreadsAndBatch) {
  CheckAgainstReference();
}

// Every SIMD target compiled in (the scalar target's lane sums, AVX2's 8
// lanes), not only the best one here.
TEST(PagedAttentionTest, EveryCompiledTargetMatchesReference) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    CheckAgainstReference();
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace
}  // namespace moerack
