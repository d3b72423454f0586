// Routing and timing statistics of the MoE layers (`--stats FILE.json`,
// `--stats-svg FILE`): tokens per expert per layer, all-to-all bytes, and the
// time of each phase of a step. Each rank records its own; WriteMoeStats sums
// the ranks' counts and reports every rank's times and the per-layer rank load
// imbalance (max / mean of the tokens each rank's experts received).
// Thread-safety: one recorder per rank, written by its forward pass.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "core/status.h"
#include "moe/expert_map.h"
#include "moe/router.h"

namespace moerack {

struct MoeStats {
  int num_layers = 0;
  int num_experts = 0;
  std::vector<double> expert_tokens;  // [layer][expert]: routed (token, slot) pairs
  double dispatch_bytes = 0;          // sent by this rank (all-to-all payloads)
  double combine_bytes = 0;
  double attention_s = 0, dispatch_s = 0, expert_s = 0, combine_s = 0;
  double num_forward = 0;  // forward passes (steps) this rank ran

  MoeStats(int layers, int experts)
      : num_layers(layers), num_experts(experts),
        expert_tokens(static_cast<size_t>(layers) * static_cast<size_t>(experts), 0.0) {}
  void AddRouting(int layer, const RoutingResult& routing);
};

// Collective when comm is non-null: gathers every rank's stats; rank 0 writes
// the JSON (and, if svg_path is set, a heatmap of expert load per layer).
// maps: the placement of each layer; extra: more top-level fields (e.g. "eplb").
Status WriteMoeStats(const MoeStats& mine, const std::vector<ExpertMap>& maps, Communicator* comm,
                     const std::string& json_path, const std::string& svg_path,
                     const nlohmann::json& extra = nlohmann::json::object());

}  // namespace moerack
