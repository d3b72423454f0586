// EvaluateTokens against a direct computation from one forward pass per window.
#include "engine/evaluate.h"

#include <gtest/gtest.h>

#include <cmath>

#include "comm/local_comm.h"
#include "model/random_model.h"
#include "model/registry.h"
#include "test_util.h"

namespace moerack {
namespace {

const std::string kData = std::string(MOERACK_SOURCE_DIR) + "/tests/data/";

TEST(EvaluateTest, MatchesPerWindowComputationAndKl) {
  auto model = LoadModel(kData + "tiny-qwen3-moe");
  auto other = LoadModel(kData + "tiny-qwen3-moe-sparse2");  // a different model, vocab 280
  auto same = LoadModel(kData + "tiny-qwen3-moe");
  ASSERT_TRUE(model.ok() && other.ok() && same.ok());
  auto tokenizer = Tokenizer::FromFile(kData + "tiny-qwen3-moe/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok());
  std::vector<int32_t> ids;
  for (int i = 0; i < 53; ++i) ids.push_back((i * 31 + 7) % 290);
  const int64_t ctx = 10;  // 5 windows of 10 and one of 3
  const int vocab = (*model)->config().vocab_size;
  double nll = 0;
  int64_t scored = 0, bytes = 0;
  for (size_t start = 0; start < ids.size(); start += ctx) {
    const auto window =
        std::span<const int32_t>(ids).subspan(start, std::min<size_t>(ctx, ids.size() - start));
    const std::vector<float> logits = testing_util::SequenceLogits(**model, window);
    for (size_t i = 0; i + 1 < window.size(); ++i) {
      const float* row = logits.data() + i * vocab;
      double mx = row[0], sum = 0;
      for (int v = 0; v < vocab; ++v) mx = std::max<double>(mx, row[v]);
      for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
      nll -= row[window[i + 1]] - mx - std::log(sum);
      ++scored;
      bytes += static_cast<int64_t>(tokenizer->TokenBytes(window[i + 1]).size());
    }
  }
  EvalOptions options;
  options.ctx = ctx;
  options.max_batch_tokens = 25;  // several batches of whole windows
  auto r = EvaluateTokens(**model, ids, *tokenizer, options);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->num_windows, 6);
  EXPECT_EQ(r->num_scored_tokens, scored);
  EXPECT_EQ(r->num_scored_bytes, bytes);
  EXPECT_NEAR(r->nll_nats, nll, 1e-6 * nll);
  EXPECT_NEAR(r->perplexity, std::exp(nll / scored), 1e-6 * r->perplexity);
  EXPECT_NEAR(r->bits_per_byte, nll / std::log(2.0) / bytes, 1e-9 * r->bits_per_byte + 1e-12);

  options.reference = same->get();
  auto self = EvaluateTokens(**model, ids, *tokenizer, options);
  ASSERT_TRUE(self.ok());
  EXPECT_EQ(self->mean_kl_nats, 0.0);  // identical weights, identical logits

  // Same architecture, other random weights: a positive divergence.
  const std::string reseeded = ::testing::TempDir() + "/reseeded";
  ASSERT_TRUE(WriteRandomModel({kData + "tiny-qwen3-moe.json", reseeded, 99}).ok());
  auto reseeded_model = LoadModel(reseeded);
  ASSERT_TRUE(reseeded_model.ok());
  options.reference = reseeded_model->get();
  auto kl = EvaluateTokens(**model, ids, *tokenizer, options);
  ASSERT_TRUE(kl.ok());
  EXPECT_GT(kl->mean_kl_nats, 1e-3);
  EXPECT_EQ(kl->nll_nats, r->nll_nats);  // the reference does not change the model's own score

  options.reference = other->get();
  auto mismatch = EvaluateTokens(**model, ids, *tokenizer, options);
  ASSERT_FALSE(mismatch.ok());  // vocab 280 vs 300
  EXPECT_NE(mismatch.status().message().find("vocab_size"), std::string::npos);

  options.reference = nullptr;
  options.ctx = 1;
  EXPECT_FALSE(EvaluateTokens(**model, ids, *tokenizer, options).ok());
}

// Expert parallelism: window batches round-robin over LocalComm ranks; the
// result (with a reference for KL) is bit-identical to one rank.
TEST(EvaluateTest, ExpertParallelBitIdentical) {
  auto tokenizer = Tokenizer::FromFile(kData + "tiny-deepseek-v3/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok());
  auto reference = LoadModel(kData + "tiny-deepseek-v3");
  ASSERT_TRUE(reference.ok());
  std::vector<int32_t> ids;
  for (int i = 0; i < 97; ++i) ids.push_back((i * 37 + 11) % 250);
  EvalOptions options;
  options.ctx = 9;
  options.max_batch_tokens = 18;  // 6 batches: uneven over 4 ranks
  options.reference = reference->get();
  options.kv_dtype = DType::kFP8E4M3;  // the model differs from its reference: KL > 0
  auto one_model = LoadModel(kData + "tiny-deepseek-v3");
  ASSERT_TRUE(one_model.ok());
  auto one = EvaluateTokens(**one_model, ids, *tokenizer, options);
  ASSERT_TRUE(one.ok()) << one.status().message();
  ASSERT_GT(one->mean_kl_nats, 0.0);
  for (int ep : {2, 4}) {
    std::vector<EvalResult> got(ep);
    const Status st = LocalCommGroup::Run(ep, [&](Communicator& comm) -> Status {
      MR_ASSIGN_OR_RETURN(std::unique_ptr<Model> m,
                          LoadModel(kData + "tiny-deepseek-v3", {comm.rank(), ep}));
      m->set_communicator(&comm);
      auto ref = LoadModel(kData + "tiny-deepseek-v3");
      if (!ref.ok()) return ref.status();
      EvalOptions o = options;
      o.reference = ref->get();
      o.comm = &comm;
      MR_ASSIGN_OR_RETURN(got[comm.rank()], EvaluateTokens(*m, ids, *tokenizer, o));
      return Status::Ok();
    });
    ASSERT_TRUE(st.ok()) << st.message();
    for (int r = 0; r < ep; ++r) {
      EXPECT_EQ(got[r].nll_nats, one->nll_nats) << ep << " " << r;
      EXPECT_EQ(got[r].mean_kl_nats, one->mean_kl_nats);
      EXPECT_EQ(got[r].num_scored_tokens, one->num_scored_tokens);
      EXPECT_EQ(got[r].num_scored_bytes, one->num_scored_bytes);
      EXPECT_EQ(got[r].num_windows, one->num_windows);
    }
  }
}

}  // namespace
}  // namespace moerack
