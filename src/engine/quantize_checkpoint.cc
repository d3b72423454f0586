#include "engine/quantize_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <regex>
#include <set>

#include "core/mapped_file.h"
#include "engine/evaluate.h"
#include "kernels/matmul.h"
#include "model/config.h"
#include "model/linear_loader.h"
#include "model/registry.h"
#include "model/safetensors.h"
#include "quant/fp8.h"
#include "quant/mxfp4.h"
#include "quant/nvfp4.h"
#include "tokenizer/tokenizer.h"

namespace moerack {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Modules ModelOpt leaves alone: routers, embeddings, lm_head (unless asked).
const std::vector<std::string> kDefaultExclude = {
    "*embed_tokens", "*.mlp.gate", "*.block_sparse_moe.gate", "*.shared_expert_gate"};

// Tensors that belong to a quantized Linear `<prefix>` besides its weight.
const char* kAuxSuffixes[] = {".weight_scale_inv", ".weight_scale",       ".weight_scale_2",
                              ".input_scale",      ".weight_global_scale", ".input_global_scale"};

struct Module {
  std::string prefix;
  std::string main;  // the tensor holding the elements (weight or weight_packed)
  int64_t rows = 0, cols = 0;
  bool quantize = false;
};

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }
template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return Bytes(v.data(), v.size() * sizeof(T));
}
std::string ScalarBytes(float v) { return Bytes(&v, sizeof(v)); }

class AmaxObserver final : public ActivationObserver {
 public:
  void AddTensor(const void* data, const std::string& module) {
    modules_[reinterpret_cast<uintptr_t>(data)] = module;
  }
  // Credits whole weights only: a row slice (DeepSeek's per-head W_UV views of
  // kv_b) multiplies a different tensor than the Linear's own input, so such
  // modules take the fallback scale instead of a wrong one.
  void Observe(const LinearWeight& w, float amax) override {
    auto it = modules_.find(reinterpret_cast<uintptr_t>(w.data));
    if (it == modules_.end()) return;
    float& m = amax_[it->second];
    m = std::max(m, amax);
  }
  const std::map<std::string, float>& amax() const { return amax_; }

 private:
  std::map<uintptr_t, std::string> modules_;
  std::map<std::string, float> amax_;
};

struct ObserverGuard {
  explicit ObserverGuard(ActivationObserver* o) { SetActivationObserver(o); }
  ~ObserverGuard() { SetActivationObserver(nullptr); }
};

// Max |input| of every Linear of the source model over the calibration tokens.
StatusOr<std::map<std::string, float>> Calibrate(const QuantizeOptions& o, const ModelConfig& config,
                                                 std::shared_ptr<const WeightStore> store,
                                                 const std::vector<Module>& modules) {
  MR_ASSIGN_OR_RETURN(const Architecture* arch, FindArchitecture(config.raw, o.model_dir));
  MR_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, arch->load(config, store, {}));
  const std::string tok_path = (fs::path(o.model_dir) / "tokenizer.json").string();
  MR_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::FromFile(tok_path));
  std::vector<int32_t> tokens;
  if (!o.calib_text.empty()) {
    MR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(o.calib_text));
    tokens = tokenizer.Encode(text);
    if (static_cast<int64_t>(tokens.size()) > o.calib_tokens) tokens.resize(o.calib_tokens);
    if (tokens.size() < 2) return Error(o.calib_text + ": calibration text has fewer than 2 tokens");
  } else {
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> id(0, config.vocab_size - 1);
    for (int64_t i = 0; i < o.calib_tokens; ++i) tokens.push_back(id(rng));
  }
  AmaxObserver observer;
  for (const Module& m : modules) {
    MR_ASSIGN_OR_RETURN(TensorView t, store->Get(m.main));
    observer.AddTensor(t.data, m.prefix);
  }
  ObserverGuard guard(&observer);
  EvalOptions eval;
  eval.ctx = std::min<int64_t>(std::max(config.max_position_embeddings, 2), 512);
  eval.threads = o.threads;
  MR_RETURN_IF_ERROR(EvaluateTokens(*model, tokens, tokenizer, eval).status());
  return observer.amax();
}

