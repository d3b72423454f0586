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
};

Status WriteRandomModel(const RandomModelOptions& options);

}  // namespace moerack
