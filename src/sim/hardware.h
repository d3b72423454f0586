// HardwareSpec: one system of the catalog (hardware/<name>.json, one file per
// system, every number with its source). GPU entries give datasheet peaks: how
// much of them a serving stack achieves is the cost model's business
// (sim/cost_model.h, Efficiency), shared by every such system. An entry with
// "rates": "measured" (the `cpu` entry) gives rates moerack's own kernels
// achieve on that machine, so no kernel efficiency is applied on top.
// Thread-safety: plain values.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "sim/precision.h"

namespace moerack::sim {

struct HardwareSpec {
  std::string name;         // catalog key, e.g. "gb200-nvl72"
  std::string description;  // one line
  double hbm_bytes = 0;     // usable memory per GPU
  double hbm_bytes_per_s = 0;
  double flops_bf16 = 0;    // dense FLOP/s per GPU
  double flops_fp8 = 0;     // 0: no FP8 tensor cores (runs at the bf16 rate)
  double flops_fp4 = 0;     // 0: no FP4 tensor cores (runs at the fp8 rate)
  double nvlink_bytes_per_s = 0;  // per GPU, one direction
  int nvlink_domain = 1;          // GPUs one NVLink (scale-up) domain connects
  double scaleout_bytes_per_s = 0;  // per GPU, one direction
  double nvlink_latency_s = 0;      // one-way small-message latency
  double scaleout_latency_s = 0;
  double power_w = 0;               // per GPU
  int max_gpus = 8;                 // what a search may use without --gpus
  double price_per_gpu_hour = 0;    // $ per GPU-hour, for cost per million tokens
  bool measured_rates = false;      // bandwidth/FLOP/s as achieved, not datasheet peaks

  // Dense GEMM FLOP/s for weights/activations in `p` (falls back to the next
  // wider precision the GPU has).
  double GemmFlops(Precision p) const;
  // Bandwidth and latency between two GPUs `in_domain` (same NVLink domain) or not.
  double LinkBytesPerS(bool in_domain) const {
    return in_domain ? nvlink_bytes_per_s : scaleout_bytes_per_s;
  }
};

// Parses a catalog file's JSON; errors name `source` and the field.
StatusOr<HardwareSpec> ParseHardware(const std::string& json_text, const std::string& source);
// NAME (a file hardware/NAME.json of the bundled data) or a path to a .json file.
StatusOr<HardwareSpec> LoadHardware(const std::string& name_or_path);
// Names of the bundled systems, sorted.
std::vector<std::string> ListHardware();

}  // namespace moerack::sim
