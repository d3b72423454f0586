// The engine loop on a real (small, random) model: batching, chunked prefill
// and preemption change where tokens are computed, never what (DESIGN.md
// principle 2); sampling is reproducible; stop conditions work.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <numeric>

#include "model/registry.h"
#include "test_util.h"

namespace moerack {
namespace {

const std::string kData = std::string(MOERACK_SOURCE_DIR) + "/tests/data/";

struct RunOptions {
  int64_t kv_tokens = 4096;
  int64_t budget = 2048;
  int max_seqs = 64;
  int threads = 1;
  int64_t max_model_len = 512;
};

class EngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string dir = kData + GetParam();
    auto m = LoadModel(dir);
    ASSERT_TRUE(m.ok()) << m.status().message();
    model_ = std::move(m).value();
    auto t = Tokenizer::FromFile(dir + "/tokenizer.json");
    ASSERT_TRUE(t.ok()) << t.status().message();
    tokenizer_ = std::make_unique<Tokenizer>(std::move(t).value());
  }

  // Runs the prompts together and returns each one's generated tokens.
  std::vector<std::vector<int32_t>> Run(const std::vector<std::vector<int32_t>>& prompts,
                                        const std::vector<SamplingParams>& params,
                                        const RunOptions& setup, EngineStats* stats = nullptr) {
    EngineConfig ec;
    ec.max_model_len = setup.max_model_len;
    ec.scheduler.block_size = 4;
    ec.scheduler.num_blocks = setup.kv_tokens / 4;
    ec.scheduler.max_num_batched_tokens = setup.budget;
    ec.scheduler.max_num_seqs = setup.max_seqs;
    CpuExecutor executor(*model_, ec.scheduler.num_blocks, ec.scheduler.block_size, setup.threads);
    Engine engine(model_->config(), executor, ec, tokenizer_.get());
    std::vector<SeqId> ids;
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto id = engine.AddRequest(prompts[i], params[i]);
      EXPECT_TRUE(id.ok()) << id.status().message();
      ids.push_back(*id);
    }
    engine.RunToCompletion();
    if (stats) *stats = engine.stats();
    std::vector<std::vector<int32_t>> out;
    for (SeqId id : ids) out.push_back(engine.Result(id).output);
    return out;
  }

  static std::vector<int32_t> Prompt(int n, int salt) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) p[i] = (i * 37 + salt * 11 + 5) % 250;
    return p;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

