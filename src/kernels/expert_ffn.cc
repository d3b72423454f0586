#include "kernels/expert_ffn.h"

#include <vector>

#include "core/scratch.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace moerack {

bool RowsAreTokenRuns(std::span<const int64_t> offsets, std::span<const int32_t> row_token) {
  for (size_t e = 0; e + 1 < offsets.size(); ++e)
    for (int64_t r = offsets[e] + 1; r < offsets[e + 1]; ++r)
      if (row_token[r] != row_token[r - 1] + 1) return false;
  return true;
}

void GroupedExpertFfn(const ExpertFfnParams& p, ThreadPool& pool) {
  const int64_t rows = p.expert_offsets.back();
  if (rows == 0) return;
  CHECK_EQ(p.expert_offsets.size(), p.experts.size() + 1);
  CHECK(p.row_token.empty() || (static_cast<int64_t>(p.row_token.size()) == rows &&
                                RowsAreTokenRuns(p.expert_offsets, p.row_token)))
      << "GroupedExpertFfn: row_token does not give each expert a run of consecutive tokens";
  // Expert e's first row of x: dispatched rows, or its first token in place.
  const auto x_rows = [&](int64_t r0) {
    return p.x + (p.row_token.empty() ? r0 : p.row_token[r0]) * p.hidden;
  };
  // Scratch for each expert's [rows, inter] gate and up activations.
  std::vector<int64_t> scratch(p.experts.size() + 1, 0);
  for (size_t e = 0; e < p.experts.size(); ++e) {
    const ExpertWeights& w = p.experts[e];
    CHECK(w.gate.cols == p.hidden && w.up.cols == p.hidden && w.down.rows == p.hidden &&
          w.up.rows == w.gate.rows && w.down.cols == w.gate.rows);
    scratch[e + 1] = scratch[e] + (p.expert_offsets[e + 1] - p.expert_offsets[e]) * w.gate.rows;
  }
  // Per-thread activation buffers reused across calls (Scratch): fresh vectors
  // of tens of MB per MoE layer (zero-filled and page-faulted each time) took
  // ~10% of a 1024-token prefill.
  thread_local ScratchVector<float> gate, up;
  // Pointers, not the thread_local names: the lambdas below run on pool threads.
  float* const g = Scratch(gate, scratch.back());
  float* const u = Scratch(up, scratch.back());
  std::vector<GemmProblem> problems;
  for (size_t e = 0; e < p.experts.size(); ++e) {
    const int64_t r0 = p.expert_offsets[e], n = p.expert_offsets[e + 1] - r0,
                  inter = p.experts[e].gate.rows;
    if (n == 0) continue;
    problems.push_back({x_rows(r0), p.hidden, n, p.experts[e].gate, g + scratch[e], inter});
    problems.push_back({x_rows(r0), p.hidden, n, p.experts[e].up, u + scratch[e], inter});
  }
  GroupedMatMul(problems, pool);
  pool.ParallelRange(scratch.back(), 4096, [&](int64_t i0, int64_t i1, int) {
    SiluMul(g + i0, u + i0, i1 - i0);
  });
  problems.clear();
  for (size_t e = 0; e < p.experts.size(); ++e) {
    const int64_t r0 = p.expert_offsets[e], n = p.expert_offsets[e + 1] - r0,
                  inter = p.experts[e].gate.rows;
    if (n == 0) continue;
    problems.push_back(
        {g + scratch[e], inter, n, p.experts[e].down, p.out + r0 * p.hidden, p.hidden});
  }
  GroupedMatMul(problems, pool);
}

}  // namespace moerack
