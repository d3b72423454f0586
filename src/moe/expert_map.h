// ExpertMap: which expert-parallel rank holds which routed expert. The default
// placement is contiguous blocks (the first num_experts % ep_size ranks hold one
// more); a rank may hold none. Dense layers, attention, shared experts, the
// router and lm_head are replicated on every rank and are not in the map.
// Thread-safety: a value.
#pragma once

#include <vector>

namespace moerack {

struct ExpertMap {
  int num_experts = 0;
  int ep_size = 1;
  std::vector<int> first;  // [ep_size + 1]: rank r holds experts [first[r], first[r + 1])

  static ExpertMap Contiguous(int num_experts, int ep_size);
  int RankOf(int expert) const;
  int NumLocal(int rank) const { return first[rank + 1] - first[rank]; }
};

}  // namespace moerack
