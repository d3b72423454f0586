// moerack quantize end to end: the checkpoint layouts written, that they load
// packed, and that their logits equal a forward pass with the dequantized
// weights (issue: "the logits equal a forward pass with the dequantized
// weights"); compressed-tensors NVFP4 and the config/exclusion handling.
#include "engine/quantize_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/mapped_file.h"
#include "model/linear_loader.h"
#include "model/registry.h"
#include "model/safetensors.h"
#include "test_util.h"

namespace moerack {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using testing_util::ParamName;
using testing_util::RelError;
using testing_util::SequenceLogits;

const std::vector<int32_t> kTokens = {1, 17, 200, 3, 99, 42, 7, 150, 8, 64, 5, 230, 11};

std::string TempDir(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "_" + info->name() + "_" + tag;
  for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  const fs::path p = fs::temp_directory_path() / (name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  return p.string();
}

std::string DataDir(const std::string& name) {
  return std::string(MOERACK_SOURCE_DIR) + "/tests/data/" + name;
}

// A copy of `quantized` with every Linear dequantized to f32 and the source's
// config (no quantization_config): the forward pass the issue compares against.
void WriteDequantizedCopy(const std::string& quantized, const std::string& out) {
  auto config = LoadModelConfig(quantized);
  ASSERT_TRUE(config.ok()) << config.status().message();
  auto store = WeightStore::Open(quantized);
  ASSERT_TRUE(store.ok());
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : (*store)->Names()) {
    const TensorView t = (*store)->Get(name).value();
    std::string prefix = name;
    if (name.ends_with(".weight_packed")) prefix = name.substr(0, name.size() - 14);
    else if (name.ends_with(".weight")) prefix = name.substr(0, name.size() - 7);
    else if (name.find(".weight_") != std::string::npos || name.ends_with(".input_scale") ||
             name.ends_with(".input_global_scale"))
      continue;  // scales of a quantized Linear
    const bool packed = t.dtype == DType::kU8 || name.ends_with(".weight_packed");
    if (t.ndim == 2 && (packed || t.dtype == DType::kFP8E4M3)) {
      const int64_t N = t.shape[0], K = packed ? t.shape[1] * 2 : t.shape[1];
      auto lw = LoadLinear(**store, config->quant, prefix + ".weight", N, K);
      ASSERT_TRUE(lw.ok()) << lw.status().message();
      const std::vector<float> w = lw->Dequantize();
      tensors.push_back({prefix + ".weight", DType::kF32, {N, K},
                         std::string(reinterpret_cast<const char*>(w.data()), w.size() * 4)});
    } else {
      std::vector<int64_t> shape(t.shape.begin(), t.shape.begin() + t.ndim);
      tensors.push_back(
          {name, t.dtype, shape, std::string(static_cast<const char*>(t.data), t.nbytes())});
    }
  }
  fs::create_directories(out);
  ASSERT_TRUE(WriteSafetensors(out + "/model.safetensors", tensors).ok());
  json cfg = config->raw;
  cfg.erase("quantization_config");
  ASSERT_TRUE(WriteStringToFile(out + "/config.json", cfg.dump()).ok());
}

struct Case {
  std::string model;
  std::string format;
};

class QuantizeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizeTest, LoadsPackedAndMatchesDequantizedForwardPass) {
  // "qwen:nvfp4", "deepseek:fp8", ...
  const std::string param = GetParam();
  const std::string family = param.substr(0, param.find(':')), format = param.substr(param.find(':') + 1);
  const std::string src = DataDir(family == "qwen" ? "tiny-qwen3-moe" : "tiny-deepseek-v3");
  QuantizeOptions o;
  o.model_dir = src;
  o.out_dir = TempDir("q");
  o.format = format;
  o.calib_tokens = 64;
  o.quantize_lm_head = family == "deepseek";
  auto report = QuantizeCheckpoint(o);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_GT(report->num_quantized, 10);
  EXPECT_LT(report->bytes_out, report->bytes_in);

