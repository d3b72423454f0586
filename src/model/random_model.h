// Random checkpoints for any registered architecture: the tensors its
// TensorSpecs name, in bf16, plus config.json, generation_config.json and a
// byte-level tokenizer.json sized to the vocabulary, so every command runs on
// the result. Used for tests, benchmarks and the placeholder default model.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace moerack {

struct RandomModelOptions {
  std::string config_path;  // a config.json of a supported architecture
  std::string out_dir;      // created if missing
  uint64_t seed = 0;
  // Store linear weights (not embeddings, lm_head, routers) as DeepSeek block
  // FP8: F8_E4M3 `weight` + F32 `weight_scale_inv` per 128x128 block, with the
  // matching quantization_config in config.json.
  bool fp8_block = false;
};

Status WriteRandomModel(const RandomModelOptions& options);

}  // namespace moerack
