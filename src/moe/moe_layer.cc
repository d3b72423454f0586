#include "moe/moe_layer.h"

#include <vector>

#include "core/timer.h"
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
  Timer timer;
  std::vector<float> router_logits(static_cast<size_t>(T * E));
  MatMul({x, H, T, layer.router, router_logits.data(), E}, pool);
  RoutingResult routing;
  RouteTopK(router_logits.data(), T, layer.routing, &routing);
  const DispatchPlan plan = PlanDispatch(routing, E);
  std::vector<float> rows;
  DispatchTokens(plan, x, H, &rows);
  RoundRows(rows.data(), static_cast<int64_t>(plan.row_token.size()), H, layer.dispatch_dtype);
  const double dispatch_s = timer.Seconds();
  const ExpertOutputs e = RunExperts(layer, std::move(rows), plan.expert_offsets, x, T, H, pool);
  const double expert_s = timer.Seconds() - dispatch_s;
  CombineExpertOutputs(plan, routing, e.out.data(), H, out, pool);
  AddShared(layer, e, T, H, out);
  if (layer.stats != nullptr) {
    layer.stats->AddRouting(layer.layer_index, routing);
    layer.stats->dispatch_s += dispatch_s;
    layer.stats->expert_s += expert_s;
    layer.stats->combine_s += timer.Seconds() - dispatch_s - expert_s;
  }
}

Status RunEpMoeLayer(const MoeLayer& layer, const ExpertMap& map, Communicator& comm,
                     const float* x, int64_t T, int64_t H, float* out, ThreadPool& pool) {
  const int E = layer.routing.num_experts;
  CHECK_EQ(map.num_experts, E);
  CHECK_EQ(static_cast<int>(layer.experts.size()), E);
  Timer timer;
  std::vector<float> router_logits(static_cast<size_t>(T * E));
  MatMul({x, H, T, layer.router, router_logits.data(), E}, pool);
  RoutingResult routing;
  RouteTopK(router_logits.data(), T, layer.routing, &routing);
  MR_ASSIGN_OR_RETURN(EpDispatchHandle handle, PlanEpDispatch(routing, map, comm));
  std::vector<float> rows;
  MR_RETURN_IF_ERROR(EpDispatch(handle, x, H, layer.dispatch_dtype, comm, &rows));
  const double dispatch_s = timer.Seconds();
  // This rank's slots' experts; the shared expert rides in the same grouped GEMM as on one rank.
  std::vector<ExpertWeights> local;
  for (int s = map.first[comm.rank()]; s < map.first[comm.rank() + 1]; ++s)
    local.push_back(layer.experts[map.slot_expert[s]]);
  MoeLayer local_layer = layer;
  local_layer.experts = local;
  const ExpertOutputs e =
      RunExperts(local_layer, std::move(rows), handle.local_offsets, x, T, H, pool);
  const double expert_s = timer.Seconds() - dispatch_s;
  std::vector<float> mine;
  MR_RETURN_IF_ERROR(EpCombine(handle, e.out.data(), H, comm, &mine));
  CombineExpertOutputs(handle.plan, routing, mine.data(), H, out, pool);
  AddShared(layer, e, T, H, out);
  if (layer.stats != nullptr) {
    MoeStats& s = *layer.stats;
    s.AddRouting(layer.layer_index, routing);
    s.dispatch_s += dispatch_s;
    s.expert_s += expert_s;
    s.combine_s += timer.Seconds() - dispatch_s - expert_s;
    // Rows leaving this rank (those for its own experts stay local).
    const int64_t sent = static_cast<int64_t>(handle.plan.row_token.size()) -
                         handle.send_rows[comm.rank()];
    const int64_t returned = handle.local_offsets.back() - handle.recv_rows[comm.rank()];
    s.dispatch_bytes += static_cast<double>(sent * DispatchRowBytes(layer.dispatch_dtype, H));
    s.combine_bytes += static_cast<double>(returned * H * static_cast<int64_t>(sizeof(float)));
  }
  return Status::Ok();
}

}  // namespace moerack
