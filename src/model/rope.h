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

// The rotation of a token at `pos`: cos_sin[i] = cos(pos * inv_freq[i]) and
// cos_sin[rope_dim / 2 + i] = sin(...), both times the attention factor, for
// i < rope_dim / 2 (angles in double). A forward pass computes them once per
// position and every layer applies them (sin/cos per layer and head set took
// ~0.5% of a decoded token).
void RopeAngles(const RopeTable& table, int rope_dim, int64_t pos, float* cos_sin);

// Rotates the first rope_dim dims of each of `num_heads` heads (head_stride
// floats apart) by RopeAngles' cos_sin.
void ApplyRope(float* x, int num_heads, int64_t head_stride, int rope_dim, const float* cos_sin,
               RopeStyle style);

}  // namespace moerack
