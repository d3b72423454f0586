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
#include "comm/communicator.h"
#include "kernels/expert_ffn.h"
#include "moe/dispatch.h"
#include "moe/expert_map.h"
#include "moe/moe_stats.h"
#include "moe/router.h"

namespace moerack {

struct MoeLayer {
  TensorView router;                       // [num_experts, hidden]
  RouterParams routing;                    // bias (if any) included
  std::span<const ExpertWeights> experts;  // routed experts
  const ExpertWeights* shared = nullptr;   // optional shared expert
  DispatchDType dispatch_dtype = DispatchDType::kF32;  // rows as the experts see them
  // Two-batch overlap (EP only): the tokens split in two halves whose all-to-alls
  // run while the other half's experts compute. Same outputs, bit for bit.
  bool overlap = false;
  MoeStats* stats = nullptr;  // optional: routing counts, bytes and phase times recorded here
  int layer_index = 0;        // the decoder layer, for stats
};

// out[t] = sum over top-k slots of weight * expert(x[t]) (+ shared(x[t])); x, out [T, hidden].
void RunMoeLayer(const MoeLayer& layer, const float* x, int64_t num_tokens, int64_t hidden,
                 float* out, ThreadPool& pool);

// The same layer with the routed experts spread over the ranks of `comm` as
// `map` says: layer.experts lists every logical expert (views; this rank only
// reads those of its slots), x / out this rank's tokens (possibly none). Bit-identical to RunMoeLayer on
// the same tokens with all experts (moe/ep_dispatch.h). Collective: every rank
// calls it for every MoE layer.
Status RunEpMoeLayer(const MoeLayer& layer, const ExpertMap& map, Communicator& comm,
                     const float* x, int64_t num_tokens, int64_t hidden, float* out,
                     ThreadPool& pool);

}  // namespace moerack
