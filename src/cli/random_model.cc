// moerack random-model: random bf16 weights for any supported config.json.
#include "model/random_model.h"

#include "cli/commands.h"
#include "cli/common.h"

namespace moerack::cli {

Command RegisterRandomModel(CLI::App& app) {
  auto o = std::make_shared<RandomModelOptions>();
  app.add_option("--config", o->config_path, "config.json of a supported architecture")->required();
  app.add_option("--out", o->out_dir, "Output directory")->required();
  app.add_option("--seed", o->seed, "Random seed");
  app.add_flag("--fp8-block", o->fp8_block,
               "Linear weights as DeepSeek block FP8 (F8_E4M3 + 128x128 weight_scale_inv)");
  return [o] {
    Status st = WriteRandomModel(*o);
    return st.ok() ? 0 : Fail("random-model", st);
  };
}

}  // namespace moerack::cli