  // The layout.
  auto store = WeightStore::Open(o.out_dir);
  ASSERT_TRUE(store.ok());
  const std::string probe = family == "qwen" ? "model.layers.0.mlp.experts.3.up_proj"
                                             : "model.layers.1.mlp.experts.2.up_proj";
  if (format == "nvfp4") {
    EXPECT_EQ((*store)->Get(probe + ".weight").value().dtype, DType::kU8);
    EXPECT_EQ((*store)->Get(probe + ".weight_scale").value().dtype, DType::kFP8E4M3);
    EXPECT_EQ((*store)->Get(probe + ".weight_scale_2").value().ndim, 0);
    EXPECT_GT(*(*store)->Get(probe + ".input_scale").value().as<float>(), 0.0f);
    EXPECT_TRUE(fs::exists(o.out_dir + "/hf_quant_config.json"));
  } else if (format == "mxfp4") {
    EXPECT_EQ((*store)->Get(probe + ".weight_packed").value().dtype, DType::kU8);
    EXPECT_EQ((*store)->Get(probe + ".weight_scale").value().dtype, DType::kU8);
  } else if (format == "fp8") {
    EXPECT_EQ((*store)->Get(probe + ".weight").value().dtype, DType::kFP8E4M3);
    EXPECT_TRUE((*store)->Has(probe + ".weight_scale_inv"));
  } else {
    EXPECT_EQ((*store)->Get(probe + ".weight").value().dtype, DType::kFP8E4M3);
    EXPECT_EQ((*store)->Get(probe + ".weight_scale").value().ndim, 0);
  }
  // Routers, norms and embeddings untouched; lm_head only when asked.
  const std::string router = family == "qwen" ? "model.layers.0.mlp.gate.weight"
                                              : "model.layers.1.mlp.gate.weight";
  EXPECT_EQ((*store)->Get(router).value().dtype, DType::kBF16);
  EXPECT_EQ((*store)->Get("model.embed_tokens.weight").value().dtype, DType::kBF16);
  const bool lm_head_packed = (*store)->Has("lm_head.weight_packed") ||
                              (*store)->Get("lm_head.weight").value().dtype != DType::kBF16;
  EXPECT_EQ(lm_head_packed, o.quantize_lm_head);

  // Loads (packed: its footprint is the packed bytes) and equals the dequantized forward pass.
  auto quantized = LoadModel(o.out_dir);
  ASSERT_TRUE(quantized.ok()) << quantized.status().message();
  auto original = LoadModel(src);
  ASSERT_TRUE(original.ok());
  EXPECT_LT((*quantized)->footprint().total_bytes, (*original)->footprint().total_bytes);
  const std::string deq_dir = TempDir("deq");
  WriteDequantizedCopy(o.out_dir, deq_dir);
  auto dequantized = LoadModel(deq_dir);
  ASSERT_TRUE(dequantized.ok()) << dequantized.status().message();
  const std::vector<float> a = SequenceLogits(**quantized, kTokens, {5, 1}, 2);
  const std::vector<float> b = SequenceLogits(**dequantized, kTokens);
  EXPECT_LT(RelError(a, b), 1e-5) << param;
  // And stays correlated with the unquantized model (uncorrelated logits give ~1.4; random
  // tiny models with quantized lm_head measure up to ~0.15 for fp8 and ~0.5 for 4-bit).
  const std::vector<float> c = SequenceLogits(**original, kTokens);
  EXPECT_LT(RelError(a, c), format.starts_with("fp8") ? 0.25 : 0.7) << param;
  fs::remove_all(o.out_dir);
  fs::remove_all(deq_dir);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizeTest,
                         ::testing::Values("qwen:nvfp4", "qwen:mxfp4", "qwen:fp8", "qwen:fp8-tensor",
                                           "deepseek:nvfp4", "deepseek:fp8", "deepseek:mxfp4"),
                         ParamName());

