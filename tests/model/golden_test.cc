// Golden logits: moerack against tests/reference/reference.py, an independent
// float64 PyTorch implementation of transformers' modeling code (cross-checked
// once against llama.cpp: 1.1e-7 relative, tests/reference/README.md). The
// models are small random checkpoints made by `moerack random-model` from the
// configs next to them; the tokens are in tests/data/golden_tokens.txt.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>

#include "core/mapped_file.h"
#include "core/npy.h"
#include "model/registry.h"
#include "test_util.h"

namespace moerack {
namespace {

const std::string kData = std::string(MOERACK_SOURCE_DIR) + "/tests/data/";

std::vector<int32_t> GoldenTokens() {
  auto text = ReadFileToString(kData + "golden_tokens.txt");
  CHECK(text.ok());
  std::vector<int32_t> ids;
  std::stringstream ss(*text);
  for (std::string item; std::getline(ss, item, ',');) ids.push_back(std::stoi(item));
  return ids;
}

using testing_util::RelError;
using testing_util::SequenceLogits;

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, PrefillDecodeAndChunkedMatchReference) {
  const std::string dir = kData + GetParam();
  auto model = LoadModel(dir);
  ASSERT_TRUE(model.ok()) << model.status().message();
  auto golden = ReadNpyF32(dir + "/golden_logits.npy");
  ASSERT_TRUE(golden.ok()) << golden.status().message();
  const std::vector<int32_t> tokens = GoldenTokens();
  ASSERT_EQ(golden->shape[0], static_cast<int64_t>(tokens.size()));
  ASSERT_EQ(golden->shape[1], (*model)->config().vocab_size);

  const std::vector<float> prefill = SequenceLogits(**model, tokens, {1 << 20}, 1);
  EXPECT_LE(RelError(prefill, golden->data), 1e-4);
  // Prefill 5, then decode one token at a time, at 2 threads: bit-identical.
  std::vector<int64_t> decode_sizes(tokens.size(), 1);
  decode_sizes[0] = 5;
  EXPECT_EQ(SequenceLogits(**model, tokens, decode_sizes, 2), prefill);
  // Chunked prefill in uneven chunks crossing block boundaries: bit-identical.
  EXPECT_EQ(SequenceLogits(**model, tokens, {7, 3, 16, 1}, 2), prefill);
}

INSTANTIATE_TEST_SUITE_P(
    Models, GoldenTest,
    ::testing::Values("tiny-qwen3-moe", "tiny-qwen3-moe-sparse2", "tiny-mixtral",
                      // DeepSeek-V3 family: q_lora + grouped sigmoid routing + YaRN +
                      // shared expert + dense lead layer; q_lora null + tied
                      // embeddings; Kimi K2; Mistral Large 3; block FP8 weights.
                      "tiny-deepseek-v3", "tiny-deepseek-v3-qnull", "tiny-kimi-k2",
                      "tiny-mistral-large-3", "tiny-deepseek-v3-fp8"),
    testing_util::ParamName{});

// FP8 (E4M3) KV cache: close to the f32 golden (GQA and the MLA latent cache),
// and still bit-identical between whole prefill, chunks and decode.
class KvFp8Test : public ::testing::TestWithParam<std::string> {};

TEST_P(KvFp8Test, CloseToGoldenAndChunkingInvariant) {
  const std::string dir = kData + GetParam();
  auto model = LoadModel(dir);
  ASSERT_TRUE(model.ok()) << model.status().message();
  auto golden = ReadNpyF32(dir + "/golden_logits.npy");
  ASSERT_TRUE(golden.ok());
  const std::vector<int32_t> tokens = GoldenTokens();
  const std::vector<float> prefill = SequenceLogits(**model, tokens, {1 << 20}, 1, DType::kFP8E4M3);
  const double err = RelError(prefill, golden->data);
  EXPECT_GT(err, 0.0);  // the cache really is FP8
  EXPECT_LE(err, 0.1);  // measured 0.007 (GQA) and 0.042 (MLA latent)
  EXPECT_EQ(SequenceLogits(**model, tokens, {5, 1, 1, 9, 2}, 2, DType::kFP8E4M3), prefill);
}

INSTANTIATE_TEST_SUITE_P(Models, KvFp8Test, ::testing::Values("tiny-qwen3-moe", "tiny-deepseek-v3"),
                         testing_util::ParamName{});

// The CLI path: `moerack logits` (prefill and --decode-from) against the golden.
class GoldenCliTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenCliTest, LogitsCommandMatchesReference) {
  const std::string dir = kData + GetParam();
  auto golden = ReadNpyF32(dir + "/golden_logits.npy");
  ASSERT_TRUE(golden.ok());
  std::string tokens;
  for (int32_t t : GoldenTokens()) tokens += (tokens.empty() ? "" : ",") + std::to_string(t);
  for (const std::string extra : {"", " --decode-from 3 --threads 2"}) {
    const std::string out = ::testing::TempDir() + "/cli_logits_" + GetParam() + "_" +
                            std::to_string(getpid()) + ".npy";
    const std::string cmd = std::string(MOERACK_BINARY) + " logits --model " + dir + " --tokens " +
                            tokens + " --out " + out + extra;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto got = ReadNpyF32(out);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->shape, golden->shape);
    EXPECT_LE(RelError(got->data, golden->data), 1e-4) << extra;
  }
}

