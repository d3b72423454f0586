// Engine: the serving loop. Requests are queued with the Scheduler; each Step
// asks it what to run, has the Executor run it, samples the sequences that
// reached their last known token, and finishes those that hit EOS, a stop
// string, max_tokens or max_model_len.
// Thread-safety: not thread-safe; one owner drives Step.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace moerack {

struct EngineConfig {
  SchedulerConfig scheduler;
  int64_t max_model_len = 0;  // prompt + generated tokens per sequence (capped by the KV cache)
};

enum class FinishReason { kNone, kStop, kLength };  // kStop: EOS or stop string

struct SequenceResult {
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;  // generated tokens (without a final EOS)
  std::string text;             // detokenized output, cut before a matched stop string
  FinishReason finish = FinishReason::kNone;
};

struct EngineStats {
  int64_t prefill_tokens = 0;  // prompt tokens computed
  int64_t decode_tokens = 0;   // tokens computed by single-token decode steps
  double prefill_s = 0;        // step time shared by token count between the two
  double decode_s = 0;
  int64_t num_steps = 0;
  int64_t num_preemptions = 0;
};

class Engine {
 public:
  // `tokenizer` may be null (no text, no stop strings).
  Engine(const ModelConfig& model_config, Executor& executor, const EngineConfig& config,
         const Tokenizer* tokenizer);

  // Validates the prompt (ids in range, length <= max_model_len) and queues it.
  StatusOr<SeqId> AddRequest(std::vector<int32_t> prompt, const SamplingParams& params);
  // Runs one step; returns the sequences that finished in it.
  std::vector<SeqId> Step();
  bool HasWork() const { return scheduler_.HasWork(); }
  void RunToCompletion() {
    while (HasWork()) Step();
  }

  const SequenceResult& Result(SeqId seq) const { return seqs_.at(seq).result; }
  const EngineStats& stats() const { return stats_; }
  const Scheduler& scheduler() const { return scheduler_; }

 private:
  struct Sequence {
    SamplingParams params;
    std::mt19937_64 rng;
    std::vector<int32_t> tokens;  // prompt + generated
    SequenceResult result;
  };
  // Appends a sampled token; returns true when the sequence is finished.
  bool Append(Sequence& s, int32_t token);

  const ModelConfig& model_config_;
  Executor& executor_;
  EngineConfig config_;
  const Tokenizer* tokenizer_;
  Scheduler scheduler_;
  std::map<SeqId, Sequence> seqs_;
  SeqId next_id_ = 0;
  EngineStats stats_;
};

}  // namespace moerack
