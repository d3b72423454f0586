// EPLB at run time (`--eplb-slots R --eplb-interval STEPS`): every STEPS
// lockstep steps the ranks sum the window's tokens per expert, plan a new
// placement per MoE layer with R redundant slots (moe/expert_map.h), and a
// background mover brings the weights of each rank's new slots in (here:
// faults their pages in from the shared checkpoint mapping; across hosts it
// would be a copy). Serving never waits for it: steps keep running on the old
// placement, and the switch happens at the first step boundary at which every
// rank reports its mover done (an all-reduce per step while one is pending).
// Outputs stay bit-identical: a placement decides which rank computes a row,
// never its value.
// Thread-safety: one controller per rank, driven by that rank's loop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "model/model.h"
#include "moe/moe_stats.h"

namespace moerack {

struct EplbOptions {
  int redundant_slots = 0;    // R: extra physical slots per layer (experts + R divisible by ep)
  int64_t interval_steps = 0;  // rebalance every this many steps (0: never)
  int mover_delay_ms = 0;      // test/benchmark knob: an artificially slow weight mover
};

class EplbController {
 public:
  // `stats` must be the recorder the model writes to (model.set_stats).
  EplbController(Model& model, Communicator& comm, const MoeStats& stats, EplbOptions options);
  ~EplbController();
  // Call on every rank after each lockstep step (collective).
  Status AfterStep();
  // Rebalances planned and applied, with the max / mean rank load of the window
  // under the old and the new placement (mean over MoE layers).
  nlohmann::json Report() const { return events_; }

 private:
  Status Plan();
  void StartMover(const std::vector<ExpertMap>& maps);

  Model& model_;
  Communicator& comm_;
  const MoeStats& stats_;
  EplbOptions options_;
  int64_t step_ = 0;
  std::vector<double> window_start_;  // stats_.expert_tokens at the last plan
  std::vector<ExpertMap> pending_;    // planned, waiting for the movers
  bool has_pending_ = false;
  std::thread mover_;
  std::atomic<bool> mover_done_{false};
  std::mutex mover_mu_;
  std::condition_variable mover_cv_;
  bool stop_mover_ = false;  // set at destruction: a delayed mover gives up
  nlohmann::json events_ = nlohmann::json::array();
};

}  // namespace moerack