// Expert parallelism (LocalComm threads): `logits --ep N` writes exactly the
// bytes of the single-rank run, prefill and decode (DESIGN.md principle 2),
// also with rows dispatched in FP8 (rounded the same way on one rank).
TEST_P(GoldenCliTest, ExpertParallelLogitsBitIdentical) {
  const std::string dir = kData + GetParam();
  std::string tokens;
  for (int32_t t : GoldenTokens()) tokens += (tokens.empty() ? "" : ",") + std::to_string(t);
  auto run = [&](int ep, const std::string& threads, const std::string& dispatch) {
    const std::string out = ::testing::TempDir() + "/ep_logits_" + GetParam() + "_" +
                            std::to_string(ep) + "_" + std::to_string(getpid()) + ".npy";
    const std::string cmd = std::string(MOERACK_BINARY) + " logits --model " + dir + " --tokens " +
                            tokens + " --out " + out + " --decode-from 4 --ep " +
                            std::to_string(ep) + " --threads " + threads + " --dispatch-dtype " +
                            dispatch;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto got = ReadNpyF32(out);
    EXPECT_TRUE(got.ok());
    std::remove(out.c_str());
    return got.ok() ? got->data : std::vector<float>{};
  };
  for (const std::string dispatch : {"f32", "fp8"}) {
    const std::vector<float> one = run(1, "1", dispatch);
    ASSERT_FALSE(one.empty());
    for (int ep : {2, 3, 4, 8})
      EXPECT_EQ(run(ep, ep == 3 ? "2" : "1", dispatch), one) << "ep " << ep << " " << dispatch;
  }
}

// `generate --ep N`: sequence i on rank i % N (data-parallel attention), experts
// spread; sampled tokens equal the single-rank run's, including ranks without sequences.
TEST_P(GoldenCliTest, ExpertParallelGenerateBitIdentical) {
  const std::string dir = kData + GetParam();
  auto run = [&](int ep, int num_seqs) {  // ep < 0: |ep| ranks with --overlap
    const std::string out = ::testing::TempDir() + "/ep_gen_" + GetParam() + "_" +
                            std::to_string(ep) + "_" + std::to_string(getpid()) + ".txt";
    const std::string cmd = std::string(MOERACK_BINARY) + " generate --model " + dir +
                            " --tokens 3,4,5,6,7 --max-tokens 9 --ignore-eos --output-tokens" +
                            " --temperature 0.8 --seed 5 --num-seqs " + std::to_string(num_seqs) +
                            " --ep " + std::to_string(ep < 0 ? -ep : ep) +
                            (ep < 0 ? " --overlap" : "") + " >" + out + " 2>/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto text = ReadFileToString(out);
    std::remove(out.c_str());
    return text.ok() ? *text : std::string();
  };
  for (int num_seqs : {1, 5}) {
    const std::string one = run(1, num_seqs);
    ASSERT_FALSE(one.empty());
    for (int ep : {2, 3}) EXPECT_EQ(run(ep, num_seqs), one) << "ep " << ep << " seqs " << num_seqs;
    EXPECT_EQ(run(-2, num_seqs), one) << "ep 2 with --overlap, seqs " << num_seqs;
  }
}

