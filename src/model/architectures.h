// The registry entries each architecture file defines (registry.cc lists them).
#pragma once

#include "model/registry.h"

namespace moerack {

extern const Architecture kQwen3MoeArchitecture;    // qwen3_moe.cc
extern const Architecture kMixtralArchitecture;     // qwen3_moe.cc
extern const Architecture kDeepseekV3Architecture;  // deepseek_v3.cc

}  // namespace moerack
