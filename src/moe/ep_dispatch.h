// Expert-parallel dispatch and combine over a Communicator, in the phases of
// CONVENTIONS.md §5: PlanEpDispatch (route locally, exchange per-expert row
// counts) -> EpDispatch (one all-to-all of token rows; returns the rows this
// rank's experts must process, grouped by local expert) -> the grouped expert
// GEMM -> EpCombine (one all-to-all back; returns every row of this rank's own
// tokens in its single-rank dispatch order) -> CombineExpertOutputs as on one
// rank. Because every row's expert output is computed by the same kernel
// whatever batch it lands in (DESIGN.md principle 2) and the weighted sum runs
// in top-k slot order on the token's own rank, results are bit-identical to the
// single-rank layer for any EP size. Every rank must call every phase, also
// with zero tokens.
// Thread-safety: one call per rank at a time; buffers are the caller's.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "moe/dispatch.h"
#include "moe/expert_map.h"
#include "moe/router.h"

namespace moerack {

// What the phases need to route rows out and back.
struct EpDispatchHandle {
  DispatchPlan plan;                   // this rank's tokens, rows grouped by physical slot
  std::vector<int64_t> send_rows;      // [ep]: rows this rank sends to each rank
  std::vector<int64_t> recv_rows;      // [ep]: rows this rank receives from each rank
  std::vector<int64_t> recv_counts;    // [ep][local slots]: rows from rank s for local slot e
  std::vector<int64_t> local_offsets;  // [local slots + 1]: received rows grouped by slot
  // grouped row of the i-th received row (received order = by source rank,
  // then local expert, then the sender's (token, slot) order).
  std::vector<int64_t> grouped_row;
};

StatusOr<EpDispatchHandle> PlanEpDispatch(const RoutingResult& routing, const ExpertMap& map,
                                          Communicator& comm);

// x: this rank's tokens [T, hidden], sent encoded in `dtype`. *rows gets
// [received rows, hidden] (decoded), grouped by local expert as
// handle.local_offsets says.
Status EpDispatch(const EpDispatchHandle& handle, const float* x, int64_t hidden,
                  DispatchDType dtype, Communicator& comm, ScratchVector<float>* rows);

// The two halves of EpDispatch / EpCombine, for overlapping an all-to-all with
// other work (two-batch overlap): Start encodes and launches the exchange,
// Finish waits and decodes. A transfer owns its buffers until finished.
struct EpTransfer {
  ScratchVector<float> send_f32;  // f32 dispatch sends the dispatched rows as they are
  ScratchVector<uint8_t> send, recv;
  std::unique_ptr<Communicator::Pending> pending;
};
EpTransfer StartEpDispatch(const EpDispatchHandle& handle, const float* x, int64_t hidden,
                           DispatchDType dtype, Communicator& comm);
Status FinishEpDispatch(const EpDispatchHandle& handle, int64_t hidden, DispatchDType dtype,
                        EpTransfer& transfer, ScratchVector<float>* rows);
EpTransfer StartEpCombine(const EpDispatchHandle& handle, const float* expert_out, int64_t hidden,
                          Communicator& comm);
Status FinishEpCombine(EpTransfer& transfer, ScratchVector<float>* out);

// expert_out: [received rows, hidden] in EpDispatch's grouped order. *out gets
// [this rank's dispatched rows, hidden] in handle.plan's row order.
Status EpCombine(const EpDispatchHandle& handle, const float* expert_out, int64_t hidden,
                 Communicator& comm, ScratchVector<float>* out);

}  // namespace moerack
