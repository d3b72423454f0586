#include "moe/router.h"

#include <algorithm>
#include <numeric>

#include "core/check.h"
#include "kernels/ops.h"

namespace moerack {

void RouteSoftmaxTopK(const float* logits, int64_t num_tokens, int num_experts, int top_k,
                      bool renormalize, RoutingResult* out) {
  CHECK(top_k > 0 && top_k <= num_experts);
  out->num_tokens = num_tokens;
  out->top_k = top_k;
  out->expert_ids.resize(static_cast<size_t>(num_tokens * top_k));
  out->weights.resize(out->expert_ids.size());
  std::vector<float> p(static_cast<size_t>(num_experts));
  std::vector<int32_t> order(p.size());
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::copy_n(logits + t * num_experts, num_experts, p.begin());
    Softmax(p.data(), num_experts);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
      return p[a] != p[b] ? p[a] > p[b] : a < b;
    });
    float sum = 0.0f;
    for (int s = 0; s < top_k; ++s) sum += p[order[s]];
    for (int s = 0; s < top_k; ++s) {
      out->expert_ids[t * top_k + s] = order[s];
      out->weights[t * top_k + s] = renormalize ? p[order[s]] / sum : p[order[s]];
    }
  }
}

}  // namespace moerack
