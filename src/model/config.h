// ModelConfig: a Hugging Face config.json parsed once into typed fields.
// Fields shared by the decoder-only MoE families live here; a family's own
// extras are parsed by its architecture file. GenerationConfig comes from
// generation_config.json (EOS ids and sampling defaults).
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace moerack {

struct GenerationConfig {
  std::vector<int32_t> eos_token_ids;
  std::optional<float> temperature;  // defaults for sampling flags not given
  std::optional<int> top_k;
  std::optional<float> top_p;
};

// How the checkpoint's weights are quantized, from config.json's
// quantization_config and/or ModelOpt's hf_quant_config.json. The tensors
// themselves say each Linear's format (model/linear_loader.h); this says which
// scheme produced them, the FP8 block shape and which modules were left alone.
struct QuantConfig {
  std::string method;  // "" (none), "fp8" (DeepSeek block), "modelopt", "compressed-tensors"
  std::string algo;    // upper-case: NVFP4, FP8, MXFP4, FP8_BLOCK, ... ("" when none)
  int fp8_block_n = 128, fp8_block_k = 128;  // weight_block_size
  std::vector<std::string> exclude;          // fnmatch patterns of unquantized modules
  std::string kv_cache_algo;                 // "FP8" when the KV cache is FP8
};

// Whether module `name` (e.g. "model.layers.0.mlp.gate") matches one of `patterns`
// (fnmatch wildcards, as ModelOpt's exclude_modules / compressed-tensors' ignore;
// "re:" prefixed entries are regular expressions).
bool ModuleMatches(const std::vector<std::string>& patterns, const std::string& name);

struct ModelConfig {
  std::string architecture;  // registry key that matched
  std::string model_type;
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;  // dense MLP layers
  int num_experts = 0;        // routed experts
  int num_experts_per_tok = 0;
  int moe_intermediate_size = 0;
  bool norm_topk_prob = true;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  int max_position_embeddings = 0;
  int sliding_window = 0;  // 0: full attention
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  std::vector<bool> layer_is_moe;  // per layer: routed experts or a dense MLP
  GenerationConfig generation;
  QuantConfig quant;
  nlohmann::json raw;  // the parsed config.json, for family-specific fields
};

// Typed accessors for config.json fields; errors name the field and the file.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& j, std::string source) : j_(j), source_(std::move(source)) {}
  StatusOr<int> Int(const std::string& key) const;
  int IntOr(const std::string& key, int fallback) const;
  StatusOr<double> Double(const std::string& key) const;
  double DoubleOr(const std::string& key, double fallback) const;
  bool BoolOr(const std::string& key, bool fallback) const;
  std::vector<int> IntListOr(const std::string& key) const;
  bool Has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  // Any problem seen by the *Or accessors (a field of the wrong type).
  const Status& status() const { return status_; }

 private:
  const nlohmann::json& j_;
  std::string source_;
  mutable Status status_;
};

// Reads `dir`/config.json and, if present, generation_config.json; dispatches to
// the registered architecture's parser. Errors name the file and field.
StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);
StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& j, const std::string& source);

// Parses a quantization description: config.json's "quantization_config" object or the
// "quantization" object of hf_quant_config.json. Errors name `source` and the field.
StatusOr<QuantConfig> ParseQuantConfig(const nlohmann::json& q, const std::string& source);

}  // namespace moerack
