#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moerack {

int32_t SampleToken(const float* logits, int vocab_size, const SamplingParams& params,
                    std::mt19937_64& rng) {
  if (params.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab_size) - logits);
  }
  std::vector<int32_t> ids(static_cast<size_t>(vocab_size));
  std::iota(ids.begin(), ids.end(), 0);
  size_t keep = ids.size();
  if (params.top_k > 0 && params.top_k < vocab_size) keep = static_cast<size_t>(params.top_k);
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(),
                    by_logit);
  ids.resize(keep);
  std::vector<double> p(keep);
  const double mx = logits[ids[0]];
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    p[i] = std::exp((logits[ids[i]] - mx) / params.temperature);
    sum += p[i];
  }
  if (params.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
      cum += p[n++] / sum;
      if (cum >= params.top_p) break;
    }
    keep = n;
    sum = std::accumulate(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
  }
  // Inverse-CDF draw from a 53-bit uniform: reproducible across platforms.
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * sum;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (u < cum) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace moerack
