// moerack info: what a model is, from its config alone (no weights needed):
// architecture, layers, experts, total and active parameters, and the KV
// cache bytes per token against an uncompressed per-head cache.
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/mapped_file.h"
#include "core/paths.h"
#include "model/registry.h"

namespace moerack::cli {
namespace {

// DIR (with config.json), a config.json path, or NAME of a bundled configs/NAME.json.
StatusOr<std::string> ResolveConfigPath(const std::string& model) {
  namespace fs = std::filesystem;
  if (model.empty()) {
    MR_ASSIGN_OR_RETURN(std::string dir, ResolveModelDir(""));
    return (fs::path(dir) / "config.json").string();
  }
  if (fs::is_directory(model)) return (fs::path(model) / "config.json").string();
  if (fs::is_regular_file(model)) return model;
  MR_ASSIGN_OR_RETURN(std::string data, FindDataDir());
  const fs::path named = fs::path(data) / "configs" / (model + ".json");
  if (fs::is_regular_file(named)) return named.string();
  return Error("--model: '" + model + "' is neither a directory, a file, nor a bundled config in " +
               (fs::path(data) / "configs").string());
}

int RunInfo(const std::string& model) {
  const std::string cmd = "info";
  auto path = ResolveConfigPath(model);
  if (!path.ok()) return Fail(cmd, path.status());
  auto text = ReadFileToString(*path);
  if (!text.ok()) return Fail(cmd, text.status());
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded()) return Fail(cmd, Error(*path + ": not valid JSON"));
  auto config = ParseModelConfig(j, *path);
  if (!config.ok()) return Fail(cmd, config.status());
  auto arch = FindArchitecture(j, *path);
  if (!arch.ok()) return Fail(cmd, arch.status());
  const ModelConfig& c = *config;
  const ParameterCount params = CountParameters(**arch, c);
  const KvSpec kv = (*arch)->kv_spec(c);
  int moe_layers = 0;
  for (bool m : c.layer_is_moe) moe_layers += m ? 1 : 0;
  std::printf("config: %s\n", path->c_str());
  std::printf("architecture: %s (model_type %s)\n", c.architecture.c_str(), c.model_type.c_str());
  std::printf("layers: %d (%d MoE, %d dense); hidden %d; vocab %d\n", c.num_layers, moe_layers,
              c.num_layers - moe_layers, c.hidden_size, c.vocab_size);
  std::printf("experts: %d routed, top-%d\n", c.num_experts, c.num_experts_per_tok);
  std::printf("parameters: total %.3f B, active per token %.3f B (%lld / %lld)\n",
              params.total / 1e9, params.active / 1e9, static_cast<long long>(params.total),
              static_cast<long long>(params.active));
  std::printf(
      "weights read per decoded token: %.3f B parameters = %.1f MB at bf16, %.1f MB at fp8\n",
      params.read_per_token / 1e9, 2 * params.read_per_token / 1e6, params.read_per_token / 1e6);
  const long long per_token = static_cast<long long>(kv.cached) * c.num_layers;
  const long long per_head = static_cast<long long>(kv.per_head) * c.num_layers;
  std::printf(
      "kv cache per token: %d layers x %lld elements = %lld elements; %lld bytes bf16, %lld fp8, "
      "%lld f32 (moerack CPU)\n",
      c.num_layers, static_cast<long long>(kv.cached), per_token, 2 * per_token, per_token,
      4 * per_token);
  std::printf(
      "uncompressed per-head k/v cache: %d layers x %lld elements = %lld bytes bf16 (%.1fx the "
      "cache above)\n",
      c.num_layers, static_cast<long long>(kv.per_head), 2 * per_head,
      static_cast<double>(per_head) / static_cast<double>(per_token));
  // A directory with weights: what they take as stored (quantized checkpoints stay packed).
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(*path).parent_path();
  if (fs::exists(dir / "model.safetensors") || fs::exists(dir / "model.safetensors.index.json")) {
    auto loaded = LoadModel(dir.string());
    if (!loaded.ok()) return Fail(cmd, loaded.status());
    const ModelConfig& lc = (*loaded)->config();
    const WeightFootprint fp = (*loaded)->footprint();
    std::printf("quantization: %s\n",
                lc.quant.method.empty() ? "none"
                                        : (lc.quant.method + " " + lc.quant.algo).c_str());
    std::printf("as stored: %.1f MB of weights, %.1f MB read per decoded token\n",
                fp.total_bytes / 1e6, fp.active_bytes_per_token / 1e6);
  }
  return 0;
}

}  // namespace

Command RegisterInfo(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  app.add_option("--model", *model,
                 "Model directory, config.json, or bundled config name (e.g. deepseek-r1)");
  return [model] { return RunInfo(*model); };
}

}  // namespace moerack::cli