// --stats: every routed (token, slot) pair is counted once, the same at EP=1
// and EP=2 (routing does not depend on the placement), and the rank loads add up.
TEST_P(GoldenCliTest, StatsCountEveryRoutedToken) {
  const std::string dir = kData + GetParam();
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok());
  auto run = [&](int ep) {
    const std::string out = ::testing::TempDir() + "/stats_" + GetParam() + "_" +
                            std::to_string(ep) + "_" + std::to_string(getpid()) + ".json";
    const std::string cmd = std::string(MOERACK_BINARY) + " generate --model " + dir +
                            " --tokens 3,4,5,6 --max-tokens 5 --ignore-eos --num-seqs 3 --ep " +
                            std::to_string(ep) + " --stats " + out + " >/dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto text = ReadFileToString(out);
    std::remove(out.c_str());
    return text.ok() ? nlohmann::json::parse(*text) : nlohmann::json();
  };
  const nlohmann::json one = run(1), two = run(2);
  ASSERT_EQ(two["ep_size"], 2);
  ASSERT_EQ(two["ranks"].size(), 2u);
  // 3 sequences x (4 prompt + 4 decoded tokens) pass every MoE layer, top_k slots each.
  const double routed = 3.0 * 8 * config->num_experts_per_tok;
  for (size_t l = 0; l < one["layers"].size(); ++l) {
    EXPECT_EQ(one["layers"][l]["expert_tokens"], two["layers"][l]["expert_tokens"]) << l;
    double sum = 0, rank_sum = 0;
    for (double v : two["layers"][l]["expert_tokens"]) sum += v;
    for (double v : two["layers"][l]["rank_tokens"]) rank_sum += v;
    if (config->layer_is_moe[l]) {
      EXPECT_EQ(sum, routed) << l;
    }
    EXPECT_EQ(rank_sum, sum) << l;
  }
}

// EPLB at run time: placements replan every 2 steps with 2 redundant slots and
// switch at step boundaries; the sampled tokens equal the single-rank run's.
// With a weight mover slowed to a minute, serving keeps going on the old
// placement: the run completes with the same tokens and no switch applied.
TEST_P(GoldenCliTest, EplbSwitchesPlacementsWithoutChangingOutputs) {
  const std::string dir = kData + GetParam();
  auto run = [&](const std::string& extra, nlohmann::json* stats) {
    const std::string base = ::testing::TempDir() + "/eplb_" + GetParam() + "_" +
                             std::to_string(getpid());
    const std::string cmd = std::string(MOERACK_BINARY) + " generate --model " + dir +
                            " --tokens 3,4,5,6 --max-tokens 12 --ignore-eos --output-tokens" +
                            " --temperature 0.7 --seed 9 --num-seqs 4 " + extra + " --stats " +
                            base + ".json >" + base + ".txt 2>/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto text = ReadFileToString(base + ".txt");
    auto json_text = ReadFileToString(base + ".json");
    if (json_text.ok()) *stats = nlohmann::json::parse(*json_text);
    std::remove((base + ".txt").c_str());
    std::remove((base + ".json").c_str());
    return text.ok() ? *text : std::string();
  };
  nlohmann::json one_stats, eplb_stats, slow_stats;
  const std::string one = run("--ep 1", &one_stats);
  ASSERT_FALSE(one.empty());
  EXPECT_EQ(run("--ep 2 --eplb-slots 2 --eplb-interval 2", &eplb_stats), one);
  ASSERT_GE(eplb_stats["eplb"].size(), 2u);
  EXPECT_FALSE(eplb_stats["eplb"][0]["applied_at_step"].is_null());
  EXPECT_EQ(run("--ep 2 --eplb-slots 2 --eplb-interval 2 --eplb-mover-delay-ms 60000", &slow_stats),
            one);
  ASSERT_EQ(slow_stats["eplb"].size(), 1u);  // planned once, still moving at the end
  EXPECT_TRUE(slow_stats["eplb"][0]["applied_at_step"].is_null());
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenCliTest,
                         ::testing::Values("tiny-qwen3-moe", "tiny-deepseek-v3"),
                         testing_util::ParamName{});

}  // namespace
}  // namespace moerack
