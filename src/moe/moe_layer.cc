#include "moe/moe_layer.h"

#include <vector>

#include "kernels/matmul.h"
#include "moe/dispatch.h"
#include "moe/ep_dispatch.h"

namespace moerack {
namespace {

// The routed rows (grouped as `offsets` says) and, if there is one, the shared
// expert over all T tokens, in one grouped GEMM; the shared expert's output then
// added to `out`, whose routed part the caller has combined.
struct ExpertOutputs {
  std::vector<float> out;  // [routed rows + (shared ? T : 0), H]
  int64_t routed_rows = 0;
};
ExpertOutputs RunExperts(const MoeLayer& layer, std::vector<float> rows,
                         std::vector<int64_t> offsets, const float* x, int64_t T, int64_t H,
                         ThreadPool& pool) {
  std::vector<ExpertWeights> experts(layer.experts.begin(), layer.experts.end());
  ExpertOutputs r;
  r.routed_rows = offsets.back();
  if (layer.shared != nullptr) {
    experts.push_back(*layer.shared);
    rows.insert(rows.end(), x, x + T * H);
    offsets.push_back(r.routed_rows + T);
  }
  r.out.resize(rows.size());
  GroupedExpertFfn({experts, offsets, rows.data(), r.out.data(), H}, pool);
  return r;
}

void AddShared(const MoeLayer& layer, const ExpertOutputs& e, int64_t T, int64_t H, float* out) {
  if (layer.shared == nullptr) return;
  const float* shared = e.out.data() + e.routed_rows * H;
  for (int64_t i = 0; i < T * H; ++i) out[i] += shared[i];
}

}  // namespace

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
  RoundRows(rows.data(), static_cast<int64_t>(plan.row_token.size()), H, layer.dispatch_dtype);
  const ExpertOutputs e = RunExperts(layer, std::move(rows), plan.expert_offsets, x, T, H, pool);
  CombineExpertOutputs(plan, routing, e.out.data(), H, out, pool);
  AddShared(layer, e, T, H, out);
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
  MR_RETURN_IF_ERROR(EpDispatch(handle, x, H, layer.dispatch_dtype, comm, &rows));
  // The shared expert rides in the same grouped GEMM as on one rank.
  const ExpertOutputs e = RunExperts(layer, std::move(rows), handle.local_offsets, x, T, H, pool);
  std::vector<float> mine;
  MR_RETURN_IF_ERROR(EpCombine(handle, e.out.data(), H, comm, &mine));
  CombineExpertOutputs(handle.plan, routing, mine.data(), H, out, pool);
  AddShared(layer, e, T, H, out);
  return Status::Ok();
}

}  // namespace moerack