// The calibrated amax of `prefix`, else the largest of the same projection of
// the layer's other experts, else of every module; `*fallback` tells.
float AmaxFor(const std::map<std::string, float>& amax, const std::string& prefix, bool* fallback) {
  *fallback = false;
  if (auto it = amax.find(prefix); it != amax.end() && it->second > 0) return it->second;
  *fallback = true;
  static const std::regex kExpert(R"(\.experts\.\d+\.)");
  const std::string group = std::regex_replace(prefix, kExpert, ".experts.*.");
  float best = 0, all = 0;
  for (const auto& [name, a] : amax) {
    all = std::max(all, a);
    if (group != prefix && std::regex_replace(name, kExpert, ".experts.*.") == group)
      best = std::max(best, a);
  }
  const float v = best > 0 ? best : all;
  return v > 0 ? v : 1.0f;
}

int64_t BlockOf(const std::string& format) {
  return format == "nvfp4" ? kNvfp4BlockSize : format == "mxfp4" ? kMxfp4BlockSize : 1;
}

// An fnmatch pattern as a compressed-tensors "re:" entry (it matches names
// exactly or by regex, not by glob).
std::string GlobToRegex(const std::string& glob) {
  std::string re = "re:";
  for (char c : glob) {
    if (c == '*') re += ".*";
    else if (c == '?') re += ".";
    else if (std::string("\\.^$|()[]{}+").find(c) != std::string::npos) re += std::string("\\") + c;
    else re += c;
  }
  return re;
}

json QuantizationConfig(const std::string& format, const std::vector<std::string>& ignore) {
  const json producer = {{"name", "moerack"}, {"version", "0.1"}};
  if (format == "fp8") {
    return {{"quant_method", "fp8"},
            {"fmt", "e4m3"},
            {"activation_scheme", "dynamic"},
            {"weight_block_size", {128, 128}}};
  }
  if (format == "mxfp4") {
    std::vector<std::string> ct_ignore;
    for (const std::string& g : ignore) ct_ignore.push_back(g.rfind("re:", 0) == 0 ? g : GlobToRegex(g));
    return {{"quant_method", "compressed-tensors"},
            {"format", "mxfp4-pack-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"weights",
                 {{"num_bits", 4},
                  {"type", "float"},
                  {"strategy", "group"},
                  {"group_size", 32},
                  {"symmetric", true},
                  {"dynamic", false}}},
                {"targets", {"Linear"}}}}}},
            {"ignore", ct_ignore},
            {"producer", producer}};
  }
  const bool nv = format == "nvfp4";
  json tensor = {{"dynamic", false}, {"num_bits", nv ? 4 : 8}, {"type", "float"}};
  if (nv) tensor["group_size"] = 16;
  return {{"quant_method", "modelopt"},
          {"quant_algo", nv ? "NVFP4" : "FP8"},
          {"config_groups",
           {{"group_0",
             {{"input_activations", tensor}, {"weights", tensor}, {"targets", {"Linear"}}}}}},
          {"ignore", ignore},
          {"producer", producer}};
}

Status WriteJson(const std::string& path, const json& j) {
  return WriteStringToFile(path, j.dump(2) + "\n");
}

}  // namespace

