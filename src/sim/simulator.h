// The discrete-event simulation of one representative data-parallel rank of a
// pool, driving the engine's own Scheduler (engine/scheduler.h) through a
// SimExecutor that prices each StepPlan with the CostModel and advances a
// simulated clock (DESIGN.md principle 1: scheduling is written once).
//
// Entities: requests (arrival time, input/output length, progress), the rank
// (a Scheduler with the rank's KV blocks and batch limits) and its steps.
// Events: arrivals (closed loop: a finished request is replaced at once;
// open loop: Poisson arrivals) and step completions.
// Roles: an aggregated rank prefills (chunked) and decodes; a prefill rank
// drops a request after its first token; a decode rank receives requests with
// their prompt's KV already present (transferred) and decodes.
// Thread-safety: one RankSim per thread.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "engine/scheduler.h"
#include "sim/cost_model.h"

namespace moerack::sim {

// Prices a scheduled step: the work of its chunks, then the cost model.
class SimExecutor {
 public:
  explicit SimExecutor(const CostModel& model) : model_(model) {}
  // `plan` as the Scheduler returned it; `is_decode[i]`: chunk i is a decode
  // step of a sequence past its prompt (its query count includes MTP drafts).
  // `slowest_prefill_scale`: StepWork's field of that name.
  StepCost Execute(const StepPlan& plan, const std::vector<bool>& is_decode,
                   double slowest_prefill_scale = 1) const;
  const CostModel& cost_model() const { return model_; }

 private:
  const CostModel& model_;
};

enum class Role { kAggregated, kPrefill, kDecode };

enum class LengthDist { kFixed, kUniform };  // uniform: [n/2, 3n/2]

struct RankWorkload {
  Role role = Role::kAggregated;
  int64_t isl = 1024;
  int64_t osl = 1024;
  LengthDist dist = LengthDist::kFixed;
  // Closed loop: this many requests in the rank at all times (started in
  // steady state, their progress staggered). Open loop when arrival_rate_per_s > 0.
  int concurrency = 1;
  double arrival_rate_per_s = 0;  // Poisson arrivals at this rank
  double mtp_accept = 0.7;        // probability each MTP draft token is accepted
  uint64_t seed = 1;
};

struct RankLimits {
  int64_t kv_tokens = 0;             // KV cache capacity of the rank
  int block_size = 64;
  int max_num_seqs = 4096;
  int64_t max_batched_tokens = 8192;  // per step
};

struct RankSimResult {
  double duration_s = 0;       // simulated time covered (open loop: until the last arrival)
  int64_t steps = 0;
  int64_t output_tokens = 0;   // tokens produced by decode steps (and first tokens)
  int64_t input_tokens = 0;    // prompt tokens computed
  int64_t finished = 0;        // requests completed
  int64_t preemptions = 0;
  double mean_running = 0;     // sequences in the batch, averaged over steps
  std::vector<double> itl_s;   // per generated token after the first
  std::vector<double> ttft_s;  // per request that got its first token in the run
  StepCost cost;               // summed over steps
  double output_per_s() const { return duration_s > 0 ? output_tokens / duration_s : 0; }
  double input_per_s() const { return duration_s > 0 ? input_tokens / duration_s : 0; }
};

struct RankSimOptions {
  int64_t min_steps = 32;       // closed loop: simulate at least this many steps ...
  int64_t chunk_budget = 1 << 16;  // ... and until steps x running reaches this (or max_steps)
  int64_t max_steps = 4000;
  int64_t open_loop_requests = 200;  // open loop: arrivals to simulate
};

// Runs the rank. Fails when a request could never fit in the KV cache.
StatusOr<RankSimResult> SimulateRank(const CostModel& model, const RankWorkload& workload,
                                     const RankLimits& limits, const RankSimOptions& options = {});

// Percentile q in [0, 100] of `v` (sorted copy); 0 when empty.
double Percentile(std::vector<double> v, double q);
double Mean(const std::vector<double>& v);

}  // namespace moerack::sim
