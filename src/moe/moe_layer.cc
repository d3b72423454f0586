#include "moe/moe_layer.h"

#include <vector>

#include "kernels/matmul.h"
#include "moe/dispatch.h"
#include "moe/ep_dispatch.h"

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

Status RunEpMoeLayer(const MoeLayer& layer, const ExpertMap& map, Communicator& comm,
                     const float* x, int64_t T, int64_t H, float* out, ThreadPool& pool) {
  const int E = layer.routing.num_experts;
  CHECK_EQ(map.num_experts, E);
  CHECK_EQ(static_cast<int>(layer.experts.size()), map.NumLocal(comm.rank()));
  std::vector<float> router_logits(static_cast<size_t>(T * E));
  MatMul({x, H, T, layer.router, router_logits.data(), E}, pool);
  RoutingResult routing;
  RouteTopK(router_logits.data(), T, layer.routing, &routing);
  MR_ASSIGN_OR_RETURN(EpDispatchHandle handle, PlanEpDispatch(routing, map, comm));
  std::vector<float> rows;
  MR_RETURN_IF_ERROR(EpDispatch(handle, x, H, comm, &rows));
  const int64_t received = handle.local_offsets.back();
  // The shared expert rides in the same grouped GEMM as on one rank.
  std::vector<ExpertWeights> experts(layer.experts.begin(), layer.experts.end());
  std::vector<int64_t> offsets = handle.local_offsets;
  if (layer.shared != nullptr) {
    experts.push_back(*layer.shared);
    rows.insert(rows.end(), x, x + T * H);
    offsets.push_back(received + T);
  }
  std::vector<float> expert_out(rows.size());
  GroupedExpertFfn({experts, offsets, rows.data(), expert_out.data(), H}, pool);
  std::vector<float> mine;
  MR_RETURN_IF_ERROR(EpCombine(handle, expert_out.data(), H, comm, &mine));
  CombineExpertOutputs(handle.plan, routing, mine.data(), H, out, pool);
  if (layer.shared != nullptr) {
    const float* shared = expert_out.data() + received * H;
    for (int64_t i = 0; i < T * H; ++i) out[i] += shared[i];
  }
  return Status::Ok();
}

}  // namespace moerack
