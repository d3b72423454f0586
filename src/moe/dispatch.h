// Expert dispatch and combine, in the phases expert parallelism needs
// (CONVENTIONS.md §5): plan (rows per expert, where each (token, slot) goes)
// -> dispatch (gather token activations grouped by expert) -> the grouped
// expert GEMM on the received rows -> combine (weighted sum back per token, in
// top-k slot order). This is the single-rank implementation; the EP version
// keeps the same phases and exchanges the counts and rows with all-to-alls.
// Thread-safety: pure functions over caller-owned buffers.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "moe/router.h"

namespace moerack {

// Where every (token, slot) pair goes.
struct DispatchPlan {
  int num_experts = 0;
  std::vector<int64_t>
      expert_offsets;              // [num_experts + 1]: rows of expert e in the dispatched buffer
  std::vector<int64_t> slot_row;   // [tokens * top_k]: row of (token, slot)
  std::vector<int32_t> row_token;  // [rows]: source token of each dispatched row
};

// Groups rows by expert; within an expert, rows are in (token, slot) order.
DispatchPlan PlanDispatch(const RoutingResult& routing, int num_experts);

// dispatched[row] = x[row_token[row]]; dispatched is [rows, hidden].
void DispatchTokens(const DispatchPlan& plan, const float* x, int64_t hidden,
                    std::vector<float>* dispatched);

// y[t] = sum over slots s in order of weight[t, s] * expert_out[slot_row[t, s]].
void CombineExpertOutputs(const DispatchPlan& plan, const RoutingResult& routing,
                          const float* expert_out, int64_t hidden, float* y, ThreadPool& pool);

}  // namespace moerack
