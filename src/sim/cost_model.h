// CostModel: how long one engine step of one data-parallel attention rank
// takes on a modelled system, with a breakdown whose largest part is what
// bounds the step. By symmetry every rank of an instance runs the same step
// (DESIGN.md: the simulator models one representative rank per pool); load
// imbalance across expert-parallel ranks enters through the MoE part.
//
// Per layer, on one GPU:
//   GEMMs (attention projections, experts, shared/dense MLPs, lm_head):
//     max(FLOPs / (peak(precision) * gemm), bytes / (HBM * hbm))
//   expert weights read = distinct experts the batch activates on the slowest
//     rank (not all experts, not top-k): E_r * (1 - (1 - k/E)^tokens)
//   attention: FLOPs per (query, context) pair (MLA absorbed for decode,
//     expanded for prefill; sliding windows capped) and KV bytes read
//   all-to-all dispatch (precision bytes) + combine (bf16) to the distinct
//     ranks a token's top-k experts live on, over NVLink inside the domain and
//     the scale-out NIC across domains (one copy per remote domain), plus a
//     latency per message phase
//   tensor-parallel all-reduces over NVLink
//   a fixed per-layer overhead (launches, norms, routing, synchronisation)
// Two-batch overlap: each half pays its own weight reads and overheads, and the
// layer takes 2 max(compute, communication) of a half instead of the sum (the
// pipeline fills once per step). Attention TP over the whole instance needs no
// all-to-all (every GPU holds every token; the all-reduce combines).
// Thread-safety: const methods only; share freely.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "sim/hardware.h"
#include "sim/model_spec.h"
#include "sim/precision.h"

namespace moerack::sim {

// The few efficiency factors, shared by every system (never per data point).
// Fitted once on the calibration rows of tests/sim/published.csv
// (`moerack sim --fit tests/sim/published.csv`; README "Simulator"). The
// kernel factors (gemm, hbm, attention, link) turn datasheet peaks into what
// GPU serving kernels achieve; a catalog entry with measured rates (the `cpu`
// entry: `moerack membw`, moerack's own GEMM) already is what the kernels
// achieve, and they count as 1 there. Overhead and skew apply everywhere.
struct Efficiency {
  double gemm = 0.25;               // fraction of dense peak FLOP/s a GEMM reaches
  double hbm = 0.60;                // fraction of HBM bandwidth a weight/KV stream reaches
  double attention = 0.70;          // fraction of bf16 peak FLOP/s attention kernels reach
  double link = 0.40;               // fraction of link bandwidth collectives reach
  double layer_overhead_s = 100e-6; // fixed cost per layer per step (per micro-batch)
  double moe_skew = 0.15;           // routing imbalance beyond sampling noise, after EPLB
};

// Overrides factors from "gemm=0.4,hbm=0.8,...": names as the fields above
// (layer_overhead_us in microseconds). The error names a bad entry.
StatusOr<Efficiency> ParseEfficiency(const std::string& spec, Efficiency base);

// Memory the engine leaves for weights + KV cache (the rest: activations,
// communication buffers, CUDA graphs), as SGLang/vLLM's mem fraction.
inline constexpr double kMemFraction = 0.88;

// How the model runs on one instance (an expert-parallel group of GPUs).
struct Layout {
  int gpus = 1;      // GPUs in the instance
  int tp = 1;        // attention (and dense MLP) tensor parallelism; dp = gpus / tp
  int ep = 1;        // expert parallelism; each expert is split over gpus / ep GPUs
  bool overlap = false;  // two-batch overlap of all-to-all with compute
  int dp() const { return gpus / tp; }
  int moe_tp() const { return gpus / ep; }
};

// Whether `hw` can run `l`: links it needs have bandwidth, tensor parallelism
// stays inside one NVLink domain. The error names the problem.
Status CheckLayout(const HardwareSpec& hw, const Layout& l);

// Options of the whole system that change step cost.
struct SystemOptions {
  Precision precision = Precision::kFp8;  // linear and expert weights/GEMMs
  Precision kv = Precision::kBf16;        // KV cache elements (bf16 or fp8)
  int mtp = 0;                            // MTP draft tokens per decode step
  bool inswitch_reduce = false;           // combine reduced in the NVLink switch (NVLS)
};

// The work of one step on the representative rank, summed from a StepPlan.
struct StepWork {
  double tokens = 0;           // query tokens computed (prefill + decode, incl. MTP drafts)
  double decode_seqs = 0;      // sequences decoding this step
  double decode_ctx = 0;       // sum of decode sequences' context lengths
  double decode_ctx_win = 0;   // same, each capped at the sliding window
  double prefill_tokens = 0;
  double prefill_pairs = 0;      // (query, key) pairs of prefill chunks (causal)
  double prefill_pairs_win = 0;  // same within the sliding window
  double prefill_ctx = 0;        // tokens prefill chunks read back or expand (start + n)
  double sampled = 0;            // rows through lm_head
  // Data-parallel attention ranks meet at every MoE layer, so the step waits
  // for the rank with the most prefill: its prefill work over this rank's
  // (>= 1; scales the prefill share of attention and dense MLPs only).
  double slowest_prefill_scale = 1;
};

enum class Part { kAttention, kExperts, kDenseMlp, kAllToAll, kAllReduce, kLmHead, kOverhead };
inline constexpr int kNumParts = 7;
const char* PartName(Part p);

enum class Bound { kCompute, kMemory, kNetwork, kLatency };
const char* BoundName(Bound b);

struct StepCost {
  double total_s = 0;
  std::array<double, kNumParts> part_s{};    // summed over layers (overlapped parts included)
  std::array<Bound, kNumParts> part_bound{};  // what limits each part
  Part Largest() const;
  // e.g. "experts (memory)".
  std::string BoundLabel() const;
  void Add(const StepCost& other);  // sums (for averages over steps)
};

class CostModel {
 public:
  CostModel(const ModelSpec& model, const HardwareSpec& hw, const Layout& layout,
            const SystemOptions& options, const Efficiency& eff);

  StepCost Step(const StepWork& work) const;

  // Bytes of weights one GPU holds.
  double WeightBytesPerGpu() const;
  // KV bytes one token of context takes on one GPU (sliding-window layers
  // counted at min(1, window / mean_context) of a token).
  double KvBytesPerTokenPerGpu(double mean_context) const;
  // Tokens of KV cache one data-parallel rank can hold (<= 0: the weights do not fit).
  double KvTokenCapacity(double mean_context) const;
  // Seconds to move one request's KV cache of `tokens` tokens from a prefill
  // to a decode instance; `same_domain`: over NVLink, else the scale-out NIC of
  // each of the prefill rank's GPUs.
  double KvTransferSeconds(double tokens, bool same_domain) const;

  const Layout& layout() const { return layout_; }
  const ModelSpec& model() const { return model_; }
  const HardwareSpec& hardware() const { return hw_; }
  const SystemOptions& options() const { return options_; }

 private:
  // One layer over `frac` of the step's work (1, or 0.5 for each overlapped half).
  StepCost Layer(const StepWork& w, bool moe, double frac) const;
  void AllToAll(double tokens_per_gpu, double bytes_per_element, StepCost* c) const;

  ModelSpec model_;
  HardwareSpec hw_;
  Layout layout_;
  SystemOptions options_;
  Efficiency eff_;
};

}  // namespace moerack::sim
