#include "model/config.h"

#include <filesystem>

#include "core/mapped_file.h"
#include "model/registry.h"

namespace moerack {
namespace fs = std::filesystem;
using json = nlohmann::json;

StatusOr<int> ConfigReader::Int(const std::string& key) const {
  if (!Has(key)) return Error(source_ + ": missing required field '" + key + "'");
  if (!j_[key].is_number_integer())
    return Error(source_ + ": field '" + key + "' is not an integer");
  const int64_t v = j_[key].get<int64_t>();
  if (v < 0 || v > (1ll << 31) - 1) return Error(source_ + ": field '" + key + "' out of range");
  return static_cast<int>(v);
}

int ConfigReader::IntOr(const std::string& key, int fallback) const {
  if (!Has(key)) return fallback;
  auto v = Int(key);
  if (!v.ok()) {
    status_ = v.status();
    return fallback;
  }
  return *v;
}

StatusOr<double> ConfigReader::Double(const std::string& key) const {
  if (!Has(key)) return Error(source_ + ": missing required field '" + key + "'");
  if (!j_[key].is_number()) return Error(source_ + ": field '" + key + "' is not a number");
  return j_[key].get<double>();
}

double ConfigReader::DoubleOr(const std::string& key, double fallback) const {
  if (!Has(key)) return fallback;
  auto v = Double(key);
  if (!v.ok()) {
    status_ = v.status();
    return fallback;
  }
  return *v;
}

bool ConfigReader::BoolOr(const std::string& key, bool fallback) const {
  if (!Has(key)) return fallback;
  if (!j_[key].is_boolean()) {
    status_ = Error(source_ + ": field '" + key + "' is not a boolean");
    return fallback;
  }
  return j_[key].get<bool>();
}

std::vector<int> ConfigReader::IntListOr(const std::string& key) const {
  std::vector<int> out;
  if (!Has(key)) return out;
  if (!j_[key].is_array()) {
    status_ = Error(source_ + ": field '" + key + "' is not a list");
    return out;
  }
  for (const auto& v : j_[key]) {
    if (!v.is_number_integer()) {
      status_ = Error(source_ + ": field '" + key + "' has a non-integer entry");
      return {};
    }
    out.push_back(v.get<int>());
  }
  return out;
}

StatusOr<ModelConfig> ParseModelConfig(const json& j, const std::string& source) {
  if (!j.is_object()) return Error(source + ": not a JSON object");
  MR_ASSIGN_OR_RETURN(const Architecture* arch, FindArchitecture(j, source));
  ModelConfig config;
  config.raw = j;
  config.architecture = std::string(arch->names.front());
  MR_RETURN_IF_ERROR(arch->parse_config(config, source));
  return config;
}

namespace {

std::vector<int32_t> EosIds(const json& v) {
  std::vector<int32_t> ids;
  if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
  if (v.is_array()) {
    for (const auto& e : v) {
      if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
    }
  }
  return ids;
}

}  // namespace

StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  if (!fs::is_directory(dir)) return Error(dir + ": model directory not found");
  const std::string path = (fs::path(dir) / "config.json").string();
  MR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error(path + ": not valid JSON");
  MR_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(j, path));
  if (j.contains("eos_token_id")) config.generation.eos_token_ids = EosIds(j["eos_token_id"]);

  const std::string gen_path = (fs::path(dir) / "generation_config.json").string();
  if (fs::exists(gen_path)) {
    MR_ASSIGN_OR_RETURN(std::string gen_text, ReadFileToString(gen_path));
    json g = json::parse(gen_text, nullptr, false);
    if (g.is_discarded() || !g.is_object()) return Error(gen_path + ": not a JSON object");
    if (g.contains("eos_token_id")) config.generation.eos_token_ids = EosIds(g["eos_token_id"]);
    ConfigReader r(g, gen_path);
    // Sampling defaults apply only when the generation config asks for sampling.
    if (r.BoolOr("do_sample", true)) {
      if (r.Has("temperature"))
        config.generation.temperature = static_cast<float>(r.DoubleOr("temperature", 1.0));
      if (r.Has("top_k")) config.generation.top_k = r.IntOr("top_k", 0);
      if (r.Has("top_p")) config.generation.top_p = static_cast<float>(r.DoubleOr("top_p", 1.0));
    }
    MR_RETURN_IF_ERROR(r.status());
  }
  return config;
}

}  // namespace moerack
