// Model: the forward pass of one architecture over a batch of sequence chunks
// that read and extend a paged KV cache. The engine (scheduler, executor) sees
// models only through this interface.
// Thread-safety: Forward is called from one thread at a time; it parallelises
// internally over the pool it is given.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "comm/communicator.h"
#include "kernels/matmul.h"
#include "moe/expert_map.h"
#include "moe/moe_layer.h"
#include "model/config.h"

namespace moerack {

// A run of consecutive tokens of one sequence. Tokens before start_pos are
// already in the cache; these are written at start_pos, start_pos + 1, ...
struct SequenceChunk {
  std::span<const int32_t> tokens;
  int64_t start_pos = 0;
  std::span<const int32_t> block_table;  // covers positions [0, start_pos + tokens.size())
  enum class Logits { kNone, kLast, kAll } logits = Logits::kLast;
};

struct ForwardBatch {
  std::vector<SequenceChunk> seqs;
};

// Expert parallelism of a loaded model: which share of the routed experts this
// rank loaded (ExpertMap::Contiguous over ep_size ranks).
struct ModelLoadOptions {
  int ep_rank = 0;
  int ep_size = 1;
};

struct WeightFootprint {
  int64_t total_bytes = 0;             // all weights the model reads
  int64_t active_bytes_per_token = 0;  // weights one decoded token reads (top-k experts)
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  // Floats per token per layer in the KV cache.
  virtual int64_t kv_floats_per_token() const = 0;
  virtual WeightFootprint footprint() const = 0;
  // Runs the batch; appends to `logits` the rows asked for, in batch order
  // (each row vocab_size floats). Token ids must be < vocab_size (checked by
  // the caller at the edge). What every architecture shares happens here: the
  // activation-precision scope, the step count of the stats, and the empty-batch
  // rule (skipped on one rank; run on an expert-parallel rank, whose MoE layers
  // are collectives); the architecture's ForwardImpl does the rest.
  void Forward(const ForwardBatch& batch, const KvCacheView& cache, ThreadPool& pool,
               std::vector<float>* logits);

  // Activation precision of the forward pass's matmuls (kernels/matmul.h): f32
  // unless set; Forward runs under ActDTypeScope(act_dtype()).
  void set_act_dtype(ActDType t) { act_dtype_ = t; }
  ActDType act_dtype() const { return act_dtype_; }

  // Expert parallelism: a model loaded with ep_size > 1 holds only its rank's
  // routed experts and needs the ranks' communicator (size ep_size) before its
  // first Forward. Forward is then collective: every rank calls it the same
  // number of times, with an empty batch when it has no tokens.
  void set_communicator(Communicator* comm);
  // Precision of the token rows dispatched to the experts (moe/dispatch.h);
  // applied on one rank too, so EP stays bit-identical per setting.
  void set_dispatch_dtype(DispatchDType t) { dispatch_dtype_ = t; }
  // Two-batch overlap of the MoE all-to-alls with expert compute (EP only).
  void set_overlap(bool on) { overlap_ = on; }
  // Where Forward records routing counts, all-to-all bytes and phase times (null: nowhere).
  void set_stats(MoeStats* stats) { stats_ = stats; }
  MoeStats* stats() const { return stats_; }
  // The placement of each layer's routed experts (one map per decoder layer;
  // dense layers keep an empty placeholder).
  const std::vector<ExpertMap>& expert_maps() const { return expert_maps_; }
  // A new placement (EPLB) for every layer: same EP size; takes effect at the
  // next Forward, which every rank must reach with the same maps.
  void set_expert_maps(std::vector<ExpertMap> maps);
  bool expert_parallel() const { return ep_size_ > 1; }
  // The first communication failure of an expert-parallel Forward (OK if none).
  // Forward itself cannot fail, so after such a failure its outputs are
  // meaningless: drivers check this after every step and stop with the error
  // (the other ranks were told to abort).
  const Status& failure() const { return failure_; }
  // Brings routed expert `expert` of `layer` into memory (EPLB's weight mover;
  // may run on another thread while Forward runs: weights are read-only).
  virtual void PrefetchExpert(int layer, int expert) const = 0;

 protected:
  // Set by the architecture's loader: the placement and this rank.
  void set_expert_placement(int num_experts, int num_layers, const ModelLoadOptions& options);
  int ep_rank() const { return ep_rank_; }
  // The architecture's forward pass (called by Forward, also with an empty batch
  // on expert-parallel ranks).
  virtual void ForwardImpl(const ForwardBatch& batch, const KvCacheView& cache, ThreadPool& pool,
                           std::vector<float>* logits) = 0;
  // Adds to the stats' attention time (no-op without stats).
  void RecordAttentionTime(double seconds) {
    if (stats_ != nullptr) stats_->attention_s += seconds;
  }
  // One MoE layer on this rank's tokens: RunMoeLayer, or RunEpMoeLayer across
  // the ranks (a communication failure aborts the job with its message).
  void RunMoe(const MoeLayer& layer, int layer_index, const float* x, int64_t num_tokens,
              int64_t hidden, float* out, ThreadPool& pool);

 private:
  ActDType act_dtype_ = ActDType::kF32;
  std::vector<ExpertMap> expert_maps_;
  int ep_rank_ = 0;
  int ep_size_ = 1;
  Communicator* comm_ = nullptr;
  DispatchDType dispatch_dtype_ = DispatchDType::kF32;
  bool overlap_ = false;
  MoeStats* stats_ = nullptr;
  Status failure_;
};

}  // namespace moerack
