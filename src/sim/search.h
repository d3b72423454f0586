// System-level simulation: whole deployments (pools of instances) built from
// rank simulations, and the search over parallel layouts and batch sizes that
// keeps the best throughput per GPU at each interactivity level (the Pareto
// frontier), like NVIDIA's AIConfigurator but with queueing and KV transfer
// simulated rather than assumed away.
//
// A deployment is aggregated (one pool; each rank prefills chunked and
// decodes) or disaggregated (xPyD: prefill instances hand each request's KV to
// decode instances). Per-GPU figures count every GPU of every pool.
// Thread-safety: functions are reentrant.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/cost_model.h"
#include "sim/simulator.h"

namespace moerack::sim {

enum class Disagg { kAuto, kOn, kOff };

struct SimSetup {
  ModelSpec model;
  HardwareSpec hw;
  SystemOptions system;
  Efficiency eff;
  int64_t isl = 1024;
  int64_t osl = 1024;
  LengthDist dist = LengthDist::kFixed;
  double mtp_accept = 0.7;
  Disagg disagg = Disagg::kAuto;
  int gpus = 0;  // 0: any count up to hw.max_gpus; else at most this many
  uint64_t seed = 1;
};

struct PoolReport {
  Role role = Role::kAggregated;
  int instances = 1;
  Layout layout;                 // of one instance
  double batch_per_rank = 0;     // decode/aggregated: running sequences per DP rank
  double rate_per_rank = 0;      // decode: Poisson arrivals per DP rank (req/s) instead
  int64_t tokens_per_step = 0;   // max tokens per step per DP rank
  double utilization = 0;        // prefill pools: busy fraction
  int gpus() const { return instances * layout.gpus; }
};

struct SystemPoint {
  double tokens_per_s_per_user = 0;       // 1 / mean inter-token latency
  double output_tokens_per_s_per_gpu = 0;
  double total_tokens_per_s_per_gpu = 0;  // input + output
  double ttft_p50_s = 0, ttft_p90_s = 0, ttft_p99_s = 0;
  double itl_mean_s = 0, itl_p50_s = 0, itl_p90_s = 0, itl_p99_s = 0;
  int gpus = 0;
  std::vector<PoolReport> pools;
  StepCost decode_step;  // mean step of the decoding (or aggregated) rank
  double cost_per_million_output_tokens = 0;  // $ at hw.price_per_gpu_hour
  double output_tokens_per_s_per_kw = 0;
  bool disaggregated() const { return pools.size() > 1; }
};

// An aggregated deployment of `instances` x `layout`, each DP rank running
// `concurrency` requests (closed loop) or Poisson arrivals at `rate_per_rank`.
StatusOr<SystemPoint> SimulateAggregated(const SimSetup& s, const Layout& layout, int instances,
                                         double concurrency, double rate_per_rank = 0);

// Prefill capacity of a layout: input tokens/s per GPU with the rank saturated,
// `tokens_per_step` per DP rank.
StatusOr<double> PrefillCapacityPerGpu(const SimSetup& s, const Layout& layout,
                                       int64_t tokens_per_step);

// A disaggregated deployment: `prefill` pool (instances, layout, tokens per
// step) and `decode` pool (instances, layout, batch per rank). TTFT = prefill
// queue + compute (simulated at the arrival rate the decode pool sustains) + KV
// transfer + the first decode step.
StatusOr<SystemPoint> SimulateDisaggregated(const SimSetup& s, const PoolReport& prefill,
                                            const PoolReport& decode);

// Phase-isolated figures of one pool, for comparison with published
// measurements: prefill (saturated; input tokens/s per GPU) or decode (closed
// loop at `batch_per_rank`, KV of isl tokens arriving; output tokens/s per GPU).
StatusOr<SystemPoint> SimulatePhase(const SimSetup& s, const PoolReport& pool);

struct SearchResult {
  std::vector<SystemPoint> frontier;  // sorted by tokens_per_s_per_user, ascending
  int64_t configurations = 0;         // deployments simulated
  double elapsed_s = 0;
};

// Searches layouts (instance size, TP, EP, overlap), batch sizes and, for
// disaggregation, pool sizes; returns the Pareto frontier.
StatusOr<SearchResult> Search(const SimSetup& s);

// Throughput per GPU the frontier offers at >= `tokens_per_s_per_user`
// (0 when none), and the point that gives it (null when none).
const SystemPoint* BestAtInteractivity(const std::vector<SystemPoint>& frontier,
                                       double tokens_per_s_per_user);

}  // namespace moerack::sim
