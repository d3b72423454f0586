#include "cli/common.h"

#include <charconv>
#include <iostream>

#include "core/paths.h"

namespace moerack::cli {

StatusOr<std::string> ResolveModelDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  return DefaultModelDir();
}

StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    int64_t v = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || v < 0 ||
        v > INT32_MAX) {
      return Error(flag + ": '" + item + "' is not a token id (expected e.g. 1,2,3)");
    }
    ids.push_back(static_cast<int32_t>(v));
    pos = comma + 1;
  }
  return ids;
}

Status CheckTokenIds(const std::vector<int32_t>& ids, int vocab_size, const std::string& flag) {
  for (int32_t t : ids) {
    if (t < 0 || t >= vocab_size) {
      return Error(flag + ": token id " + std::to_string(t) + " is out of range [0, " +
                   std::to_string(vocab_size) + ")");
    }
  }
  return Status::Ok();
}

int Fail(const std::string& command, const Status& status) {
  std::cerr << "moerack " << command << ": " << status.message() << std::endl;
  return 1;
}

void AddModelRunFlags(CLI::App& app, ModelRunFlags* f, const std::string& ep_help,
                      bool with_stats) {
  app.add_option("--threads", f->threads, "Computing threads (per rank)")->check(CLI::Range(1, 1024));
  app.add_option("--kv-dtype", f->kv_dtype, "KV cache element type: f32 (default) or fp8 (E4M3)");
  app.add_option("--act-dtype", f->act_dtype,
                 "Activation precision of the matmuls: f32 (default), bf16 (AVX512-BF16 kernels) or "
                 "int8 (NVFP4/MXFP4 weights only: x quantized per 32 values, W4A8)");
  app.add_option("--ep", f->ep,
                 "Expert-parallel ranks (" + ep_help +
                     "): threads of this process, or mpirun's ranks when launched by mpirun "
                     "(-np must equal --ep)")
      ->check(CLI::Range(1, 1024));
  app.add_flag("--overlap", f->overlap,
               "Two-batch overlap: each MoE layer's all-to-alls run while the other half of the "
               "tokens computes (with --ep > 1)");
  app.add_option("--dispatch-dtype", f->dispatch_dtype,
                 "Token rows sent to the experts: f32 (default), bf16 or fp8 (also on one rank)");
  if (!with_stats) return;
  app.add_option("--stats", f->stats,
                 "Write per-layer expert load, rank imbalance, all-to-all bytes and phase times "
                 "(JSON; rank 0)");
  app.add_option("--stats-svg", f->stats_svg, "Write a heatmap of expert load per layer (SVG)");
}

Status ApplyModelRunFlags(const ModelRunFlags& f, Model& model) {
  MR_ASSIGN_OR_RETURN(const ActDType act_dtype, ParseActDType(f.act_dtype));
  model.set_act_dtype(act_dtype);
  MR_ASSIGN_OR_RETURN(const DispatchDType dispatch_dtype, ParseDispatchDType(f.dispatch_dtype));
  model.set_dispatch_dtype(dispatch_dtype);
  model.set_overlap(f.overlap);
  return Status::Ok();
}

}  // namespace moerack::cli
