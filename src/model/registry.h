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

struct Architecture {
  std::vector<std::string_view> names;  // architectures[0] values and model_type values
  // Fills the family's fields of `config` from config.raw (common fields too).
  Status (*parse_config)(ModelConfig& config, const std::string& source);
  // Every tensor the model loads (random-model writes exactly these).
  std::vector<TensorSpec> (*tensor_specs)(const ModelConfig& config);
  StatusOr<std::unique_ptr<Model>> (*load)(const ModelConfig& config,
                                           std::shared_ptr<const WeightStore> weights);
};

// The entry for architectures[0] or model_type; error naming both when unknown.
StatusOr<const Architecture*> FindArchitecture(const nlohmann::json& config_json,
                                               const std::string& source);

// Loads config.json, generation_config.json and the weights of `dir`.
StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir);

}  // namespace moerack
