#include "model/registry.h"

#include "model/architectures.h"

namespace moerack {
namespace {

// The one registration point: every architecture family, by its entry.
const Architecture* const kArchitectures[] = {
    &kQwen3MoeArchitecture,
    &kMixtralArchitecture,
    &kDeepseekV3Architecture,
};

const Architecture* Lookup(const std::string& name) {
  for (const Architecture* a : kArchitectures) {
    for (std::string_view n : a->names) {
      if (n == name) return a;
    }
  }
  return nullptr;
}

}  // namespace

StatusOr<const Architecture*> FindArchitecture(const nlohmann::json& j, const std::string& source) {
  std::string arch, model_type;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch = j["architectures"][0].get<std::string>();
    if (const Architecture* a = Lookup(arch)) return a;
  }
  if (j.contains("model_type") && j["model_type"].is_string()) {
    model_type = j["model_type"].get<std::string>();
    if (const Architecture* a = Lookup(model_type)) return a;
  }
  if (arch.empty() && model_type.empty()) {
    return Error(source + ": neither 'architectures' nor 'model_type' is set");
  }
  std::string known;
  for (const Architecture* a : kArchitectures)
    known += (known.empty() ? "" : ", ") + std::string(a->names.front());
  return Error(source + ": unknown architecture '" + (arch.empty() ? model_type : arch) +
               "' (model_type '" + model_type + "'); supported: " + known);
}

void AddSwigluSpecs(const std::string& prefix, int64_t inter, int64_t hidden,
                    std::vector<TensorSpec>* specs) {
  specs->push_back({prefix + "gate_proj.weight", {inter, hidden}});
  specs->push_back({prefix + "up_proj.weight", {inter, hidden}});
  specs->push_back({prefix + "down_proj.weight", {hidden, inter}});
}

ParameterCount CountParameters(const Architecture& arch, const ModelConfig& config) {
  ParameterCount count;
  int64_t routed = 0;
  for (const TensorSpec& spec : arch.tensor_specs(config)) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    count.total += n;
    if (spec.name.find(".experts.") != std::string::npos) routed += n;
  }
  count.active = count.total - routed;
  if (config.num_experts > 0)
    count.active += routed / config.num_experts * config.num_experts_per_tok;
  count.read_per_token = count.active;
  if (!config.tie_word_embeddings)
    count.read_per_token -= int64_t{config.vocab_size - 1} * config.hidden_size;
  return count;
}

StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir,
                                           const ModelLoadOptions& options) {
  MR_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  // Expert-parallel ranks map the file lazily: only their experts become resident.
  MR_ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store,
                      WeightStore::Open(dir, /*populate=*/options.ep_size == 1));
  MR_ASSIGN_OR_RETURN(const Architecture* arch, FindArchitecture(config.raw, dir + "/config.json"));
  if (options.ep_size < 1 || options.ep_rank < 0 || options.ep_rank >= options.ep_size)
    return Error("expert parallelism: rank " + std::to_string(options.ep_rank) + " of " +
                 std::to_string(options.ep_size));
  return arch->load(config, std::shared_ptr<const WeightStore>(std::move(store)), options);
}

}  // namespace moerack
