#include "model/random_model.h"

#include <cmath>
#include <filesystem>
#include <random>

#include "core/mapped_file.h"
#include "model/registry.h"
#include "quant/fp8.h"
#include "tokenizer/tokenizer.h"

namespace moerack {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Uniform in [-1, 1) from the top 24 bits: the same on every platform.
float Uniform(std::mt19937_64& rng) { return static_cast<float>(rng() >> 40) * 0x1.0p-23f - 1.0f; }

// DeepSeek's FP8 checkpoints quantize every linear weight but embeddings,
// lm_head and the router gate (formats.md §3.4).
bool IsBlockFp8Quantized(const TensorSpec& spec) {
  auto ends_with = [&](const std::string& suffix) {
    return spec.name.size() >= suffix.size() &&
           spec.name.compare(spec.name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return spec.shape.size() == 2 && !spec.is_norm && !ends_with("embed_tokens.weight") &&
         !ends_with("lm_head.weight") && !ends_with("mlp.gate.weight");
}

}  // namespace

Status WriteRandomModel(const RandomModelOptions& options) {
  MR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(options.config_path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Error(options.config_path + ": not valid JSON");
  MR_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(j, options.config_path));
  MR_ASSIGN_OR_RETURN(const Architecture* arch, FindArchitecture(j, options.config_path));
  if (config.vocab_size < 257) {
    return Error(options.config_path + ": vocab_size must be >= 257 for a byte-level tokenizer");
  }
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec) return Error(options.out_dir + ": cannot create: " + ec.message());

  std::mt19937_64 rng(options.seed);
  std::vector<TensorToWrite> tensors;
  for (const TensorSpec& spec : arch->tensor_specs(config)) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    // Linear weights scaled by 1/sqrt(fan_in) keep activations O(1); norms near 1.
    const int64_t fan_in = spec.shape.size() >= 2 ? spec.shape.back() : 1;
    const float scale = spec.is_norm ? 0.1f : 1.0f / std::sqrt(static_cast<float>(fan_in));
    const float offset = spec.is_norm ? 1.0f : 0.0f;
    std::string bytes(static_cast<size_t>(n) * 2, '\0');
    auto* out = reinterpret_cast<uint16_t*>(bytes.data());
    for (int64_t i = 0; i < n; ++i) out[i] = F32ToBF16(offset + scale * Uniform(rng));
    if (options.fp8_block && IsBlockFp8Quantized(spec)) {
      std::vector<float> w(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) w[i] = BF16ToF32(out[i]);
      std::vector<uint8_t> q;
      std::vector<float> s;
      QuantizeBlockFp8(w.data(), spec.shape[0], spec.shape[1], 128, &q, &s);
      tensors.push_back({spec.name, DType::kFP8E4M3, spec.shape, std::string(q.begin(), q.end())});
      tensors.push_back(
          {spec.name + "_scale_inv",
           DType::kF32,
           {(spec.shape[0] + 127) / 128, (spec.shape[1] + 127) / 128},
           std::string(reinterpret_cast<const char*>(s.data()), s.size() * sizeof(float))});
      continue;
    }
    tensors.push_back({spec.name, DType::kBF16, spec.shape, std::move(bytes)});
  }
  if (options.fp8_block) {
    j["quantization_config"] = {{"activation_scheme", "dynamic"},
                                {"fmt", "e4m3"},
                                {"quant_method", "fp8"},
                                {"weight_block_size", {128, 128}}};
  }
  const fs::path dir(options.out_dir);
  MR_RETURN_IF_ERROR(WriteSafetensors((dir / "model.safetensors").string(), tensors));
  MR_RETURN_IF_ERROR(WriteStringToFile((dir / "config.json").string(), j.dump(2) + "\n"));
  const int32_t eos = config.vocab_size - 1;
  const std::string eos_text = "<|endoftext|>";
  MR_RETURN_IF_ERROR(WriteStringToFile((dir / "generation_config.json").string(),
                                       json{{"eos_token_id", eos}}.dump(2) + "\n"));
  MR_RETURN_IF_ERROR(
      WriteStringToFile((dir / "tokenizer.json").string(),
                        MakeByteLevelTokenizerJson(config.vocab_size, eos_text).dump()));
  MR_RETURN_IF_ERROR(WriteStringToFile(
      (dir / "tokenizer_config.json").string(),
      json{{"eos_token", eos_text}, {"tokenizer_class", "PreTrainedTokenizerFast"}}.dump(2) +
          "\n"));
  return Status::Ok();
}

}  // namespace moerack
