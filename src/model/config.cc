#include "model/config.h"

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <regex>

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
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    MR_ASSIGN_OR_RETURN(config.quant, ParseQuantConfig(j["quantization_config"],
                                                       source + ": quantization_config"));
  }
  return config;
}

bool ModuleMatches(const std::vector<std::string>& patterns, const std::string& name) {
  for (const std::string& p : patterns) {
    if (p.rfind("re:", 0) == 0) {
      try {
        if (std::regex_match(name, std::regex(p.substr(3)))) return true;
      } catch (const std::regex_error&) {  // validated in ParseQuantConfig
      }
    } else if (fnmatch(p.c_str(), name.c_str(), 0) == 0) {
      return true;
    }
  }
  return false;
}

namespace {

std::string Upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

Status ReadPatterns(const json& q, const char* key, const std::string& source,
                    std::vector<std::string>* out) {
  if (!q.contains(key) || q[key].is_null()) return Status::Ok();
  if (!q[key].is_array()) return Error(source + ": '" + key + "' must be a list of strings");
  for (const auto& e : q[key]) {
    if (!e.is_string()) return Error(source + ": '" + key + "' must be a list of strings");
    const std::string p = e.get<std::string>();
    if (p.rfind("re:", 0) == 0) {
      try {
        std::regex re(p.substr(3));
      } catch (const std::regex_error&) {
        return Error(source + ": '" + key + "' has an invalid regular expression '" + p + "'");
      }
    }
    out->push_back(p);
  }
  return Status::Ok();
}

// kv_cache_scheme {num_bits: 8, type: float} (compressed-tensors / ModelOpt rewrite).
std::string KvAlgoFromScheme(const json& q) {
  if (!q.contains("kv_cache_scheme") || !q["kv_cache_scheme"].is_object()) return "";
  const json& s = q["kv_cache_scheme"];
  if (s.value("num_bits", 0) == 8 && s.value("type", "") == "float") return "FP8";
  return "";
}

}  // namespace

StatusOr<QuantConfig> ParseQuantConfig(const json& q, const std::string& source) {
  if (!q.is_object()) return Error(source + ": must be a JSON object");
  QuantConfig c;
  auto algo_of = [&](const json& o, const char* key) -> StatusOr<std::string> {
    if (!o.contains(key) || !o[key].is_string())
      return Error(source + ": missing string field '" + key + "'");
    return Upper(o[key].get<std::string>());
  };
  if (q.contains("quantization") && q["quantization"].is_object()) {  // hf_quant_config.json
    const json& m = q["quantization"];
    c.method = "modelopt";
    MR_ASSIGN_OR_RETURN(c.algo, algo_of(m, "quant_algo"));
    MR_RETURN_IF_ERROR(ReadPatterns(m, "exclude_modules", source, &c.exclude));
    if (m.contains("kv_cache_quant_algo") && m["kv_cache_quant_algo"].is_string())
      c.kv_cache_algo = Upper(m["kv_cache_quant_algo"].get<std::string>());
  } else {
    if (!q.contains("quant_method") || !q["quant_method"].is_string())
      return Error(source + ": missing string field 'quant_method'");
    c.method = q["quant_method"].get<std::string>();
    std::transform(c.method.begin(), c.method.end(), c.method.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    if (c.method == "fp8") {
      c.algo = q.contains("weight_block_size") ? "FP8_BLOCK" : "FP8";
      if (q.contains("weight_block_size")) {
        const auto& b = q["weight_block_size"];
        if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() ||
            !b[1].is_number_integer() || b[0].get<int>() <= 0 || b[1].get<int>() <= 0) {
          return Error(source + ": weight_block_size must be two positive integers");
        }
        c.fp8_block_n = b[0].get<int>();
        c.fp8_block_k = b[1].get<int>();
      }
      MR_RETURN_IF_ERROR(ReadPatterns(q, "modules_to_not_convert", source, &c.exclude));
    } else if (c.method == "modelopt") {
      MR_ASSIGN_OR_RETURN(c.algo, algo_of(q, "quant_algo"));
      MR_RETURN_IF_ERROR(ReadPatterns(q, "ignore", source, &c.exclude));
      MR_RETURN_IF_ERROR(ReadPatterns(q, "exclude_modules", source, &c.exclude));
      c.kv_cache_algo = KvAlgoFromScheme(q);
      if (q.contains("kv_cache_quant_algo") && q["kv_cache_quant_algo"].is_string())
        c.kv_cache_algo = Upper(q["kv_cache_quant_algo"].get<std::string>());
    } else if (c.method == "compressed-tensors") {
      const std::string format = q.value("format", "");
      if (format == "nvfp4-pack-quantized") {
        c.algo = "NVFP4";
      } else if (format == "mxfp4-pack-quantized") {
        c.algo = "MXFP4";
      } else if (format == "float-quantized") {
        c.algo = "FP8";
      } else {
        return Error(source + ": compressed-tensors format '" + format +
                     "' is not supported (supported: nvfp4-pack-quantized, "
                     "mxfp4-pack-quantized, float-quantized)");
      }
      MR_RETURN_IF_ERROR(ReadPatterns(q, "ignore", source, &c.exclude));
      c.kv_cache_algo = KvAlgoFromScheme(q);
    } else if (c.method == "mxfp4") {
      c.algo = "MXFP4";
      MR_RETURN_IF_ERROR(ReadPatterns(q, "modules_to_not_convert", source, &c.exclude));
    } else {
      return Error(source + ": quant_method '" + c.method +
                   "' is not supported (supported: fp8, modelopt, compressed-tensors, mxfp4)");
    }
  }
  static const char* kAlgos[] = {"NVFP4", "W4A16_NVFP4", "NVFP4_A16", "FP8",
                                 "FP8_BLOCK", "MXFP4",      "MIXED_PRECISION"};
  if (std::find(std::begin(kAlgos), std::end(kAlgos), c.algo) == std::end(kAlgos)) {
    return Error(source + ": quant_algo '" + c.algo +
                 "' is not supported (supported: NVFP4, W4A16_NVFP4, FP8, FP8_BLOCK, MXFP4, "
                 "MIXED_PRECISION)");
  }
  if (!c.kv_cache_algo.empty() && c.kv_cache_algo != "FP8") {
    return Error(source + ": KV cache quantization '" + c.kv_cache_algo +
                 "' is not supported (supported: FP8)");
  }
  return c;
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
  // ModelOpt's legacy description, when config.json has none.
  const std::string hf_quant = (fs::path(dir) / "hf_quant_config.json").string();
  if (config.quant.method.empty() && fs::exists(hf_quant)) {
    MR_ASSIGN_OR_RETURN(std::string q_text, ReadFileToString(hf_quant));
    json q = json::parse(q_text, nullptr, false);
    if (q.is_discarded()) return Error(hf_quant + ": not valid JSON");
    MR_ASSIGN_OR_RETURN(config.quant, ParseQuantConfig(q, hf_quant));
  }
  return config;
}

}  // namespace moerack
