#include "moe/dispatch.h"

#include <algorithm>

namespace moerack {

DispatchPlan PlanDispatch(const RoutingResult& routing, int num_experts) {
  DispatchPlan plan;
  plan.num_experts = num_experts;
  plan.expert_offsets.assign(static_cast<size_t>(num_experts) + 1, 0);
  for (int32_t e : routing.expert_ids) ++plan.expert_offsets[static_cast<size_t>(e) + 1];
  for (int e = 0; e < num_experts; ++e) plan.expert_offsets[e + 1] += plan.expert_offsets[e];
  std::vector<int64_t> next(plan.expert_offsets.begin(), plan.expert_offsets.end() - 1);
  plan.slot_row.resize(routing.expert_ids.size());
  plan.row_token.resize(routing.expert_ids.size());
  for (size_t i = 0; i < routing.expert_ids.size(); ++i) {
    const int64_t row = next[static_cast<size_t>(routing.expert_ids[i])]++;
    plan.slot_row[i] = row;
    plan.row_token[static_cast<size_t>(row)] =
        static_cast<int32_t>(i / static_cast<size_t>(routing.top_k));
  }
  return plan;
}

void DispatchTokens(const DispatchPlan& plan, const float* x, int64_t hidden,
                    std::vector<float>* dispatched) {
  dispatched->resize(plan.row_token.size() * static_cast<size_t>(hidden));
  for (size_t r = 0; r < plan.row_token.size(); ++r) {
    std::copy_n(x + plan.row_token[r] * hidden, hidden, dispatched->data() + r * hidden);
  }
}

void CombineExpertOutputs(const DispatchPlan& plan, const RoutingResult& routing,
                          const float* expert_out, int64_t hidden, float* y, ThreadPool& pool) {
  const int k = routing.top_k;
  pool.ParallelRange(routing.num_tokens, 8, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      float* yt = y + t * hidden;
      std::fill_n(yt, hidden, 0.0f);
      for (int s = 0; s < k; ++s) {
        const float w = routing.weights[t * k + s];
        const float* o = expert_out + plan.slot_row[t * k + s] * hidden;
        for (int64_t i = 0; i < hidden; ++i) yt[i] += w * o[i];
      }
    }
  });
}

}  // namespace moerack
