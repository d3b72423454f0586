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
// added to `out`, whose routed part the caller has combined. The rows are
// `rows` (dispatched copies), or with `row_token` the tokens of x read in
// place (each expert's rows a run of consecutive tokens: RowsAreTokenRuns).
// `rows` comes back in the result so that its memory can be reused.
struct ExpertOutputs {
  ScratchVector<float> out;  // [routed rows + (shared ? T : 0), H]
  int64_t routed_rows = 0;
  ScratchVector<float> rows;  // the input rows (and the shared expert's copy of x)
};
ExpertOutputs RunExperts(const MoeLayer& layer, ScratchVector<float> rows,
                         std::vector<int64_t> offsets, const float* x, int64_t T, int64_t H,
                         ThreadPool& pool, ScratchVector<float> out = {},
                         std::vector<int32_t> row_token = {}) {
  std::vector<ExpertWeights> experts(layer.experts.begin(), layer.experts.end());
  const bool in_place = !row_token.empty();
  ExpertOutputs r;
  r.out = std::move(out);
  r.routed_rows = offsets.back();
  if (layer.shared != nullptr) {
    experts.push_back(*layer.shared);
    if (in_place) {
      for (int64_t t = 0; t < T; ++t) row_token.push_back(static_cast<int32_t>(t));
    } else {
      rows.insert(rows.end(), x, x + T * H);
    }
    offsets.push_back(r.routed_rows + T);
  }
  r.out.resize(static_cast<size_t>(offsets.back() * H));
  GroupedExpertFfn({experts, offsets, in_place ? x : rows.data(), r.out.data(), H, row_token},
                   pool);
  r.rows = std::move(rows);
  return r;
}

void AddShared(const MoeLayer& layer, const ExpertOutputs& e, int64_t T, int64_t H, float* out) {
  if (layer.shared == nullptr) return;
  const float* shared = e.out.data() + e.routed_rows * H;
  for (int64_t i = 0; i < T * H; ++i) out[i] += shared[i];
}

// Tokens [t0, t1) of `routing` as a routing of their own.
RoutingResult SliceRouting(const RoutingResult& r, int64_t t0, int64_t t1) {
  RoutingResult s;
  s.num_tokens = t1 - t0;
  s.top_k = r.top_k;
  s.expert_ids.assign(r.expert_ids.begin() + t0 * r.top_k, r.expert_ids.begin() + t1 * r.top_k);
  s.weights.assign(r.weights.begin() + t0 * r.top_k, r.weights.begin() + t1 * r.top_k);
  return s;
}

// Two-batch overlap inside one MoE layer: halves A and B of this rank's tokens.
// dispatch(A) | experts(A) while dispatch(B) flies | experts(B) while combine(A)
// flies | combine(B). Every rank runs the same sequence (halves may be empty).
Status RunOverlapped(const MoeLayer& layer, const ExpertMap& map, Communicator& comm,
                     const RoutingResult& routing, const float* x, int64_t T, int64_t H,
                     float* out, ThreadPool& pool) {
  const int64_t half = T / 2;
  const int64_t t0[2] = {0, half}, t1[2] = {half, T};
  RoutingResult r[2] = {SliceRouting(routing, 0, half), SliceRouting(routing, half, T)};
  EpDispatchHandle h[2];
  for (int i = 0; i < 2; ++i) {
    MR_ASSIGN_OR_RETURN(h[i], PlanEpDispatch(r[i], map, comm));
  }
  std::vector<ExpertWeights> local;
  for (int s = map.first[comm.rank()]; s < map.first[comm.rank() + 1]; ++s)
    local.push_back(layer.experts[map.slot_expert[s]]);
  MoeLayer local_layer = layer;
  local_layer.experts = local;
  ScratchVector<float> rows[2], mine[2];
  EpTransfer d0 = StartEpDispatch(h[0], x, H, layer.dispatch_dtype, comm);
  MR_RETURN_IF_ERROR(FinishEpDispatch(h[0], H, layer.dispatch_dtype, d0, &rows[0]));
  EpTransfer d1 = StartEpDispatch(h[1], x + half * H, H, layer.dispatch_dtype, comm);
  const ExpertOutputs e0 = RunExperts(local_layer, std::move(rows[0]), h[0].local_offsets, x,
                                      half, H, pool);
  MR_RETURN_IF_ERROR(FinishEpDispatch(h[1], H, layer.dispatch_dtype, d1, &rows[1]));
  EpTransfer c0 = StartEpCombine(h[0], e0.out.data(), H, comm);
  const ExpertOutputs e1 = RunExperts(local_layer, std::move(rows[1]), h[1].local_offsets,
                                      x + half * H, T - half, H, pool);
  MR_RETURN_IF_ERROR(FinishEpCombine(c0, &mine[0]));
  MR_RETURN_IF_ERROR(EpCombine(h[1], e1.out.data(), H, comm, &mine[1]));
  const ExpertOutputs* e[2] = {&e0, &e1};
  for (int i = 0; i < 2; ++i) {
    CombineExpertOutputs(h[i].plan, r[i], mine[i].data(), H, out + t0[i] * H, pool);
    AddShared(layer, *e[i], t1[i] - t0[i], H, out + t0[i] * H);
  }
  return Status::Ok();
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
  // The dispatched rows and the expert outputs reuse this thread's buffers from
  // the previous layer (tens of MB in a long prefill: fresh ones were zero-filled
  // and page-faulted every layer). When every expert's rows are consecutive
  // tokens (always for one token: a decode step of one sequence) and need no
  // rounding, the experts read x in place: no copy (~6 us a layer for 8 rows,
  // into lines long out of cache), and the int8 path quantizes x once for all
  // experts instead of once per expert.
  thread_local ScratchVector<float> tls_rows, tls_out;
  ScratchVector<float> rows = std::move(tls_rows);
  const bool in_place = layer.dispatch_dtype == DispatchDType::kF32 &&
                        RowsAreTokenRuns(plan.expert_offsets, plan.row_token);
  if (!in_place) {
    DispatchTokens(plan, x, H, &rows);
    RoundRows(rows.data(), static_cast<int64_t>(plan.row_token.size()), H, layer.dispatch_dtype);
  }
  const double dispatch_s = timer.Seconds();
  ExpertOutputs e =
      RunExperts(layer, std::move(rows), plan.expert_offsets, x, T, H, pool, std::move(tls_out),
                 in_place ? plan.row_token : std::vector<int32_t>());
  const double expert_s = timer.Seconds() - dispatch_s;
  CombineExpertOutputs(plan, routing, e.out.data(), H, out, pool);
  AddShared(layer, e, T, H, out);
  tls_rows = std::move(e.rows);
  tls_out = std::move(e.out);
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
  if (layer.overlap) {
    MR_RETURN_IF_ERROR(RunOverlapped(layer, map, comm, routing, x, T, H, out, pool));
    if (layer.stats != nullptr) {
      layer.stats->AddRouting(layer.layer_index, routing);
      layer.stats->expert_s += timer.Seconds();  // not split by phase when overlapped
    }
    return Status::Ok();
  }
  MR_ASSIGN_OR_RETURN(EpDispatchHandle handle, PlanEpDispatch(routing, map, comm));
  ScratchVector<float> rows;
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
  ScratchVector<float> mine;
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
