// One MoE feed-forward layer, in the phases expert parallelism uses: router
// matmul -> top-k routing -> plan -> dispatch -> the grouped expert GEMM ->
// combine in top-k slot order (+ shared experts, which are replicated and never
// dispatched: they ride in the same grouped GEMM as one more group).
// Thread-safety: uses the pool it is given; buffers are the caller's.
#pragma once

#include <cstdint>
#include <span>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/expert_ffn.h"
#include "moe/router.h"

namespace moerack {

struct MoeLayer {
  TensorView router;                       // [num_experts, hidden]
  RouterParams routing;                    // bias (if any) included
  std::span<const ExpertWeights> experts;  // routed experts
  const ExpertWeights* shared = nullptr;   // optional shared expert
};

// out[t] = sum over top-k slots of weight * expert(x[t]) (+ shared(x[t])); x, out [T, hidden].
void RunMoeLayer(const MoeLayer& layer, const float* x, int64_t num_tokens, int64_t hidden,
                 float* out, ThreadPool& pool);

}  // namespace moerack
