#include "moe/moe_layer.h"

#include <vector>

#include "kernels/matmul.h"
#include "moe/dispatch.h"

namespace moerack {

void RunMoeLayer(const MoeLayer& layer, const float* x, int64_t T, int64_t H, float* out,
                 ThreadPool& pool) {
  const int E = layer.routing.num_experts;
  std::vector<float> router_logits(static_cast<size_t>(T * E));
  MatMul({x, H, T, layer.router, router_logits.data(), E}, pool);
  RoutingResult routing;
  RouteTopK(router_logits.data(), T, layer.routing, &routing);
  const DispatchPlan plan = PlanDispatch(routing, E);
  std::vector<float> rows;
  DispatchTokens(plan, x, H, &rows);
  const int64_t routed_rows = static_cast<int64_t>(plan.row_token.size());
  std::vector<ExpertWeights> experts(layer.experts.begin(), layer.experts.end());
  std::vector<int64_t> offsets = plan.expert_offsets;
  if (layer.shared != nullptr) {
    experts.push_back(*layer.shared);
    rows.insert(rows.end(), x, x + T * H);
    offsets.push_back(routed_rows + T);
  }
  std::vector<float> expert_out(rows.size());
  GroupedExpertFfn({experts, offsets, rows.data(), expert_out.data(), H}, pool);
  CombineExpertOutputs(plan, routing, expert_out.data(), H, out, pool);
  if (layer.shared != nullptr) {
    const float* shared = expert_out.data() + routed_rows * H;
    for (int64_t i = 0; i < T * H; ++i) out[i] += shared[i];
  }
}

}  // namespace moerack
