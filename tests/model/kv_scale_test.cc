// FP8 KV-cache scales from the checkpoint: ModelOpt's `k_proj.k_scale` /
// `v_proj.v_scale`, vLLM's `self_attn.k_scale`, DeepSeek MLA's latent scale.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "model/registry.h"
#include "model/safetensors.h"
#include "test_util.h"

namespace moerack {
namespace {
namespace fs = std::filesystem;
using testing_util::RelError;
using testing_util::SequenceLogits;

const std::vector<int32_t> kTokens = {3, 77, 150, 9, 12, 200, 41, 5, 18};

// A copy of `src` whose attention modules carry FP8 KV scales named `<layer prefix><suffix>`.
std::string WithKvScales(const std::string& src, const std::vector<std::string>& suffixes,
                         float scale, const std::string& tag) {
  auto store = WeightStore::Open(src).value();
  std::vector<TensorToWrite> tensors;
  std::set<std::string> layers;
  for (const std::string& name : store->Names()) {
    const TensorView t = store->Get(name).value();
    tensors.push_back({name, t.dtype, std::vector<int64_t>(t.shape.begin(), t.shape.begin() + t.ndim),
                       std::string(static_cast<const char*>(t.data), t.nbytes())});
    const size_t at = name.find("self_attn.");
    if (at != std::string::npos) layers.insert(name.substr(0, at + 10));
  }
  for (const std::string& layer : layers)
    for (const std::string& s : suffixes)
      tensors.push_back({layer + s, DType::kF32, {}, std::string(reinterpret_cast<const char*>(&scale), 4)});
  const fs::path dir = fs::temp_directory_path() / ("kv_scale_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(fs::path(src) / "config.json", dir / "config.json");
  EXPECT_TRUE(WriteSafetensors((dir / "model.safetensors").string(), tensors).ok());
  return dir.string();
}

TEST(KvScaleTest, CheckpointScalesApplyToTheFp8CacheOnly) {
  for (const std::string model : {"tiny-qwen3-moe", "tiny-deepseek-v3"}) {
    const std::string src = std::string(MOERACK_SOURCE_DIR) + "/tests/data/" + model;
    const bool mla = model == "tiny-deepseek-v3";
    // A scale so small that every cached value saturates E4M3: the logits must notice.
    const std::string modelopt = WithKvScales(
        src, mla ? std::vector<std::string>{"kv_a_proj_with_mqa.k_scale"}
                 : std::vector<std::string>{"k_proj.k_scale", "v_proj.v_scale"},
        1e-4f, model + "_modelopt");
    const std::string vllm = WithKvScales(src, {"k_scale", "v_scale"}, 1e-4f, model + "_vllm");
    auto plain = LoadModel(src), a = LoadModel(modelopt), b = LoadModel(vllm);
    ASSERT_TRUE(plain.ok() && a.ok() && b.ok()) << model;
    const auto fp8_plain = SequenceLogits(**plain, kTokens, {1 << 20}, 1, DType::kFP8E4M3);
    const auto fp8_a = SequenceLogits(**a, kTokens, {1 << 20}, 1, DType::kFP8E4M3);
    EXPECT_EQ(fp8_a, SequenceLogits(**b, kTokens, {1 << 20}, 1, DType::kFP8E4M3)) << model;
    EXPECT_GT(RelError(fp8_a, fp8_plain), 0.05) << model;
    // An f32 cache ignores them.
    EXPECT_EQ(SequenceLogits(**a, kTokens), SequenceLogits(**plain, kTokens)) << model;
    fs::remove_all(modelopt);
    fs::remove_all(vllm);
  }
}

}  // namespace
}  // namespace moerack