// compressed-tensors NVFP4 (weight_packed, reciprocal global scales) loads like
// the ModelOpt checkpoint it was converted from.
TEST(QuantizeCompressedTensorsTest, Nvfp4PackQuantizedMatchesModelOpt) {
  QuantizeOptions o;
  o.model_dir = DataDir("tiny-qwen3-moe");
  o.out_dir = TempDir("modelopt");
  o.format = "nvfp4";
  o.calib_tokens = 32;
  ASSERT_TRUE(QuantizeCheckpoint(o).ok());
  auto store = WeightStore::Open(o.out_dir);
  ASSERT_TRUE(store.ok());
  std::vector<TensorToWrite> tensors;
  auto bytes = [](const TensorView& t) {
    return std::string(static_cast<const char*>(t.data), t.nbytes());
  };
  for (const std::string& name : (*store)->Names()) {
    const TensorView t = (*store)->Get(name).value();
    std::vector<int64_t> shape(t.shape.begin(), t.shape.begin() + t.ndim);
    auto reciprocal = [&](const std::string& new_name) {
      const float v = 1.0f / *t.as<float>();
      tensors.push_back({new_name, DType::kF32, {1}, std::string(reinterpret_cast<const char*>(&v), 4)});
    };
    if (name.ends_with(".weight") && t.dtype == DType::kU8) {
      tensors.push_back({name + "_packed", t.dtype, shape, bytes(t)});
    } else if (name.ends_with(".weight_scale_2")) {
      reciprocal(name.substr(0, name.size() - 15) + ".weight_global_scale");
    } else if (name.ends_with(".input_scale")) {
      reciprocal(name.substr(0, name.size() - 12) + ".input_global_scale");
    } else {
      tensors.push_back({name, t.dtype, shape, bytes(t)});
    }
  }
  const std::string ct = TempDir("ct");
  fs::create_directories(ct);
  ASSERT_TRUE(WriteSafetensors(ct + "/model.safetensors", tensors).ok());
  json cfg = LoadModelConfig(o.out_dir).value().raw;
  cfg["quantization_config"] = {{"quant_method", "compressed-tensors"},
                                {"format", "nvfp4-pack-quantized"},
                                {"ignore", {"lm_head", "re:.*mlp\\.gate$"}}};
  ASSERT_TRUE(WriteStringToFile(ct + "/config.json", cfg.dump()).ok());
  auto a = LoadModel(o.out_dir);
  auto b = LoadModel(ct);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ((*b)->config().quant.method, "compressed-tensors");
  EXPECT_EQ((*b)->config().quant.algo, "NVFP4");
  EXPECT_TRUE(ModuleMatches((*b)->config().quant.exclude, "model.layers.3.mlp.gate"));
  EXPECT_LT(RelError(SequenceLogits(**b, kTokens), SequenceLogits(**a, kTokens)), 1e-5);
  fs::remove_all(o.out_dir);
  fs::remove_all(ct);
}

TEST(QuantizeOptionsTest, ExcludeKeepsModulesAndConfigSaysSo) {
  QuantizeOptions o;
  o.model_dir = DataDir("tiny-qwen3-moe");
  o.out_dir = TempDir("q");
  o.format = "mxfp4";
  o.exclude = {"*.self_attn.*"};
  ASSERT_TRUE(QuantizeCheckpoint(o).ok());
  auto store = WeightStore::Open(o.out_dir).value();
  EXPECT_EQ(store->Get("model.layers.1.self_attn.q_proj.weight").value().dtype, DType::kBF16);
  EXPECT_FALSE(store->Has("model.layers.1.self_attn.q_proj.weight_packed"));
  auto config = LoadModelConfig(o.out_dir);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->quant.algo, "MXFP4");
  EXPECT_TRUE(ModuleMatches(config->quant.exclude, "model.layers.1.self_attn.q_proj"));
  EXPECT_TRUE(ModuleMatches(config->quant.exclude, "lm_head"));
  // A second run into the same (now non-empty) directory is refused.
  auto again = QuantizeCheckpoint(o);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("not empty"), std::string::npos);
  o.format = "int3";
  o.out_dir = TempDir("bad");
  auto bad = QuantizeCheckpoint(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("int3"), std::string::npos);
  fs::remove_all(TempDir("q"));
}

