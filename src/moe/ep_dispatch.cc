#include "moe/ep_dispatch.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"

namespace moerack {

StatusOr<EpDispatchHandle> PlanEpDispatch(const RoutingResult& routing, const ExpertMap& map,
                                          Communicator& comm) {
  const int ep = comm.size(), me = comm.rank();
  CHECK_EQ(map.ep_size, ep);
  EpDispatchHandle h;
  // Logical experts -> physical slots (a replicated expert's tokens take turns).
  RoutingResult slots = routing;
  for (int64_t t = 0; t < routing.num_tokens; ++t)
    for (int k = 0; k < routing.top_k; ++k) {
      int32_t& id = slots.expert_ids[t * routing.top_k + k];
      id = map.SlotFor(id, t);
    }
  h.plan = PlanDispatch(slots, map.num_slots());
  const std::vector<int64_t>& off = h.plan.expert_offsets;
  // Slots are numbered rank by rank, so each destination's rows are one range.
  std::vector<int64_t> send_counts, send_count_sizes(ep), recv_count_sizes(ep);
  h.send_rows.assign(ep, 0);
  for (int d = 0; d < ep; ++d) {
    h.send_rows[d] = off[map.first[d + 1]] - off[map.first[d]];
    for (int e = map.first[d]; e < map.first[d + 1]; ++e) send_counts.push_back(off[e + 1] - off[e]);
    send_count_sizes[d] = map.NumLocal(d) * static_cast<int64_t>(sizeof(int64_t));
    recv_count_sizes[d] = map.NumLocal(me) * static_cast<int64_t>(sizeof(int64_t));
  }
  const int local = map.NumLocal(me);
  h.recv_counts.assign(static_cast<size_t>(ep * local), 0);
  MR_RETURN_IF_ERROR(comm.AllToAllV(send_counts.data(), send_count_sizes, h.recv_counts.data(),
                                    recv_count_sizes));
  h.recv_rows.assign(ep, 0);
  h.local_offsets.assign(static_cast<size_t>(local + 1), 0);
  for (int s = 0; s < ep; ++s) {
    for (int e = 0; e < local; ++e) {
      h.recv_rows[s] += h.recv_counts[s * local + e];
      h.local_offsets[e + 1] += h.recv_counts[s * local + e];
    }
  }
  for (int e = 0; e < local; ++e) h.local_offsets[e + 1] += h.local_offsets[e];
  // Received order (source, expert, sender order) -> grouped order (expert, source, sender order).
  std::vector<int64_t> cursor(h.local_offsets.begin(), h.local_offsets.end() - 1);
  for (int s = 0; s < ep; ++s)
    for (int e = 0; e < local; ++e)
      for (int64_t i = 0; i < h.recv_counts[s * local + e]; ++i) h.grouped_row.push_back(cursor[e]++);
  return h;
}

namespace {

std::vector<int64_t> Bytes(const std::vector<int64_t>& rows, int64_t row_bytes) {
  std::vector<int64_t> b(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) b[i] = rows[i] * row_bytes;
  return b;
}

}  // namespace

EpTransfer StartEpDispatch(const EpDispatchHandle& h, const float* x, int64_t hidden,
                           DispatchDType dtype, Communicator& comm) {
  EpTransfer t;
  ScratchVector<float> dispatched;
  DispatchTokens(h.plan, x, hidden, &dispatched);
  const int64_t sent = static_cast<int64_t>(h.plan.row_token.size());
  const int64_t received = static_cast<int64_t>(h.grouped_row.size());
  const int64_t row_bytes = DispatchRowBytes(dtype, hidden);
  const void* send = nullptr;
  if (dtype == DispatchDType::kF32) {  // f32 rows go as they are
    t.send_f32 = std::move(dispatched);
    send = t.send_f32.data();
  } else {
    t.send.resize(static_cast<size_t>(sent * row_bytes));
    EncodeRows(dispatched.data(), sent, hidden, dtype, t.send.data());
    send = t.send.data();
  }
  t.recv.resize(static_cast<size_t>(received * row_bytes));
  t.pending = comm.StartAllToAllV(send, Bytes(h.send_rows, row_bytes), t.recv.data(),
                                  Bytes(h.recv_rows, row_bytes));
  return t;
}

Status FinishEpDispatch(const EpDispatchHandle& h, int64_t hidden, DispatchDType dtype,
                        EpTransfer& t, ScratchVector<float>* rows) {
  MR_RETURN_IF_ERROR(t.pending->Wait());
  const int64_t received = static_cast<int64_t>(h.grouped_row.size());
  const int64_t row_bytes = DispatchRowBytes(dtype, hidden);
  rows->resize(static_cast<size_t>(received * hidden));
  for (int64_t i = 0; i < received; ++i)
    DecodeRows(t.recv.data() + i * row_bytes, 1, hidden, dtype, rows->data() + h.grouped_row[i] * hidden);
  return Status::Ok();
}

Status EpDispatch(const EpDispatchHandle& h, const float* x, int64_t hidden, DispatchDType dtype,
                  Communicator& comm, ScratchVector<float>* rows) {
  EpTransfer t = StartEpDispatch(h, x, hidden, dtype, comm);
  return FinishEpDispatch(h, hidden, dtype, t, rows);
}

EpTransfer StartEpCombine(const EpDispatchHandle& h, const float* expert_out, int64_t hidden,
                          Communicator& comm) {
  EpTransfer t;
  const int64_t received = static_cast<int64_t>(h.grouped_row.size());
  const int64_t row_bytes = hidden * static_cast<int64_t>(sizeof(float));
  t.send.resize(static_cast<size_t>(received * row_bytes));
  for (int64_t i = 0; i < received; ++i)
    std::memcpy(t.send.data() + i * row_bytes, expert_out + h.grouped_row[i] * hidden,
                static_cast<size_t>(row_bytes));
  t.recv.resize(h.plan.row_token.size() * static_cast<size_t>(row_bytes));
  t.pending = comm.StartAllToAllV(t.send.data(), Bytes(h.recv_rows, row_bytes), t.recv.data(),
                                  Bytes(h.send_rows, row_bytes));
  return t;
}

Status FinishEpCombine(EpTransfer& t, ScratchVector<float>* out) {
  MR_RETURN_IF_ERROR(t.pending->Wait());
  out->resize(t.recv.size() / sizeof(float));
  if (!t.recv.empty()) std::memcpy(out->data(), t.recv.data(), t.recv.size());  // none: no pointer
  return Status::Ok();
}

Status EpCombine(const EpDispatchHandle& h, const float* expert_out, int64_t hidden,
                 Communicator& comm, ScratchVector<float>* out) {
  EpTransfer t = StartEpCombine(h, expert_out, hidden, comm);
  return FinishEpCombine(t, out);
}

}  // namespace moerack
