// `moerack quantize`: writes a quantized copy of a checkpoint in the layout
// the published tools produce, so moerack and vLLM both load it:
//   nvfp4       ModelOpt NVFP4: weight U8 [N, K/2], weight_scale F8_E4M3 [N, K/16],
//               weight_scale_2 F32 [], input_scale F32 []; hf_quant_config.json and
//               quantization_config {quant_method: modelopt, quant_algo: NVFP4}
//   mxfp4       compressed-tensors mxfp4-pack-quantized: weight_packed U8 [N, K/2],
//               weight_scale U8 (E8M0) [N, K/32]
//   fp8         DeepSeek block FP8: weight F8_E4M3, weight_scale_inv F32 [N/128, K/128]
//   fp8-tensor  ModelOpt FP8: weight F8_E4M3, weight_scale F32 [], input_scale F32 []
// Router gates, norms, embeddings and lm_head stay as they are by default, as
// ModelOpt does (--quantize-lm-head quantizes lm_head too). Static activation
// scales (input_scale = amax / (6 * 448) for NVFP4, amax / 448 for FP8) come
// from running the source model over a calibration text (or, without one, a
// fixed pseudo-random token stream); experts no calibration token reached take
// the largest scale of their layer's other experts for the same projection.
// Thread-safety: one call at a time (it installs the matmul observer).
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace moerack {

struct QuantizeOptions {
  std::string model_dir;
  std::string out_dir;
  std::string format;                // nvfp4 | mxfp4 | fp8 | fp8-tensor
  std::vector<std::string> exclude;  // extra fnmatch patterns of modules to keep
  bool quantize_lm_head = false;
  std::string calib_text;  // optional calibration text file
  int64_t calib_tokens = 2048;
  int threads = 1;
  int64_t shard_bytes = int64_t{4} << 30;  // start a new model-0000k-of-0000n file past this
};

struct QuantizeReport {
  int num_quantized = 0;   // Linear modules written quantized
  int num_kept = 0;        // Linear-shaped modules kept (excluded or K not a multiple of the block)
  int num_uncalibrated = 0;  // modules whose input_scale came from a sibling expert
  int64_t bytes_in = 0, bytes_out = 0;
};

StatusOr<QuantizeReport> QuantizeCheckpoint(const QuantizeOptions& options);

}  // namespace moerack
