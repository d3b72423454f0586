// Routers: per token, which experts (top-k) and with what weights.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

namespace moerack {

// The routing of `num_tokens` tokens: for token t and slot s < top_k,
// expert_ids[t * top_k + s] with weight weights[t * top_k + s]. Slots are in
// descending score order (ties: lower expert id first).
struct RoutingResult {
  int64_t num_tokens = 0;
  int top_k = 0;
  std::vector<int32_t> expert_ids;
  std::vector<float> weights;
};

// Softmax over all experts (f32), top-k; with `renormalize` the k weights are
// divided by their sum (Qwen3-MoE norm_topk_prob, Mixtral always).
void RouteSoftmaxTopK(const float* logits, int64_t num_tokens, int num_experts, int top_k,
                      bool renormalize, RoutingResult* out);

}  // namespace moerack
