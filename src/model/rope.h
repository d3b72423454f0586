// Rotary position embedding tables from config.json: plain RoPE and YaRN
// (`rope_scaling.type|rope_type == "yarn"`), following transformers'
// modeling_rope_utils.py (_compute_default_rope_parameters,
// _compute_yarn_parameters). Frequencies are computed in double.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/ops.h"

namespace moerack {

struct RopeTable {
  std::vector<double> inv_freq;   // rope_dim / 2 entries
  double attention_factor = 1.0;  // scales cos and sin (YaRN)
  double yarn_factor = 1.0;       // rope_scaling.factor (1 when not scaled)
  double mscale_all_dim = 0.0;    // rope_scaling.mscale_all_dim (0 when absent)
};

// `rope_scaling` may be null. Errors name the field and `source`.
StatusOr<RopeTable> MakeRopeTable(int rope_dim, double theta, const nlohmann::json& rope_scaling,
                                  int max_position_embeddings, const std::string& source);

// YaRN's magnitude correction: 0.1 * mscale * ln(scale) + 1 (1 for scale <= 1).
double YarnGetMscale(double scale, double mscale);

// Rotates the first rope_dim dims of each of `num_heads` heads (head_stride
// floats apart) for a token at `pos`.
void ApplyRopeTable(float* x, int num_heads, int64_t head_stride, int rope_dim, int64_t pos,
                    const RopeTable& table, RopeStyle style);

}  // namespace moerack
