#include "moe/expert_map.h"

#include <algorithm>

#include "core/check.h"

namespace moerack {

ExpertMap ExpertMap::Contiguous(int num_experts, int ep_size) {
  CHECK(num_experts >= 0 && ep_size >= 1);
  ExpertMap m;
  m.num_experts = num_experts;
  m.ep_size = ep_size;
  m.first.push_back(0);
  for (int r = 0; r < ep_size; ++r)
    m.first.push_back(m.first.back() + num_experts / ep_size + (r < num_experts % ep_size ? 1 : 0));
  return m;
}

int ExpertMap::RankOf(int expert) const {
  CHECK(expert >= 0 && expert < num_experts) << "expert " << expert;
  return static_cast<int>(std::upper_bound(first.begin(), first.end(), expert) - first.begin()) - 1;
}

}  // namespace moerack
