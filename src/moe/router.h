// Routers: per token, which experts (top-k) and with what weights.
//
// One parametrised router covers the families we run (vLLM's grouped_topk):
//   scores = softmax(logits) (Qwen3-MoE, Mixtral, Mistral Large 3) or sigmoid(logits)
//   (DeepSeek-V3); choice = scores + bias (DeepSeek's e_score_correction_bias: selection only);
//   with groups: rank groups by the sum of their top-2 choice scores (with a bias) or
//     their max (without), keep the best topk_groups, zero the other groups' choice scores;
//   top-k of choice; weights = scores (not choice) of the chosen experts,
//   renormalised to sum 1 if asked (+1e-20, as transformers), times `scaling`.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

namespace moerack {

// The routing of `num_tokens` tokens: for token t and slot s < top_k,
// expert_ids[t * top_k + s] with weight weights[t * top_k + s]. Slots are in
// descending choice-score order (ties: lower expert id first).
struct RoutingResult {
  int64_t num_tokens = 0;
  int top_k = 0;
  std::vector<int32_t> expert_ids;
  std::vector<float> weights;
};

enum class RouterScoring { kSoftmax, kSigmoid };

struct RouterParams {
  int num_experts = 0;
  int top_k = 0;
  RouterScoring scoring = RouterScoring::kSoftmax;
  const float* bias = nullptr;  // [num_experts] or null
  int num_groups = 1;           // n_group; experts split evenly
  int topk_groups = 1;          // topk_group
  bool renormalize = true;      // norm_topk_prob
  float scaling = 1.0f;         // routed_scaling_factor
};

// logits: [num_tokens, num_experts] router outputs.
void RouteTopK(const float* logits, int64_t num_tokens, const RouterParams& params,
               RoutingResult* out);

}  // namespace moerack
