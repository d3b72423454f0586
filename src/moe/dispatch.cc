#include "moe/dispatch.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/fp8.h"

namespace moerack {

DispatchPlan PlanDispatch(const RoutingResult& routing, int num_experts) {
  DispatchPlan plan;
  plan.num_experts = num_experts;
  plan.expert_offsets.assign(static_cast<size_t>(num_experts) + 1, 0);
  for (int32_t e : routing.expert_ids) ++plan.expert_offsets[static_cast<size_t>(e) + 1];
  for (int e = 0; e < num_experts; ++e) plan.expert_offsets[e + 1] += plan.expert_offsets[e];
  std::vector<int64_t> next(plan.expert_offsets.begin(), plan.expert_offsets.end() - 1);
  plan.slot_row.resize(routing.expert_ids.size());
  plan.row_token.resize(routing.expert_ids.size());
  for (size_t i = 0; i < routing.expert_ids.size(); ++i) {
    const int64_t row = next[static_cast<size_t>(routing.expert_ids[i])]++;
    plan.slot_row[i] = row;
    plan.row_token[static_cast<size_t>(row)] =
        static_cast<int32_t>(i / static_cast<size_t>(routing.top_k));
  }
  return plan;
}

void DispatchTokens(const DispatchPlan& plan, const float* x, int64_t hidden,
                    ScratchVector<float>* dispatched) {
  dispatched->resize(plan.row_token.size() * static_cast<size_t>(hidden));
  for (size_t r = 0; r < plan.row_token.size(); ++r) {
    std::copy_n(x + plan.row_token[r] * hidden, hidden, dispatched->data() + r * hidden);
  }
}

void CombineExpertOutputs(const DispatchPlan& plan, const RoutingResult& routing,
                          const float* expert_out, int64_t hidden, float* y, ThreadPool& pool) {
  const int k = routing.top_k;
  pool.ParallelRange(routing.num_tokens, 8, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      float* yt = y + t * hidden;
      std::fill_n(yt, hidden, 0.0f);
      for (int s = 0; s < k; ++s) {
        const float w = routing.weights[t * k + s];
        const float* o = expert_out + plan.slot_row[t * k + s] * hidden;
        for (int64_t i = 0; i < hidden; ++i) yt[i] += w * o[i];
      }
    }
  });
}

StatusOr<DispatchDType> ParseDispatchDType(const std::string& name) {
  if (name == "f32") return DispatchDType::kF32;
  if (name == "bf16") return DispatchDType::kBF16;
  if (name == "fp8") return DispatchDType::kFP8;
  return Error("--dispatch-dtype '" + name + "' is not one of f32, bf16, fp8");
}

int64_t DispatchRowBytes(DispatchDType dtype, int64_t hidden) {
  switch (dtype) {
    case DispatchDType::kF32:
      return hidden * 4;
    case DispatchDType::kBF16:
      return hidden * 2;
    case DispatchDType::kFP8:
      return hidden + 4;  // E4M3 values, then the row's f32 scale
  }
  return 0;
}

void EncodeRows(const float* rows, int64_t num_rows, int64_t hidden, DispatchDType dtype,
                uint8_t* out) {
  const int64_t row_bytes = DispatchRowBytes(dtype, hidden);
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* x = rows + r * hidden;
    uint8_t* o = out + r * row_bytes;
    switch (dtype) {
      case DispatchDType::kF32:
        std::memcpy(o, x, static_cast<size_t>(row_bytes));
        break;
      case DispatchDType::kBF16:
        for (int64_t i = 0; i < hidden; ++i) {
          const uint16_t b = F32ToBF16(x[i]);
          std::memcpy(o + 2 * i, &b, 2);
        }
        break;
      case DispatchDType::kFP8: {
        float amax = 0;
        for (int64_t i = 0; i < hidden; ++i) amax = std::max(amax, std::fabs(x[i]));
        const float scale = amax > 0 ? amax / kFp8E4M3Max : 1.0f;
        for (int64_t i = 0; i < hidden; ++i) o[i] = F32ToFp8E4M3(x[i] / scale);
        std::memcpy(o + hidden, &scale, 4);
        break;
      }
    }
  }
}

void DecodeRows(const uint8_t* in, int64_t num_rows, int64_t hidden, DispatchDType dtype,
                float* rows) {
  const int64_t row_bytes = DispatchRowBytes(dtype, hidden);
  for (int64_t r = 0; r < num_rows; ++r) {
    const uint8_t* b = in + r * row_bytes;
    float* x = rows + r * hidden;
    switch (dtype) {
      case DispatchDType::kF32:
        std::memcpy(x, b, static_cast<size_t>(row_bytes));
        break;
      case DispatchDType::kBF16:
        for (int64_t i = 0; i < hidden; ++i) {
          uint16_t v;
          std::memcpy(&v, b + 2 * i, 2);
          x[i] = BF16ToF32(v);
        }
        break;
      case DispatchDType::kFP8: {
        float scale;
        std::memcpy(&scale, b + hidden, 4);
        for (int64_t i = 0; i < hidden; ++i) x[i] = Fp8E4M3ToF32(b[i]) * scale;
        break;
      }
    }
  }
}

void RoundRows(float* rows, int64_t num_rows, int64_t hidden, DispatchDType dtype) {
  if (dtype == DispatchDType::kF32) return;
  std::vector<uint8_t> bytes(static_cast<size_t>(num_rows * DispatchRowBytes(dtype, hidden)));
  EncodeRows(rows, num_rows, hidden, dtype, bytes.data());
  DecodeRows(bytes.data(), num_rows, hidden, dtype, rows);
}

}  // namespace moerack
