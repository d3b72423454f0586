// The bundled trained model (models/moe-tiny-web, trained by tools/train/):
// its logits on held-out text match the PyTorch reference run on the exported
// bf16 weights, and `moerack eval` matches the training tools' PyTorch
// evaluation (tools/train/eval_ppl.py) with the same windows.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "core/npy.h"
#include "engine/evaluate.h"
#include "model/registry.h"
#include "test_util.h"

namespace moerack {
namespace {

const std::string kModel = std::string(MOERACK_SOURCE_DIR) + "/models/moe-tiny-web";
const std::string kHeldout = std::string(MOERACK_SOURCE_DIR) + "/tests/data/heldout/";

nlohmann::json ReadJson(const std::string& path) {
  auto text = ReadFileToString(path);
  CHECK(text.ok()) << text.status().message();
  return nlohmann::json::parse(*text);
}

TEST(TrainedModelTest, HeldoutLogitsMatchPyTorchReference) {
  auto model = LoadModel(kModel);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const nlohmann::json golden = ReadJson(kHeldout + "golden_logits.json");
  const std::vector<int32_t> tokens = golden["tokens"].get<std::vector<int32_t>>();
  auto expected = ReadNpyF32(kHeldout + "golden_logits.npy");
  ASSERT_TRUE(expected.ok()) << expected.status().message();
  // The tokenizer gives the ids the reference was run on.
  auto tokenizer = Tokenizer::FromFile(kModel + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok());
  EXPECT_EQ(tokenizer->Encode(golden["text"].get<std::string>()), tokens);

  const std::vector<float> logits = testing_util::SequenceLogits(**model, tokens, {1 << 30}, 2);
  ASSERT_EQ(logits.size(), expected->data.size());
  EXPECT_LE(testing_util::RelError(logits, expected->data), 1e-4);
}

// Hugging Face's own tokenizer (tokenizers@0.23.2, tools/tokenizer_golden)
// encodes the whole held-out text to these ids; the awkward strings are in the
// shared table of tests/tokenizer/hf_golden_test.cc.
TEST(TrainedModelTest, TokenizerMatchesHuggingFaceOnHeldoutText) {
  const nlohmann::json golden = ReadJson(std::string(MOERACK_SOURCE_DIR) +
                                         "/tests/data/tokenizer_golden/moe-tiny-web-heldout.json");
  auto tokenizer = Tokenizer::FromFile(kModel + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok());
  auto text = ReadFileToString(kHeldout + "heldout.txt");
  ASSERT_TRUE(text.ok());
  ASSERT_EQ(golden["cases"].size(), 1u);
  ASSERT_EQ(golden["cases"][0]["text"].get<std::string>(), *text);
  const std::vector<int32_t> ids = tokenizer->Encode(*text);
  EXPECT_EQ(ids, golden["cases"][0]["ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(tokenizer->Decode(ids), *text);
}

TEST(TrainedModelTest, EvalPerplexityMatchesPyTorchEvaluation) {
  const nlohmann::json golden = ReadJson(kHeldout + "eval_golden.json");
  auto model = LoadModel(kModel);
  ASSERT_TRUE(model.ok()) << model.status().message();
  auto tokenizer = Tokenizer::FromFile(kModel + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok());
  auto text =
      ReadFileToString(std::string(MOERACK_SOURCE_DIR) + "/" + golden["text"].get<std::string>());
  ASSERT_TRUE(text.ok());
  const std::vector<int32_t> ids = tokenizer->Encode(*text);
  EXPECT_EQ(static_cast<int64_t>(ids.size()), golden["tokens"].get<int64_t>());
  EvalOptions options;
  options.ctx = golden["ctx"].get<int64_t>();
  options.threads = 2;
  auto r = EvaluateTokens(**model, ids, *tokenizer, options);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->num_scored_tokens, golden["scored_tokens"].get<int64_t>());
  EXPECT_EQ(r->num_scored_bytes, golden["scored_bytes"].get<int64_t>());
  const double ppl = golden["perplexity"].get<double>();
  EXPECT_NEAR(r->perplexity, ppl, 0.005 * ppl);
  EXPECT_NEAR(r->bits_per_byte, golden["bits_per_byte"].get<double>(),
              0.005 * golden["bits_per_byte"].get<double>());
}

}  // namespace
}  // namespace moerack
