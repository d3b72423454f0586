// ExpertMap: where the routed experts of one MoE layer live across the
// expert-parallel ranks. Physical slots are numbered rank by rank (rank r holds
// slots [first[r], first[r + 1])); each holds one logical expert, and a hot
// expert may hold several slots (replicas, EPLB). The default placement is
// contiguous blocks with no replicas (the first num_experts % ep_size ranks
// hold one more); a rank may hold none. Dense layers, attention, shared
// experts, the router and lm_head are replicated on every rank and are not in
// the map.
// Thread-safety: a value.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace moerack {

struct ExpertMap {
  int num_experts = 0;
  int ep_size = 1;
  std::vector<int> first;                  // [ep_size + 1]: slots of each rank
  std::vector<int> slot_expert;            // [num_slots]: the logical expert in each slot
  std::vector<std::vector<int>> replicas;  // [num_experts]: its slots, ascending

  static ExpertMap Contiguous(int num_experts, int ep_size);
  // A placement from an explicit slot -> expert table with slots_per_rank[r] slots on rank r;
  // every expert must appear at least once.
  static ExpertMap FromSlots(int num_experts, std::vector<int> slot_expert,
                             const std::vector<int>& slots_per_rank);

  int num_slots() const { return static_cast<int>(slot_expert.size()); }
  int NumLocal(int rank) const { return first[rank + 1] - first[rank]; }
  int RankOfSlot(int slot) const;
  // The slot that serves (token, k) of logical expert e: replicas take turns by
  // token, so a hot expert's tokens spread over its copies. Which copy computes
  // a row never changes its value (same weights, row-independent kernels).
  int SlotFor(int expert, int64_t token) const {
    const std::vector<int>& r = replicas[expert];
    return r[static_cast<size_t>(token % static_cast<int64_t>(r.size()))];
  }
  // Tokens each rank's slots receive for a layer whose experts got `expert_tokens`
  // (a replicated expert's tokens split evenly over its slots).
  std::vector<double> RankLoad(std::span<const double> expert_tokens) const;
};

// EPLB: replicate the hottest experts into `num_slots - num_experts` extra
// slots (each extra slot goes to the expert with the most tokens per copy),
// then pack the copies onto ranks of num_slots / ep_size slots each, heaviest
// first onto the least-loaded rank with room that does not already hold that
// expert (DeepSeek's published EPLB idea: replicate, then pack; written here
// from the description). Deterministic: ties go to the lower expert / rank.
ExpertMap PlanPlacement(std::span<const double> expert_tokens, int num_slots, int ep_size);

}  // namespace moerack
