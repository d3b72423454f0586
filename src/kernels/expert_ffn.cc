#include "kernels/expert_ffn.h"

#include <vector>

#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace moerack {

void GroupedExpertFfn(const ExpertFfnParams& p, ThreadPool& pool) {
  const int64_t rows = p.expert_offsets.back();
  if (rows == 0) return;
  CHECK_EQ(p.expert_offsets.size(), p.experts.size() + 1);
  std::vector<float> gate(static_cast<size_t>(rows * p.inter)), up(gate.size());
  std::vector<GemmProblem> problems;
  for (size_t e = 0; e < p.experts.size(); ++e) {
    const int64_t r0 = p.expert_offsets[e], n = p.expert_offsets[e + 1] - r0;
    if (n == 0) continue;
    problems.push_back({p.x + r0 * p.hidden, p.hidden, n, p.experts[e].gate,
                        gate.data() + r0 * p.inter, p.inter});
    problems.push_back({p.x + r0 * p.hidden, p.hidden, n, p.experts[e].up,
                        up.data() + r0 * p.inter, p.inter});
  }
  GroupedMatMul(problems, pool);
  pool.ParallelRange(rows, 16, [&](int64_t r0, int64_t r1, int) {
    SiluMul(gate.data() + r0 * p.inter, up.data() + r0 * p.inter, (r1 - r0) * p.inter);
  });
  problems.clear();
  for (size_t e = 0; e < p.experts.size(); ++e) {
    const int64_t r0 = p.expert_offsets[e], n = p.expert_offsets[e + 1] - r0;
    if (n == 0) continue;
    problems.push_back({gate.data() + r0 * p.inter, p.inter, n, p.experts[e].down,
                        p.out + r0 * p.hidden, p.hidden});
  }
  GroupedMatMul(problems, pool);
}

}  // namespace moerack