// Output past the shard size is split into model-0000k-of-0000n files with an
// index, written one shard at a time; it loads to the same logits.
TEST(QuantizeOptionsTest, ShardsLargeOutputs) {
  QuantizeOptions o;
  o.model_dir = DataDir("tiny-qwen3-moe");
  o.format = "fp8";
  o.out_dir = TempDir("one");
  ASSERT_TRUE(QuantizeCheckpoint(o).ok());
  QuantizeOptions sharded = o;
  sharded.out_dir = TempDir("sharded");
  sharded.shard_bytes = 64 << 10;
  ASSERT_TRUE(QuantizeCheckpoint(sharded).ok());
  EXPECT_TRUE(fs::exists(sharded.out_dir + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(sharded.out_dir + "/model.safetensors"));
  int files = 0;
  for (const auto& e : fs::directory_iterator(sharded.out_dir))
    files += e.path().extension() == ".safetensors" ? 1 : 0;
  EXPECT_GT(files, 2);
  auto a = LoadModel(o.out_dir), b = LoadModel(sharded.out_dir);
  ASSERT_TRUE(a.ok() && b.ok()) << b.status().message();
  EXPECT_EQ(SequenceLogits(**a, kTokens), SequenceLogits(**b, kTokens));
  fs::remove_all(o.out_dir);
  fs::remove_all(sharded.out_dir);
}

TEST(QuantConfigTest, ParsesEveryPublishedShapeAndRejectsOthers) {
  auto modelopt = ParseQuantConfig(json::parse(R"({"producer": {"name": "modelopt"},
      "quantization": {"quant_algo": "nvfp4", "kv_cache_quant_algo": "FP8",
                       "exclude_modules": ["lm_head", "model.layers.*.mlp.gate"]}})"),
                                   "hf_quant_config.json");
  ASSERT_TRUE(modelopt.ok()) << modelopt.status().message();
  EXPECT_EQ(modelopt->algo, "NVFP4");
  EXPECT_EQ(modelopt->kv_cache_algo, "FP8");
  EXPECT_TRUE(ModuleMatches(modelopt->exclude, "model.layers.12.mlp.gate"));
  EXPECT_FALSE(ModuleMatches(modelopt->exclude, "model.layers.12.mlp.gate_proj"));
  auto ds = ParseQuantConfig(json::parse(R"({"quant_method": "fp8", "fmt": "e4m3",
      "weight_block_size": [64, 32]})"), "config.json");
  ASSERT_TRUE(ds.ok());
  EXPECT_EQ(ds->fp8_block_n, 64);
  EXPECT_EQ(ds->fp8_block_k, 32);
  auto awq = ParseQuantConfig(json::parse(R"({"quant_method": "awq"})"), "config.json");
  ASSERT_FALSE(awq.ok());
  EXPECT_NE(awq.status().message().find("'awq' is not supported"), std::string::npos);
  auto int4 = ParseQuantConfig(json::parse(R"({"quant_method": "modelopt", "quant_algo": "INT4_AWQ"})"),
                               "config.json");
  ASSERT_FALSE(int4.ok());
  EXPECT_NE(int4.status().message().find("INT4_AWQ"), std::string::npos);
  auto bad_re = ParseQuantConfig(
      json::parse(R"({"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
                      "ignore": ["re:(("]})"),
      "config.json");
  ASSERT_FALSE(bad_re.ok());
  EXPECT_NE(bad_re.status().message().find("re:(("), std::string::npos);
}

}  // namespace
}  // namespace moerack
