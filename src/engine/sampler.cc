#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "kernels/exp.h"

namespace moerack {

namespace {

struct Candidate {
  float logit;
  float p;  // exp((logit - max logit) / temperature)
  int32_t id;
};

// Descending logit, lowest id first on ties: the order top-k and top-p rank by.
bool Before(const Candidate& a, const Candidate& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

// NaN logits rank last, as -inf.
float Logit(const float* logits, int32_t i) {
  return std::isnan(logits[i]) ? -INFINITY : logits[i];
}

// Inverse-CDF draw from a 53-bit uniform over weights p(0) .. p(n - 1) summing
// to total: reproducible across platforms.
template <class P>
size_t Draw(size_t n, double total, P p, std::mt19937_64& rng) {
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  for (size_t i = 0; i < n; ++i) {
    cum += p(i);
    if (u < cum) return i;
  }
  return n - 1;
}

// The nucleus of cand (ranked or not): moves the most probable candidates, in
// rank order, until their mass reaches target, to the front and returns their
// count. Unranked, halves of the rank order are split off (nth_element) until
// the boundary is among a few, which are sorted: O(n) expected, the nucleus
// left unsorted in front (a fixed order for the draw).
size_t Nucleus(std::vector<Candidate>& cand, bool ranked, double target) {
  size_t lo = 0;      // [0, lo) are in the nucleus and outrank the rest
  double before = 0;  // their mass
  if (!ranked) {
    size_t hi = cand.size();
    while (hi - lo > 32) {
      const auto first = cand.begin();
      const size_t mid = lo + (hi - lo) / 2;
      std::nth_element(first + lo, first + mid, first + hi, Before);
      double upper = 0;
      for (size_t i = lo; i < mid; ++i) upper += cand[i].p;
      if (before + upper >= target) {
        hi = mid;
      } else {
        before += upper;
        lo = mid;
      }
    }
    std::sort(cand.begin() + lo, cand.begin() + hi, Before);
  }
  double cum = before;
  size_t n = lo;
  while (n < cand.size()) {
    cum += cand[n++].p;
    if (cum >= target) break;
  }
  return std::max<size_t>(n, 1);
}

// A draw from the first n candidates, in their order.
int32_t DrawCandidate(const std::vector<Candidate>& cand, size_t n, std::mt19937_64& rng) {
  double mass = 0;
  for (size_t i = 0; i < n; ++i) mass += cand[i].p;
  return cand[Draw(n, mass, [&](size_t i) { return cand[i].p; }, rng)].id;
}

}  // namespace

// Cost: O(vocab) expected: one vectorised exp per entry, and a sort of only the
// top-k candidates or of a few around the nucleus boundary, never of the whole
// vocabulary (BM_SampleToken).
int32_t SampleToken(const float* logits, int vocab_size, const SamplingParams& params,
                    std::mt19937_64& rng) {
  if (params.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab_size) - logits);
  }
  const float inv_t = 1.0f / params.temperature;
  thread_local std::vector<Candidate> cand;
  cand.clear();
  if (params.top_k > 0 && params.top_k < vocab_size) {
    // A heap of the k best so far, its lowest-ranked in front: most logits
    // fail one comparison with it.
    const size_t k = static_cast<size_t>(params.top_k);
    for (int32_t i = 0; i < vocab_size; ++i) {
      const Candidate c{Logit(logits, i), 0.0f, i};
      if (cand.size() < k) {
        cand.push_back(c);
        std::push_heap(cand.begin(), cand.end(), Before);
      } else if (Before(c, cand.front())) {
        std::pop_heap(cand.begin(), cand.end(), Before);
        cand.back() = c;
        std::push_heap(cand.begin(), cand.end(), Before);
      }
    }
    std::sort_heap(cand.begin(), cand.end(), Before);
    const float max_logit = cand.front().logit;
    if (!(max_logit > -INFINITY)) return 0;  // no finite logit: no distribution
    double total = 0;
    for (Candidate& c : cand) total += c.p = std::exp((c.logit - max_logit) * inv_t);
    const size_t keep = params.top_p < 1.0f
                            ? Nucleus(cand, true, static_cast<double>(params.top_p) * total)
                            : cand.size();
    return DrawCandidate(cand, keep, rng);
  }
  // The whole vocabulary: weights in id order (NaN logits get 0).
  float max_logit = -INFINITY;
  for (int32_t i = 0; i < vocab_size; ++i) max_logit = std::max(max_logit, Logit(logits, i));
  if (!(max_logit > -INFINITY)) return 0;
  thread_local std::vector<float> p;
  p.resize(static_cast<size_t>(vocab_size));
  const double total = ScaledExpSum(logits, vocab_size, max_logit, inv_t, p.data());
  if (params.top_p >= 1.0f) {
    return static_cast<int32_t>(Draw(p.size(), total, [&](size_t i) { return p[i]; }, rng));
  }
  // Top-p: only entries with p >= t can be in the nucleus, t lowered until they
  // hold the mass (every entry left out is less probable than all of them).
  const double target = static_cast<double>(params.top_p) * total;
  for (float t = 0.0625f;; t = t > 1e-30f ? t * 0.0625f : 0.0f) {
    cand.clear();
    double mass = 0;
    for (int32_t i = 0; i < vocab_size; ++i) {
      if (p[i] >= t && p[i] > 0.0f) {
        cand.push_back(Candidate{logits[i], p[i], i});
        mass += p[i];
      }
    }
    if (mass >= target || t == 0.0f) break;
  }
  return DrawCandidate(cand, Nucleus(cand, false, target), rng);
}

}  // namespace moerack
