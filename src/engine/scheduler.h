// Scheduler: the continuous-batching policy, as a pure object (DESIGN.md
// principle 1): sequences and KV block accounting in, the step's work out. It
// knows no model, kernel or clock, so the CPU engine and the simulator share it.
//
// Policy (first-come-first-served):
//  1. Running sequences, oldest first, each get their next tokens: one for a
//     decoding sequence, the rest of its prompt (up to the token budget, in
//     chunks when chunked prefill is on) for one still prefilling. A sequence
//     that needs a new KV block when none is free preempts the newest running
//     sequence (its blocks are freed; it goes back to the front of the queue
//     and later recomputes its tokens, which by principle 2 changes nothing).
//  2. Waiting sequences are admitted in order while the step has token budget,
//     the running set is below max_num_seqs, and the blocks for all their
//     known tokens are free (allocated at admission).
// Thread-safety: not thread-safe; one owner.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace moerack {

using SeqId = int64_t;

struct SchedulerConfig {
  int64_t num_blocks = 0;                 // KV cache blocks available
  int block_size = 16;                    // tokens per block
  int max_num_seqs = 256;                 // running sequences at once
  int64_t max_num_batched_tokens = 2048;  // tokens per step (prefill + decode)
  bool chunked_prefill = true;            // split long prompts across steps
};

// Fixed-size KV blocks, handed out by id. Pure accounting: the memory itself
// belongs to the executor's cache.
class BlockAllocator {
 public:
  explicit BlockAllocator(int64_t num_blocks);
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_blocks() const { return num_blocks_; }
  int32_t Allocate();  // precondition: num_free() > 0
  void Free(int32_t block);

 private:
  int64_t num_blocks_;
  std::vector<int32_t> free_;
};

// One sequence's work in a step: compute tokens [start, start + num_tokens).
struct ScheduledChunk {
  SeqId seq = 0;
  int64_t start = 0;
  int64_t num_tokens = 0;
  bool samples = false;  // the chunk reaches the last known token: sample the next one
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;  // running order
  std::vector<SeqId> preempted;        // freed this step, back in the queue
  int64_t num_prefill_tokens() const;  // tokens of chunks that are not single-token decodes
  int64_t num_decode_tokens() const;
  bool empty() const { return chunks.empty(); }
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerConfig& config);

  // Queues a sequence whose first `num_tokens` tokens are known (the prompt).
  // The KV of its first `num_computed` tokens is already present when it is
  // admitted (a disaggregated decode instance receives the prompt's KV from a
  // prefill instance); a preempted sequence recomputes everything.
  // Fails if it could never fit in the KV cache.
  Status Add(SeqId seq, int64_t num_tokens, int64_t num_computed = 0);
  // The engine appended a sampled token to a sequence.
  void AppendToken(SeqId seq);
  // Removes a sequence (finished or aborted) and frees its blocks.
  void Remove(SeqId seq);

  StepPlan Schedule();
  // Marks the plan's chunks computed. Call after the executor ran the plan.
  void OnStepDone(const StepPlan& plan);

  std::span<const int32_t> BlockTable(SeqId seq) const;
  int64_t NumTokens(SeqId seq) const { return seqs_.at(seq).num_tokens; }
  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  size_t num_running() const { return running_.size(); }
  size_t num_waiting() const { return waiting_.size(); }
  const BlockAllocator& blocks() const { return blocks_; }
  const SchedulerConfig& config() const { return config_; }

 private:
  struct Seq {
    int64_t num_tokens = 0;    // known tokens: prompt + generated
    int64_t num_computed = 0;  // tokens whose KV is in the cache
    std::vector<int32_t> block_table;
  };
  int64_t BlocksFor(int64_t tokens) const {
    return (tokens + config_.block_size - 1) / config_.block_size;
  }
  bool GrowTo(Seq& s, int64_t tokens);  // allocates blocks to hold `tokens`; false if out of blocks
  void Preempt(SeqId seq, StepPlan* plan);

  SchedulerConfig config_;
  BlockAllocator blocks_;
  std::unordered_map<SeqId, Seq> seqs_;
  std::deque<SeqId> waiting_;
  std::vector<SeqId> running_;  // admission order
};

}  // namespace moerack
