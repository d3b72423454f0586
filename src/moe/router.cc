#include "moe/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/check.h"
#include "kernels/exp.h"

namespace moerack {

void RouteTopK(const float* logits, int64_t num_tokens, const RouterParams& p, RoutingResult* out) {
  const int E = p.num_experts;
  CHECK(p.top_k > 0 && p.top_k <= E);
  CHECK(p.num_groups >= 1 && E % p.num_groups == 0 && p.topk_groups >= 1 &&
        p.topk_groups <= p.num_groups);
  const int group_size = E / p.num_groups;
  out->num_tokens = num_tokens;
  out->top_k = p.top_k;
  out->expert_ids.resize(static_cast<size_t>(num_tokens * p.top_k));
  out->weights.resize(out->expert_ids.size());
  std::vector<float> scores(static_cast<size_t>(E)), choice(scores.size()),
      group_score(static_cast<size_t>(p.num_groups));
  std::vector<int32_t> order(scores.size()), groups(group_score.size());
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::copy_n(logits + t * E, E, scores.begin());
    if (p.scoring == RouterScoring::kSoftmax) {
      Softmax(scores.data(), E);
    } else {
      for (float& s : scores) s = 1.0f / (1.0f + std::exp(-s));
    }
    for (int e = 0; e < E; ++e) choice[e] = scores[e] + (p.bias ? p.bias[e] : 0.0f);
    if (p.topk_groups < p.num_groups) {
      for (int g = 0; g < p.num_groups; ++g) {
        const float* c = choice.data() + g * group_size;
        if (p.bias != nullptr) {  // sum of the group's top-2
          float a = -INFINITY, b = -INFINITY;
          for (int i = 0; i < group_size; ++i) {
            if (c[i] > a) {
              b = a;
              a = c[i];
            } else if (c[i] > b) {
              b = c[i];
            }
          }
          group_score[g] = group_size >= 2 ? a + b : a;
        } else {
          group_score[g] = *std::max_element(c, c + group_size);
        }
      }
      std::iota(groups.begin(), groups.end(), 0);
      std::partial_sort(
          groups.begin(), groups.begin() + p.topk_groups, groups.end(), [&](int32_t a, int32_t b) {
            return group_score[a] != group_score[b] ? group_score[a] > group_score[b] : a < b;
          });
      std::vector<bool> keep(static_cast<size_t>(p.num_groups), false);
      for (int i = 0; i < p.topk_groups; ++i) keep[groups[i]] = true;
      for (int e = 0; e < E; ++e) {
        if (!keep[e / group_size]) choice[e] = 0.0f;  // transformers masks with 0, not -inf
      }
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + p.top_k, order.end(),
                      [&](int32_t a, int32_t b) {
                        return choice[a] != choice[b] ? choice[a] > choice[b] : a < b;
                      });
    float sum = 0.0f;
    for (int s = 0; s < p.top_k; ++s) sum += scores[order[s]];
    const float norm = p.renormalize ? 1.0f / (sum + 1e-20f) : 1.0f;
    for (int s = 0; s < p.top_k; ++s) {
      out->expert_ids[t * p.top_k + s] = order[s];
      out->weights[t * p.top_k + s] = scores[order[s]] * norm * p.scaling;
    }
  }
}

}  // namespace moerack
