#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace moerack {

double YarnGetMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

StatusOr<RopeTable> MakeRopeTable(int rope_dim, double theta, const nlohmann::json& rope_scaling,
                                  int max_position_embeddings, const std::string& source) {
  RopeTable t;
  const int half = rope_dim / 2;
  t.inv_freq.resize(static_cast<size_t>(half));
  for (int j = 0; j < half; ++j) t.inv_freq[j] = 1.0 / std::pow(theta, 2.0 * j / rope_dim);
  if (rope_scaling.is_null()) return t;
  if (!rope_scaling.is_object()) return Error(source + ": rope_scaling is not an object");
  const std::string type =
      rope_scaling.value("rope_type", rope_scaling.value("type", std::string()));
  if (type == "default") return t;
  if (type != "yarn")
    return Error(source + ": rope_scaling type '" + type + "' is not supported (only yarn)");
  auto num = [&](const char* key, double fallback) -> double {
    return rope_scaling.contains(key) && rope_scaling[key].is_number()
               ? rope_scaling[key].get<double>()
               : fallback;
  };
  if (!rope_scaling.contains("factor") || !rope_scaling["factor"].is_number()) {
    return Error(source + ": rope_scaling.factor is required for yarn");
  }
  const double factor = rope_scaling["factor"].get<double>();
  const double original = num("original_max_position_embeddings", max_position_embeddings);
  const double beta_fast = num("beta_fast", 32.0), beta_slow = num("beta_slow", 1.0);
  const double mscale = num("mscale", 0.0), mscale_all_dim = num("mscale_all_dim", 0.0);
  const bool truncate = rope_scaling.value("truncate", true);
  if (rope_scaling.contains("attention_factor") && rope_scaling["attention_factor"].is_number()) {
    t.attention_factor = rope_scaling["attention_factor"].get<double>();
  } else if (mscale != 0.0 && mscale_all_dim != 0.0) {
    t.attention_factor = YarnGetMscale(factor, mscale) / YarnGetMscale(factor, mscale_all_dim);
  } else {
    t.attention_factor = YarnGetMscale(factor, 1.0);
  }
  t.yarn_factor = factor;
  t.mscale_all_dim = mscale_all_dim;
  auto correction_dim = [&](double rotations) {
    return rope_dim * std::log(original / (rotations * 2 * M_PI)) / (2 * std::log(theta));
  };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(rope_dim - 1));
  if (low == high) high += 0.001;
  for (int j = 0; j < half; ++j) {
    const double ramp = std::clamp((j - low) / (high - low), 0.0, 1.0);
    const double extrapolation = t.inv_freq[j], interpolation = t.inv_freq[j] / factor;
    // transformers: interp * (1 - extrapolation_factor) + extrap * extrapolation_factor,
    // extrapolation_factor = 1 - ramp.
    t.inv_freq[j] = interpolation * ramp + extrapolation * (1.0 - ramp);
  }
  return t;
}

void RopeAngles(const RopeTable& table, int rope_dim, int64_t pos, float* cos_sin) {
  const int half = rope_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double angle = static_cast<double>(pos) * table.inv_freq[i];
    cos_sin[i] = static_cast<float>(std::cos(angle) * table.attention_factor);
    cos_sin[half + i] = static_cast<float>(std::sin(angle) * table.attention_factor);
  }
}

void ApplyRope(float* x, int num_heads, int64_t head_stride, int rope_dim, const float* cos_sin,
               RopeStyle style) {
  const int half = rope_dim / 2;
  for (int h = 0; h < num_heads; ++h) {
    float* v = x + h * head_stride;
    for (int i = 0; i < half; ++i) {
      const float c = cos_sin[i], s = cos_sin[half + i];
      const int a = style == RopeStyle::kNeox ? i : 2 * i;
      const int b = style == RopeStyle::kNeox ? i + half : 2 * i + 1;
      const float x1 = v[a], x2 = v[b];
      v[a] = x1 * c - x2 * s;
      v[b] = x2 * c + x1 * s;
    }
  }
}

}  // namespace moerack