StatusOr<QuantizeReport> QuantizeCheckpoint(const QuantizeOptions& o) {
  static const std::set<std::string> kFormats = {"nvfp4", "mxfp4", "fp8", "fp8-tensor"};
  if (!kFormats.count(o.format)) {
    return Error("--format '" + o.format + "' is not one of nvfp4, mxfp4, fp8, fp8-tensor");
  }
  if (o.calib_tokens < 2) return Error("--calib-tokens must be >= 2");
  std::error_code ec;
  if (fs::exists(o.out_dir) && !fs::is_empty(o.out_dir, ec)) {
    return Error("--out " + o.out_dir + " exists and is not empty");
  }
  MR_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(o.model_dir));
  MR_ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> owned, WeightStore::Open(o.model_dir));
  std::shared_ptr<const WeightStore> store(std::move(owned));

  std::vector<std::string> exclude = kDefaultExclude;
  if (!o.quantize_lm_head) exclude.push_back("lm_head");
  exclude.insert(exclude.end(), o.exclude.begin(), o.exclude.end());

  // Linear modules: 2-D weights (or packed weights) with their logical [N, K].
  QuantizeReport report;
  std::vector<Module> modules;
  std::map<std::string, size_t> module_of;  // tensor name -> index in modules
  std::vector<std::string> kept;
  const std::vector<std::string> names = store->Names();
  for (const std::string& name : names) {
    std::string prefix;
    bool packed = false;
    if (name.ends_with(".weight")) {
      prefix = name.substr(0, name.size() - 7);
    } else if (name.ends_with(".weight_packed")) {
      prefix = name.substr(0, name.size() - 14);
      packed = true;
    } else {
      continue;
    }
    MR_ASSIGN_OR_RETURN(TensorView t, store->Get(name));
    if (t.ndim != 2) continue;
    Module m{prefix, name, t.shape[0], t.shape[1]};
    if (packed || t.dtype == DType::kU8) m.cols *= 2;
    const bool excluded = ModuleMatches(exclude, prefix);
    m.quantize = !excluded && m.cols % BlockOf(o.format) == 0;
    if (!m.quantize) {
      ++report.num_kept;
      if (!excluded) kept.push_back(prefix);
      continue;
    }
    module_of[name] = modules.size();
    for (const char* s : kAuxSuffixes) module_of[prefix + s] = modules.size();
    modules.push_back(m);
  }
  if (modules.empty()) return Error(o.model_dir + ": no Linear weight to quantize");

  std::map<std::string, float> amax;
  const bool needs_input_scale = o.format == "nvfp4" || o.format == "fp8-tensor";
  if (needs_input_scale) {
    auto calibrated = Calibrate(o, config, store, modules);
    if (!calibrated.ok()) return calibrated.status().WithContext("calibration");
    amax = std::move(calibrated).value();
  }

  fs::create_directories(o.out_dir, ec);
  if (ec) return Error(o.out_dir + ": cannot create directory: " + ec.message());

  // Tensors in source order; quantized modules replace their weight (+ aux)
  // tensors. A shard is written as soon as it is full, so memory holds at most
  // one shard (files are renamed to their final names at the end).
  std::vector<TensorToWrite> shard;
  int64_t shard_bytes = 0;
  std::vector<std::vector<std::string>> shard_names;  // tensor names of each written shard
  auto part = [&](size_t s) { return (fs::path(o.out_dir) / ("part-" + std::to_string(s))).string(); };
  auto flush = [&]() -> Status {
    std::vector<std::string> written;
    for (const TensorToWrite& t : shard) written.push_back(t.name);
    MR_RETURN_IF_ERROR(WriteSafetensors(part(shard_names.size()), shard));
    shard_names.push_back(std::move(written));
    shard.clear();
    shard_bytes = 0;
    return Status::Ok();
  };
  Status emit_status = Status::Ok();
  auto emit = [&](TensorToWrite t) {
    report.bytes_out += static_cast<int64_t>(t.bytes.size());
    if (shard_bytes > 0 && shard_bytes + static_cast<int64_t>(t.bytes.size()) > o.shard_bytes &&
        emit_status.ok()) {
      emit_status = flush();
    }
    shard_bytes += static_cast<int64_t>(t.bytes.size());
    shard.push_back(std::move(t));
  };
  for (const std::string& name : names) {
    MR_ASSIGN_OR_RETURN(TensorView t, store->Get(name));
    report.bytes_in += t.nbytes();
    auto it = module_of.find(name);
    if (it == module_of.end()) {
      std::vector<int64_t> shape(t.shape.begin(), t.shape.begin() + t.ndim);
      emit({name, t.dtype, shape, Bytes(t.data, static_cast<size_t>(t.nbytes()))});
      continue;
    }
    const Module& m = modules[it->second];
    if (name != m.main) continue;  // aux tensors of a module being rewritten
    MR_ASSIGN_OR_RETURN(LinearWeight lw,
                        LoadLinear(*store, config.quant, m.prefix + ".weight", m.rows, m.cols));
    const std::vector<float> w = lw.Dequantize();
    const int64_t N = m.rows, K = m.cols;
    const std::string p = m.prefix;
    bool fallback = false;
    if (o.format == "nvfp4") {
      MR_ASSIGN_OR_RETURN(Nvfp4Tensor q, QuantizeNvfp4(w.data(), N, K));
      const float in_scale = AmaxFor(amax, p, &fallback) / kNvfp4ScaleDenominator;
      emit({p + ".weight", DType::kU8, {N, K / 2}, Bytes(q.packed)});
      emit({p + ".weight_scale", DType::kFP8E4M3, {N, K / kNvfp4BlockSize}, Bytes(q.block_scale)});
      emit({p + ".weight_scale_2", DType::kF32, {}, ScalarBytes(q.global_scale)});
      emit({p + ".input_scale", DType::kF32, {}, ScalarBytes(in_scale)});
    } else if (o.format == "mxfp4") {
      MR_ASSIGN_OR_RETURN(Mxfp4Tensor q, QuantizeMxfp4(w.data(), N, K));
      emit({p + ".weight_packed", DType::kU8, {N, K / 2}, Bytes(q.blocks)});
      emit({p + ".weight_scale", DType::kU8, {N, K / kMxfp4BlockSize}, Bytes(q.scales)});
    } else {
      const bool block = o.format == "fp8";
      std::vector<uint8_t> q;
      std::vector<float> scale;
      QuantizeBlockFp8(w.data(), N, K, block ? 128 : static_cast<int>(std::max(N, K)), &q, &scale);
      emit({p + ".weight", DType::kFP8E4M3, {N, K}, Bytes(q)});
      if (block) {
        emit({p + ".weight_scale_inv", DType::kF32, {(N + 127) / 128, (K + 127) / 128}, Bytes(scale)});
      } else {
        emit({p + ".weight_scale", DType::kF32, {}, ScalarBytes(scale[0])});
        emit({p + ".input_scale", DType::kF32, {},
              ScalarBytes(AmaxFor(amax, p, &fallback) / kFp8E4M3Max)});
      }
    }
    report.num_uncalibrated += fallback ? 1 : 0;
    ++report.num_quantized;
    MR_RETURN_IF_ERROR(emit_status);
  }
  MR_RETURN_IF_ERROR(flush());

  // Files: shards (+ index), config with quantization_config, the rest copied.
  json index = {{"metadata", {{"total_size", report.bytes_out}}}, {"weight_map", json::object()}};
  const size_t num_shards = shard_names.size();
  for (size_t s = 0; s < num_shards; ++s) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", s + 1, num_shards);
    const std::string file = num_shards == 1 ? "model.safetensors" : buf;
    fs::rename(part(s), fs::path(o.out_dir) / file, ec);
    if (ec) return Error(part(s) + ": cannot rename: " + ec.message());
    for (const std::string& name : shard_names[s]) index["weight_map"][name] = file;
  }
  if (num_shards > 1) {
    MR_RETURN_IF_ERROR(
        WriteJson((fs::path(o.out_dir) / "model.safetensors.index.json").string(), index));
  }
  std::vector<std::string> ignore = exclude;
  ignore.insert(ignore.end(), kept.begin(), kept.end());
  json cfg = config.raw;
  cfg["quantization_config"] = QuantizationConfig(o.format, ignore);
  MR_RETURN_IF_ERROR(WriteJson((fs::path(o.out_dir) / "config.json").string(), cfg));
  if (o.format == "nvfp4" || o.format == "fp8-tensor") {
    json hf = {{"producer", {{"name", "moerack"}, {"version", "0.1"}}},
               {"quantization",
                {{"quant_algo", o.format == "nvfp4" ? "NVFP4" : "FP8"},
                 {"kv_cache_quant_algo", nullptr},
                 {"exclude_modules", ignore}}}};
    if (o.format == "nvfp4") hf["quantization"]["group_size"] = 16;
    MR_RETURN_IF_ERROR(WriteJson((fs::path(o.out_dir) / "hf_quant_config.json").string(), hf));
  }
  for (const auto& entry : fs::directory_iterator(o.model_dir)) {
    const std::string fname = entry.path().filename().string();
    if (!entry.is_regular_file() || fname.ends_with(".safetensors") ||
        fname == "model.safetensors.index.json" || fname == "config.json" ||
        fname == "hf_quant_config.json") {
      continue;
    }
    fs::copy_file(entry.path(), fs::path(o.out_dir) / fname, fs::copy_options::overwrite_existing,
                  ec);
    if (ec) return Error(entry.path().string() + ": cannot copy: " + ec.message());
  }
  return report;
}

}  // namespace moerack
