// Expert dispatch and combine, in the phases expert parallelism needs
// (CONVENTIONS.md §5): plan (rows per expert, where each (token, slot) goes)
// -> dispatch (gather token activations grouped by expert) -> the grouped
// expert GEMM on the received rows -> combine (weighted sum back per token, in
// top-k slot order). This is the single-rank implementation; the EP version
// keeps the same phases and exchanges the counts and rows with all-to-alls.
// Thread-safety: pure functions over caller-owned buffers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/scratch.h"
#include "core/status.h"
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

// Precision of the token rows sent to the experts (--dispatch-dtype): f32 (exact),
// bf16 (half the bytes) or fp8 (E4M3 with a per-row f32 scale amax / 448, about
// a quarter). A numerics choice applied identically on one rank, where the rows
// are rounded the same way without being sent, so expert parallelism stays
// bit-identical to one rank under each setting.
enum class DispatchDType : uint8_t { kF32, kBF16, kFP8 };
StatusOr<DispatchDType> ParseDispatchDType(const std::string& name);
// Bytes one encoded row of `hidden` values takes.
int64_t DispatchRowBytes(DispatchDType dtype, int64_t hidden);
void EncodeRows(const float* rows, int64_t num_rows, int64_t hidden, DispatchDType dtype,
                uint8_t* out);
void DecodeRows(const uint8_t* in, int64_t num_rows, int64_t hidden, DispatchDType dtype,
                float* rows);
// rows <- Decode(Encode(rows)): what the experts see after a dispatch in `dtype`.
void RoundRows(float* rows, int64_t num_rows, int64_t hidden, DispatchDType dtype);

// dispatched[row] = x[row_token[row]]; dispatched is [rows, hidden].
void DispatchTokens(const DispatchPlan& plan, const float* x, int64_t hidden,
                    ScratchVector<float>* dispatched);

// y[t] = sum over slots s in order of weight[t, s] * expert_out[slot_row[t, s]].
void CombineExpertOutputs(const DispatchPlan& plan, const RoutingResult& routing,
                          const float* expert_out, int64_t hidden, float* y, ThreadPool& pool);

}  // namespace moerack