SamplingParams Greedy(int max_tokens) {
  SamplingParams p;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

SamplingParams Sampled(int max_tokens, uint64_t seed) {
  SamplingParams p = Greedy(max_tokens);
  p.temperature = 1.5f;
  p.top_p = 0.95f;
  p.top_k = 50;
  p.seed = seed;
  return p;
}

TEST_P(EngineTest, BatchedChunkedAndPreemptedRunsEqualSingleRuns) {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
  for (int i = 0; i < 6; ++i) {
    prompts.push_back(Prompt(5 + 9 * i, i));
    params.push_back(i % 2 ? Sampled(12, 100 + i) : Greedy(12));
  }
  std::vector<std::vector<int32_t>> alone;
  for (size_t i = 0; i < prompts.size(); ++i)
    alone.push_back(Run({prompts[i]}, {params[i]}, RunOptions{})[0]);
  for (const auto& a : alone) EXPECT_EQ(a.size(), 12u);

  EXPECT_EQ(Run(prompts, params, RunOptions{}), alone) << "batched";
  RunOptions chunked;
  chunked.budget = 7;  // long prompts split across steps, mixed with decodes
  chunked.threads = 2;
  EXPECT_EQ(Run(prompts, params, chunked), alone) << "chunked prefill";
  RunOptions tight;
  tight.kv_tokens = 96;  // not enough for all: sequences are preempted and recomputed
  EngineStats stats;
  EXPECT_EQ(Run(prompts, params, tight, &stats), alone) << "preemption";
  EXPECT_GT(stats.num_preemptions, 0);
}

TEST_P(EngineTest, SeedsAreReproducibleAndMatter) {
  const auto p = Prompt(6, 1);
  const auto a = Run({p}, {Sampled(20, 1)}, RunOptions{})[0];
  EXPECT_EQ(Run({p}, {Sampled(20, 1)}, RunOptions{})[0], a);
  bool any_differs = false;
  for (uint64_t seed = 2; seed < 6 && !any_differs; ++seed) {
    any_differs = Run({p}, {Sampled(20, seed)}, RunOptions{})[0] != a;
  }
  EXPECT_TRUE(any_differs);
}

TEST_P(EngineTest, StopsAtEosStopStringAndMaxModelLen) {
  const auto p = Prompt(6, 2);
  const auto free_run = Run({p}, {Greedy(16)}, RunOptions{})[0];
  ASSERT_EQ(free_run.size(), 16u);

  // A stop token (as EOS): the 4th greedy token ends the sequence where it first appears.
  SamplingParams until_eos = Greedy(16);
  until_eos.stop_token_ids = {free_run[3]};
  const auto eos_run = Run({p}, {until_eos}, RunOptions{})[0];
  const auto first_eos =
      std::find(free_run.begin(), free_run.end(), free_run[3]) - free_run.begin();
  EXPECT_EQ(static_cast<int64_t>(eos_run.size()), first_eos);

  // max_model_len: prompt 6 + 4 generated.
  RunOptions short_len;
  short_len.max_model_len = 10;
  EXPECT_EQ(Run({p}, {Greedy(16)}, short_len)[0].size(), 4u);
}

TEST_P(EngineTest, SequenceLongerThanTheWholeCacheEndsInsteadOfLooping) {
  RunOptions tiny_cache;
  tiny_cache.kv_tokens = 32;  // 8 blocks of 4
  EngineStats stats;
  const auto out = Run({Prompt(6, 4)}, {Greedy(100)}, tiny_cache, &stats);
  EXPECT_EQ(out[0].size(), 32u - 6u);  // stopped at the cache's capacity
}

TEST_P(EngineTest, StopStringCutsTheText) {
  const auto p = Prompt(6, 3);
  EngineConfig ec;
  ec.max_model_len = 512;
  ec.scheduler.num_blocks = 64;
  CpuExecutor executor(*model_, 64, 16, 1);
  Engine engine(model_->config(), executor, ec, tokenizer_.get());
  auto id = engine.AddRequest(p, Greedy(16));
  ASSERT_TRUE(id.ok());
  engine.RunToCompletion();
  const std::string text = engine.Result(*id).text;
  ASSERT_GE(text.size(), 4u);
  const std::string stop = text.substr(2, 2);
  SamplingParams with_stop = Greedy(16);
  with_stop.stop = {stop};
  Engine engine2(model_->config(), executor, ec, tokenizer_.get());
  auto id2 = engine2.AddRequest(p, with_stop);
  ASSERT_TRUE(id2.ok());
  engine2.RunToCompletion();
  EXPECT_EQ(engine2.Result(*id2).text, text.substr(0, text.find(stop)));
  EXPECT_EQ(engine2.Result(*id2).finish, FinishReason::kStop);
}

TEST_P(EngineTest, RejectsBadRequests) {
  EngineConfig ec;
  ec.max_model_len = 8;
  ec.scheduler.num_blocks = 16;
  CpuExecutor executor(*model_, 16, 16, 1);
  Engine engine(model_->config(), executor, ec, nullptr);
  auto too_long = engine.AddRequest(Prompt(9, 0), Greedy(1));
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("--max-model-len"), std::string::npos);
  const int32_t vocab = model_->config().vocab_size;
  auto bad_id = engine.AddRequest({1, vocab}, Greedy(1));
  ASSERT_FALSE(bad_id.ok());
  EXPECT_NE(bad_id.status().message().find(std::to_string(vocab)), std::string::npos);
  EXPECT_FALSE(engine.AddRequest({}, Greedy(1)).ok());
}

INSTANTIATE_TEST_SUITE_P(Models, EngineTest,
                         ::testing::Values("tiny-qwen3-moe", "tiny-deepseek-v3"),
                         testing_util::ParamName{});

}  // namespace
}  // namespace moerack
