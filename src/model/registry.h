// The architecture registry: one entry per model family, keyed by config.json's
// architectures[0] (falling back to model_type). Adding an architecture is one
// file in model/ plus one line in registry.cc.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"

namespace moerack {

// A tensor the architecture reads, with the shape it must have. `norm` tensors
// are initialised near 1 by random-model, the rest near 0.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool is_norm = false;
};

// The three weights of a SwiGLU FFN: `<prefix>gate_proj.weight` and
// `<prefix>up_proj.weight` [inter, hidden], `<prefix>down_proj.weight` [hidden, inter].
void AddSwigluSpecs(const std::string& prefix, int64_t inter, int64_t hidden,
                    std::vector<TensorSpec>* specs);

// Elements one token adds to the KV cache of one layer: what the model caches
// and what a plain per-head K/V cache of the same attention would need (equal
// for GQA; MLA caches a latent instead).
struct KvSpec {
  int64_t cached = 0;
  int64_t per_head = 0;
};

struct Architecture {
  std::vector<std::string_view> names;  // architectures[0] values and model_type values
  // Fills the family's fields of `config` from config.raw (common fields too).
  Status (*parse_config)(ModelConfig& config, const std::string& source);
  // Every tensor the model loads (random-model writes exactly these).
  std::vector<TensorSpec> (*tensor_specs)(const ModelConfig& config);
  StatusOr<std::unique_ptr<Model>> (*load)(const ModelConfig& config,
                                           std::shared_ptr<const WeightStore> weights,
                                           const ModelLoadOptions& options);
  KvSpec (*kv_spec)(const ModelConfig& config);
};

// The entry for architectures[0] or model_type; error naming both when unknown.
StatusOr<const Architecture*> FindArchitecture(const nlohmann::json& config_json,
                                               const std::string& source);

// Parameter counts from the tensor specs (no weights needed): all of them, and
// those one token uses (routed experts counted top_k of num_experts per layer).
struct ParameterCount {
  int64_t total = 0;
  int64_t active = 0;
  // Weights one decoded token reads: `active` less the embedding table but the
  // token's row (unless tied, when the table is also the lm_head).
  int64_t read_per_token = 0;
};
ParameterCount CountParameters(const Architecture& arch, const ModelConfig& config);

// Loads config.json, generation_config.json and the weights of `dir` (with
// ep_size > 1 only rank ep_rank's routed experts).
StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir,
                                           const ModelLoadOptions& options = {});

}  // namespace moerack
