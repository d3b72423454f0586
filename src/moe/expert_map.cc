#include "moe/expert_map.h"

#include <algorithm>
#include <numeric>

#include "core/check.h"

namespace moerack {

ExpertMap ExpertMap::FromSlots(int num_experts, std::vector<int> slot_expert,
                               const std::vector<int>& slots_per_rank) {
  ExpertMap m;
  m.num_experts = num_experts;
  m.ep_size = static_cast<int>(slots_per_rank.size());
  CHECK_GE(m.ep_size, 1);
  m.first.push_back(0);
  for (int n : slots_per_rank) m.first.push_back(m.first.back() + n);
  CHECK_EQ(m.first.back(), static_cast<int>(slot_expert.size()));
  m.slot_expert = std::move(slot_expert);
  m.replicas.assign(static_cast<size_t>(num_experts), {});
  for (int s = 0; s < m.num_slots(); ++s) {
    CHECK(m.slot_expert[s] >= 0 && m.slot_expert[s] < num_experts) << "slot " << s;
    m.replicas[m.slot_expert[s]].push_back(s);
  }
  for (int e = 0; e < num_experts; ++e) CHECK(!m.replicas[e].empty()) << "expert " << e << " has no slot";
  return m;
}

ExpertMap ExpertMap::Contiguous(int num_experts, int ep_size) {
  CHECK(num_experts >= 0 && ep_size >= 1);
  std::vector<int> per_rank;
  for (int r = 0; r < ep_size; ++r)
    per_rank.push_back(num_experts / ep_size + (r < num_experts % ep_size ? 1 : 0));
  std::vector<int> slots(static_cast<size_t>(num_experts));
  std::iota(slots.begin(), slots.end(), 0);
  return FromSlots(num_experts, std::move(slots), per_rank);
}

int ExpertMap::RankOfSlot(int slot) const {
  CHECK(slot >= 0 && slot < num_slots()) << "slot " << slot;
  return static_cast<int>(std::upper_bound(first.begin(), first.end(), slot) - first.begin()) - 1;
}

std::vector<double> ExpertMap::RankLoad(std::span<const double> expert_tokens) const {
  std::vector<double> load(static_cast<size_t>(ep_size), 0.0);
  for (int s = 0; s < num_slots(); ++s) {
    const int e = slot_expert[s];
    load[RankOfSlot(s)] += expert_tokens[e] / static_cast<double>(replicas[e].size());
  }
  return load;
}

ExpertMap PlanPlacement(std::span<const double> expert_tokens, int num_slots, int ep_size) {
  const int E = static_cast<int>(expert_tokens.size());
  CHECK(ep_size >= 1 && num_slots >= E && num_slots % ep_size == 0)
      << num_slots << " slots for " << E << " experts on " << ep_size << " ranks";
  // Replicate: each extra slot to the expert with the most tokens per copy.
  std::vector<int> copies(static_cast<size_t>(E), 1);
  for (int extra = E; extra < num_slots; ++extra) {
    int best = 0;
    for (int e = 1; e < E; ++e)
      if (expert_tokens[e] / copies[e] > expert_tokens[best] / copies[best]) best = e;
    ++copies[best];
  }
  // Pack: copies heaviest first, each onto the least-loaded rank with a free
  // slot that does not hold the expert yet (if every rank with room does, any).
  struct Item {
    int expert;
    double load;
  };
  std::vector<Item> items;
  for (int e = 0; e < E; ++e)
    for (int c = 0; c < copies[e]; ++c) items.push_back({e, expert_tokens[e] / copies[e]});
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.load > b.load; });
  const int per_rank = num_slots / ep_size;
  std::vector<std::vector<int>> rank_experts(static_cast<size_t>(ep_size));
  std::vector<double> rank_load(static_cast<size_t>(ep_size), 0.0);
  for (const Item& it : items) {
    int pick = -1;
    for (bool allow_duplicate : {false, true}) {
      for (int r = 0; r < ep_size; ++r) {
        if (static_cast<int>(rank_experts[r].size()) >= per_rank) continue;
        const bool has = std::find(rank_experts[r].begin(), rank_experts[r].end(), it.expert) !=
                         rank_experts[r].end();
        if (has && !allow_duplicate) continue;
        if (pick < 0 || rank_load[r] < rank_load[pick]) pick = r;
      }
      if (pick >= 0) break;
    }
    rank_experts[pick].push_back(it.expert);
    rank_load[pick] += it.load;
  }
  std::vector<int> slot_expert;
  std::vector<int> slots_per_rank;
  for (int r = 0; r < ep_size; ++r) {
    std::sort(rank_experts[r].begin(), rank_experts[r].end());
    slot_expert.insert(slot_expert.end(), rank_experts[r].begin(), rank_experts[r].end());
    slots_per_rank.push_back(static_cast<int>(rank_experts[r].size()));
  }
  return ExpertMap::FromSlots(E, std::move(slot_expert), slots_per_rank);
}

}  // namespace moerack
