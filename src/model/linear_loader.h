// Loading Linear weights as the checkpoint stores them. The tensors next to
// `<prefix>.weight` say the format, so mixed checkpoints (quantized experts,
// bf16 router and lm_head) need no per-module table:
//   <prefix>.weight BF16/F32                                       plain
//   <prefix>.weight F8_E4M3 + .weight_scale_inv [N/bn, K/bk]       DeepSeek block FP8
//   <prefix>.weight F8_E4M3 + .weight_scale F32 [] / [N] / [N, 1]  ModelOpt / compressed-tensors FP8
//   <prefix>.weight U8 [N, K/2] + .weight_scale F8_E4M3 [N, K/16]
//                 + .weight_scale_2 F32 []                         ModelOpt NVFP4
//   <prefix>.weight_packed U8 [N, K/2] + .weight_scale F8_E4M3 [N, K/16]
//                 + .weight_global_scale F32 [1]                   compressed-tensors NVFP4
//   <prefix>.weight_packed U8 [N, K/2] + .weight_scale U8/F8_E8M0 [N, K/32]
//                                                                  compressed-tensors MXFP4
// `input_scale` (or compressed-tensors' reciprocal `input_global_scale`) is
// read and kept; on CPU activations stay f32 (weight-only W4A16 / W8A16).
// Nothing is copied: the views point into the mmap'd files.
// Thread-safety: pure functions over a const WeightStore.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "kernels/linear_weight.h"
#include "model/config.h"
#include "model/safetensors.h"

namespace moerack {

// `name` is the weight's name ("<prefix>.weight"); [N, K] its logical shape.
StatusOr<LinearWeight> LoadLinear(const WeightStore& store, const QuantConfig& quant,
                                  const std::string& name, int64_t N, int64_t K);

// A scalar f32 tensor (shape [] or [1]), e.g. weight_scale_2.
StatusOr<float> ReadScalarF32(const WeightStore& store, const std::string& name);

// The FP8 KV-cache scale `which` ("k" or "v") of an attention module `prefix`
// ("model.layers.3.self_attn."): ModelOpt's `<prefix><which>_proj.<which>_scale`
// or vLLM / compressed-tensors' `<prefix><which>_scale`; 1.0 when absent.
StatusOr<float> ReadKvScale(const WeightStore& store, const std::string& prefix,
                            const std::string& which);

}  // namespace moerack
