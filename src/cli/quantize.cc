// moerack quantize: an NVFP4 / MXFP4 / FP8 copy of a checkpoint.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/quantize_checkpoint.h"

namespace moerack::cli {

Command RegisterQuantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeOptions>();
  auto model = std::make_shared<std::string>();
  app.add_option("--model", *model, "Model directory or name (default: the bundled model)");
  app.add_option("--format", o->format, "nvfp4 | mxfp4 | fp8 (128x128 blocks) | fp8-tensor")
      ->required();
  app.add_option("--out", o->out_dir, "Output directory (must not exist or be empty)")->required();
  app.add_option("--exclude", o->exclude,
                 "Keep modules matching this fnmatch pattern unquantized (repeatable)");
  app.add_flag("--quantize-lm-head", o->quantize_lm_head, "Quantize lm_head too");
  app.add_option("--calib-text", o->calib_text,
                 "Text for static activation scales (default: pseudo-random tokens)");
  app.add_option("--calib-tokens", o->calib_tokens, "Calibration tokens (default 2048)");
  app.add_option("--threads", o->threads, "Threads for calibration")->check(CLI::Range(1, 1024));
  return [o, model] {
    auto dir = ResolveModelDir(*model);
    if (!dir.ok()) return Fail("quantize", dir.status());
    o->model_dir = *dir;
    auto r = QuantizeCheckpoint(*o);
    if (!r.ok()) return Fail("quantize", r.status());
    std::printf(
        "quantized %d Linear weights to %s (%d kept as they were, %d input scales from sibling "
        "experts): %.1f MB -> %.1f MB in %s\n",
        r->num_quantized, o->format.c_str(), r->num_kept, r->num_uncalibrated, r->bytes_in / 1e6,
        r->bytes_out / 1e6, o->out_dir.c_str());
    return 0;
  };
}

}  // namespace moerack::cli
