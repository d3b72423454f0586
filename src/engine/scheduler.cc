#include "engine/scheduler.h"

#include <algorithm>

#include "core/check.h"

namespace moerack {

BlockAllocator::BlockAllocator(int64_t num_blocks) : num_blocks_(num_blocks) {
  // Pop from the back hands out block 0 first.
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int32_t BlockAllocator::Allocate() {
  CHECK(!free_.empty());
  const int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void BlockAllocator::Free(int32_t block) { free_.push_back(block); }

int64_t StepPlan::num_prefill_tokens() const {
  int64_t n = 0;
  for (const auto& c : chunks)
    n += c.num_tokens > 1 || !c.samples || c.start == 0 ? c.num_tokens : 0;
  return n;
}

int64_t StepPlan::num_decode_tokens() const {
  int64_t n = 0;
  for (const auto& c : chunks) n += c.num_tokens == 1 && c.samples && c.start > 0 ? 1 : 0;
  return n;
}

Scheduler::Scheduler(const SchedulerConfig& config) : config_(config), blocks_(config.num_blocks) {
  CHECK_GT(config_.block_size, 0);
  CHECK_GT(config_.max_num_batched_tokens, 0);
}

Status Scheduler::Add(SeqId seq, int64_t num_tokens, int64_t num_computed) {
  if (seqs_.count(seq)) return Error("sequence " + std::to_string(seq) + " already added");
  if (num_tokens <= 0) return Error("a sequence needs at least one token");
  if (num_computed < 0 || num_computed >= num_tokens)
    return Error("a sequence needs at least one token to compute");
  if (BlocksFor(num_tokens + 1) > blocks_.num_blocks()) {
    return Error("prompt of " + std::to_string(num_tokens) +
                 " tokens does not fit in the KV cache (" +
                 std::to_string(blocks_.num_blocks() * config_.block_size) + " tokens)");
  }
  if (!config_.chunked_prefill && num_tokens - num_computed > config_.max_num_batched_tokens) {
    return Error("prompt of " + std::to_string(num_tokens) +
                 " tokens exceeds the per-step token budget without chunked prefill");
  }
  seqs_[seq].num_tokens = num_tokens;
  seqs_[seq].num_computed = num_computed;
  waiting_.push_back(seq);
  return Status::Ok();
}

void Scheduler::AppendToken(SeqId seq) { ++seqs_.at(seq).num_tokens; }

void Scheduler::Remove(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (int32_t b : it->second.block_table) blocks_.Free(b);
  seqs_.erase(it);
  running_.erase(std::remove(running_.begin(), running_.end(), seq), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq), waiting_.end());
}

bool Scheduler::GrowTo(Seq& s, int64_t tokens) {
  const int64_t need = BlocksFor(tokens) - static_cast<int64_t>(s.block_table.size());
  if (need > blocks_.num_free()) return false;
  for (int64_t i = 0; i < need; ++i) s.block_table.push_back(blocks_.Allocate());
  return true;
}

void Scheduler::Preempt(SeqId seq, StepPlan* plan) {
  Seq& s = seqs_.at(seq);
  for (int32_t b : s.block_table) blocks_.Free(b);
  s.block_table.clear();
  s.num_computed = 0;
  running_.erase(std::remove(running_.begin(), running_.end(), seq), running_.end());
  waiting_.push_front(seq);
  plan->preempted.push_back(seq);
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  int64_t budget = config_.max_num_batched_tokens;
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    const SeqId id = running_[i];
    Seq& s = seqs_.at(id);
    const int64_t remaining = s.num_tokens - s.num_computed;
    int64_t n = std::min(remaining, budget);
    if (n < remaining && !config_.chunked_prefill) break;
    while (!GrowTo(s, s.num_computed + n)) {
      // Out of blocks: preempt the newest running sequence (possibly this one).
      const SeqId victim = running_.back();
      Preempt(victim, &plan);
      if (victim == id) {
        n = 0;
        break;
      }
    }
    if (n == 0) break;
    plan.chunks.push_back({id, s.num_computed, n, s.num_computed + n == s.num_tokens});
    budget -= n;
    ++i;
  }
  // Admit waiting sequences, unless someone was just preempted (no room).
  while (plan.preempted.empty() && budget > 0 && !waiting_.empty() &&
         static_cast<int>(running_.size()) < config_.max_num_seqs) {
    const SeqId id = waiting_.front();
    Seq& s = seqs_.at(id);
    if (BlocksFor(s.num_tokens) > blocks_.num_free()) break;
    const int64_t remaining = s.num_tokens - s.num_computed;
    const int64_t n = std::min(remaining, budget);
    if (n < remaining && !config_.chunked_prefill) break;
    CHECK(GrowTo(s, s.num_tokens));
    waiting_.pop_front();
    running_.push_back(id);
    plan.chunks.push_back({id, s.num_computed, n, s.num_computed + n == s.num_tokens});
    budget -= n;
  }
  return plan;
}

void Scheduler::OnStepDone(const StepPlan& plan) {
  for (const auto& c : plan.chunks) {
    auto it = seqs_.find(c.seq);
    if (it == seqs_.end()) continue;
    CHECK_EQ(it->second.num_computed, c.start);
    it->second.num_computed = c.start + c.num_tokens;
  }
}

std::span<const int32_t> Scheduler::BlockTable(SeqId seq) const {
  return seqs_.at(seq).block_table;
}

}  // namespace moerack
