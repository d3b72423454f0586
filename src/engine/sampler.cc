#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

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

}  // namespace

// Cost: O(vocab) expected, sorting only the top-k candidates or a few around
// the nucleus boundary, never the whole vocabulary (BM_SampleToken).
int32_t SampleToken(const float* logits, int vocab_size, const SamplingParams& params,
                    std::mt19937_64& rng) {
  if (params.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab_size) - logits);
  }
  // NaN logits rank last (as -inf); a row of nothing but -inf or NaN has no
  // distribution to draw from: its lowest id.
  auto logit = [&](int32_t i) { return std::isnan(logits[i]) ? -INFINITY : logits[i]; };
  thread_local std::vector<Candidate> all, nucleus;
  // Candidates in the order the draw scans them: by rank when top-k ranks
  // them, else by id (top-p then reorders).
  std::vector<Candidate>* cand = &all;
  bool ranked = false;
  all.clear();
  if (params.top_k > 0 && params.top_k < vocab_size) {
    // A heap of the k best so far, its lowest-ranked in front: most logits
    // fail one comparison with it.
    const size_t k = static_cast<size_t>(params.top_k);
    for (int32_t i = 0; i < vocab_size; ++i) {
      const Candidate c{logit(i), 0.0f, i};
      if (all.size() < k) {
        all.push_back(c);
        std::push_heap(all.begin(), all.end(), Before);
      } else if (Before(c, all.front())) {
        std::pop_heap(all.begin(), all.end(), Before);
        all.back() = c;
        std::push_heap(all.begin(), all.end(), Before);
      }
    }
    std::sort_heap(all.begin(), all.end(), Before);
    ranked = true;
  } else {
    all.resize(static_cast<size_t>(vocab_size));
    for (int32_t i = 0; i < vocab_size; ++i) all[i] = Candidate{logit(i), 0.0f, i};
  }
  const float max_logit =
      std::max_element(cand->begin(), cand->end(), [](const Candidate& a, const Candidate& b) {
        return a.logit < b.logit;
      })->logit;
  if (!(max_logit > -INFINITY)) return 0;
  const float inv_t = 1.0f / params.temperature;
  double total = 0;
  for (Candidate& c : *cand) {
    c.p = std::exp((c.logit - max_logit) * inv_t);
    total += c.p;
  }
  size_t keep = cand->size();
  if (params.top_p < 1.0f) {
    // The nucleus: the most probable candidates, in rank order, until their
    // mass reaches top_p of the total.
    const double target = static_cast<double>(params.top_p) * total;
    size_t lo = 0;      // candidates [0, lo) are in the nucleus and outrank the rest
    double before = 0;  // their mass
    if (!ranked) {
      // Only candidates with p >= t can be in it, t lowered until they hold
      // the mass (every candidate left out is less probable than all of them);
      // then halves of their rank order are split off (nth_element) until the
      // boundary is within a few, which are sorted. O(vocab) expected; the
      // nucleus stays unsorted in front, a fixed order for the draw.
      for (float t = 0.0625f;; t = t > 1e-30f ? t * 0.0625f : 0.0f) {
        nucleus.clear();
        double mass = 0;
        for (const Candidate& c : all) {
          if (c.p >= t) {
            nucleus.push_back(c);
            mass += c.p;
          }
        }
        if (mass >= target || t == 0.0f) break;
      }
      cand = &nucleus;
      size_t hi = nucleus.size();
      while (hi - lo > 32) {
        const auto first = nucleus.begin();
        const size_t mid = lo + (hi - lo) / 2;
        std::nth_element(first + lo, first + mid, first + hi, Before);
        double upper = 0;
        for (size_t i = lo; i < mid; ++i) upper += nucleus[i].p;
        if (before + upper >= target) {
          hi = mid;
        } else {
          before += upper;
          lo = mid;
        }
      }
      std::sort(nucleus.begin() + lo, nucleus.begin() + hi, Before);
    }
    double cum = before;
    size_t n = lo;
    while (n < cand->size()) {
      cum += (*cand)[n++].p;
      if (cum >= target) break;
    }
    keep = n;
    total = 0;
    for (size_t i = 0; i < keep; ++i) total += (*cand)[i].p;
  }
  // Inverse-CDF draw from a 53-bit uniform: reproducible across platforms.
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += (*cand)[i].p;
    if (u < cum) return (*cand)[i].id;
  }
  return (*cand)[keep - 1].id;
}

}  // namespace moerack
