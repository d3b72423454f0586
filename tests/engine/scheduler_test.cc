#include "engine/scheduler.h"

#include <gtest/gtest.h>

namespace moerack {
namespace {

SchedulerConfig Config(int64_t blocks, int64_t budget, int max_seqs = 8) {
  SchedulerConfig c;
  c.num_blocks = blocks;
  c.block_size = 4;
  c.max_num_seqs = max_seqs;
  c.max_num_batched_tokens = budget;
  return c;
}

// Plays the engine: after each step, sequences that sampled get one more token.
void Finish(Scheduler& s, const StepPlan& plan) {
  s.OnStepDone(plan);
  for (const auto& c : plan.chunks) {
    if (c.samples) s.AppendToken(c.seq);
  }
}

TEST(SchedulerTest, ChunkedPrefillUnderTokenBudgetThenDecode) {
  Scheduler s(Config(100, 8));
  ASSERT_TRUE(s.Add(1, 10).ok());
  ASSERT_TRUE(s.Add(2, 3).ok());
  StepPlan p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);  // all 8 tokens go to the first prompt
  EXPECT_EQ(p.chunks[0].seq, 1);
  EXPECT_EQ(p.chunks[0].num_tokens, 8);
  EXPECT_FALSE(p.chunks[0].samples);
  Finish(s, p);
  p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].start, 8);
  EXPECT_EQ(p.chunks[0].num_tokens, 2);
  EXPECT_TRUE(p.chunks[0].samples);
  EXPECT_EQ(p.chunks[1].seq, 2);
  EXPECT_EQ(p.chunks[1].num_tokens, 3);
  Finish(s, p);
  p = s.Schedule();  // both decode one token
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.num_decode_tokens(), 2);
  EXPECT_EQ(p.chunks[0].start, 10);
  EXPECT_EQ(p.chunks[1].start, 3);
}

TEST(SchedulerTest, AdmitsOnlyWhenKvBlocksAreFree) {
  Scheduler s(Config(4, 100));    // 16 token slots
  ASSERT_TRUE(s.Add(1, 9).ok());  // 3 blocks
  ASSERT_TRUE(s.Add(2, 8).ok());  // 2 blocks: does not fit next to 1
  StepPlan p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(s.num_waiting(), 1u);
  EXPECT_EQ(s.blocks().num_free(), 1);
  s.OnStepDone(p);
  s.Remove(1);
  EXPECT_EQ(s.blocks().num_free(), 4);
  p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, 2);
}

TEST(SchedulerTest, PreemptsNewestWhenDecodeNeedsABlock) {
  Scheduler s(Config(4, 100));
  ASSERT_TRUE(s.Add(1, 8).ok());  // 2 blocks, full
  ASSERT_TRUE(s.Add(2, 8).ok());  // 2 blocks, full
  StepPlan p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  Finish(s, p);  // both now have 9 tokens: each needs a third block, none free
  p = s.Schedule();
  ASSERT_EQ(p.preempted.size(), 1u);
  EXPECT_EQ(p.preempted[0], 2);
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, 1);
  EXPECT_EQ(p.chunks[0].start, 8);
  Finish(s, p);
  s.Remove(1);
  p = s.Schedule();  // 2 recomputes all 9 known tokens and samples
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, 2);
  EXPECT_EQ(p.chunks[0].start, 0);
  EXPECT_EQ(p.chunks[0].num_tokens, 9);
  EXPECT_TRUE(p.chunks[0].samples);
}

TEST(SchedulerTest, RespectsMaxNumSeqsAndRejectsOversizedPrompts) {
  Scheduler s(Config(100, 100, /*max_seqs=*/2));
  for (SeqId i = 0; i < 3; ++i) ASSERT_TRUE(s.Add(i, 2).ok());
  StepPlan p = s.Schedule();
  EXPECT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(s.num_waiting(), 1u);
  EXPECT_FALSE(s.Add(9, 400).ok());  // more than the whole cache
  EXPECT_FALSE(s.Add(0, 2).ok());    // duplicate id
}

TEST(SchedulerTest, WithoutChunkingLongPromptWaitsForAFullBudget) {
  SchedulerConfig c = Config(100, 6);
  c.chunked_prefill = false;
  Scheduler s(c);
  ASSERT_TRUE(s.Add(1, 4).ok());
  ASSERT_TRUE(s.Add(2, 4).ok());
  EXPECT_FALSE(s.Add(3, 7).ok());
  StepPlan p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);  // the second prompt does not fit in the remaining 2 tokens
  Finish(s, p);
  p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[1].num_tokens, 4);
}

}  // namespace
}  // namespace moerack
