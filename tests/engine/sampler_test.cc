#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

namespace moerack {
namespace {

SamplingParams Params(float temperature, int top_k = 0, float top_p = 1.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  return p;
}

// Draws n tokens and returns the frequency of each id.
std::map<int32_t, double> Frequencies(const std::vector<float>& logits, const SamplingParams& p,
                                      int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<int32_t, double> f;
  for (int i = 0; i < n; ++i)
    f[SampleToken(logits.data(), static_cast<int>(logits.size()), p, rng)] += 1.0 / n;
  return f;
}

// The distribution the parameters define, by brute force: softmax at the
// temperature over the top-k by (logit desc, id asc), then the smallest prefix
// of that order holding top_p of the mass.
std::map<int32_t, double> Expected(const std::vector<float>& logits, const SamplingParams& p) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  if (p.top_k > 0 && p.top_k < static_cast<int>(ids.size())) ids.resize(p.top_k);
  std::vector<double> w;
  for (int32_t id : ids) w.push_back(std::exp((logits[id] - logits[ids[0]]) / p.temperature));
  const double total = std::accumulate(w.begin(), w.end(), 0.0);
  size_t keep = ids.size();
  if (p.top_p < 1.0f) {
    double cum = 0;
    keep = 0;
    while (keep < ids.size()) {
      cum += w[keep++];
      if (cum >= p.top_p * total) break;
    }
  }
  const double mass = std::accumulate(w.begin(), w.begin() + keep, 0.0);
  std::map<int32_t, double> e;
  for (size_t i = 0; i < keep; ++i) e[ids[i]] = w[i] / mass;
  return e;
}

void ExpectClose(const std::map<int32_t, double>& got, const std::map<int32_t, double>& want,
                 double tol) {
  for (const auto& [id, f] : got) EXPECT_TRUE(want.count(id)) << "token " << id << " sampled";
  for (const auto& [id, q] : want) {
    const double f = got.count(id) ? got.at(id) : 0.0;
    EXPECT_NEAR(f, q, tol) << "token " << id;
  }
}

TEST(SamplerTest, GreedyTakesTheLowestIdOfTheMaximum) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  std::mt19937_64 rng(1);
  EXPECT_EQ(SampleToken(logits.data(), 4, Params(0.0f), rng), 1);
}

TEST(SamplerTest, TemperatureMatchesTheSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
  for (float t : {1.0f, 0.5f, 2.0f}) {
    const SamplingParams p = Params(t);
    ExpectClose(Frequencies(logits, p, 200000, 7), Expected(logits, p), 0.005);
  }
}

TEST(SamplerTest, TopKAndTopPKeepTheRankedPrefix) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
  const std::vector<float> logits = {std::log(0.15f), std::log(0.5f), std::log(0.05f),
                                     std::log(0.3f)};
  ExpectClose(Frequencies(logits, Params(1.0f, 2), 100000, 3), {{1, 0.625}, {3, 0.375}}, 0.006);
  ExpectClose(Frequencies(logits, Params(1.0f, 0, 0.79f), 100000, 4), {{1, 0.625}, {3, 0.375}},
              0.006);
  // top_k beyond the vocabulary ranks nothing by itself; top_p still does.
  ExpectClose(Frequencies(logits, Params(1.0f, 100, 0.79f), 100000, 5), {{1, 0.625}, {3, 0.375}},
              0.006);
  ExpectClose(Frequencies(logits, Params(1.0f, 3, 0.5f), 1000, 6), {{1, 1.0}}, 1e-9);
  // Ties at the top-k boundary go to the lowest id.
  const std::vector<float> tied = {1.0f, 3.0f, 1.0f, 1.0f};
  const auto f = Frequencies(tied, Params(1.0f, 2), 20000, 8);
  EXPECT_EQ(f.size(), 2u);
  EXPECT_TRUE(f.count(0) && f.count(1));
}

TEST(SamplerTest, LargeVocabularyNucleusEqualsTheBruteForceOne) {
  std::mt19937 gen(11);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(4096);
  for (float& l : logits) l = normal(gen);
  for (const SamplingParams& p :
       {Params(1.0f, 0, 0.9f), Params(0.7f, 0, 0.5f), Params(1.3f, 40, 0.95f), Params(1.0f, 20)}) {
    const auto want = Expected(logits, p);
    const auto got = Frequencies(logits, p, 40000, 13);
    for (const auto& [id, f] : got) EXPECT_TRUE(want.count(id)) << "token " << id << " outside";
    // The most probable tokens at their rates.
    std::vector<std::pair<double, int32_t>> top;
    for (const auto& [id, q] : want) top.push_back({q, id});
    std::sort(top.rbegin(), top.rend());
    for (size_t i = 0; i < std::min<size_t>(5, top.size()); ++i) {
      const double f = got.count(top[i].second) ? got.at(top[i].second) : 0.0;
      EXPECT_NEAR(f, top[i].first, 0.015) << "token " << top[i].second;
    }
  }
}

TEST(SamplerTest, NonFiniteLogitsRankLast) {
  const std::vector<float> logits = {NAN, -INFINITY, 1.0f, NAN, 0.0f};
  const SamplingParams p = Params(1.0f, 0, 0.99f);
  ExpectClose(Frequencies(logits, p, 50000, 9),
              Expected({-INFINITY, -INFINITY, 1.0f, -INFINITY, 0.0f}, p), 0.01);
  ExpectClose(Frequencies(logits, Params(1.0f, 3), 20000, 10),
              {{2, 1.0 / (1.0 + std::exp(-1.0))}, {4, 1.0 - 1.0 / (1.0 + std::exp(-1.0))}}, 0.01);
  const std::vector<float> none = {NAN, -INFINITY};
  std::mt19937_64 rng(1);
  EXPECT_EQ(SampleToken(none.data(), 2, Params(1.0f, 0, 0.9f), rng), 0);
}

TEST(SamplerTest, SameSeedSameTokens) {
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  auto draw = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i)
      out.push_back(SampleToken(logits.data(), 1000, Params(0.8f, 0, 0.9f), rng));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

}  // namespace
}  // namespace moerack
