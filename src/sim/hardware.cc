#include "sim/hardware.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "core/paths.h"

namespace moerack::sim {

double HardwareSpec::GemmFlops(Precision p) const {
  switch (p) {
    case Precision::kNvfp4:
      if (flops_fp4 > 0) return flops_fp4;
      [[fallthrough]];
    case Precision::kFp8:
      if (flops_fp8 > 0) return flops_fp8;
      [[fallthrough]];
    case Precision::kBf16:
      return flops_bf16;
  }
  return flops_bf16;
}

namespace {

// A positive number at `key` (required unless `optional`), scaled by `unit`.
Status ReadNumber(const nlohmann::json& j, const std::string& key, double unit, bool optional,
                  const std::string& source, double* out) {
  if (!j.contains(key) || j[key].is_null()) {
    if (optional) return Status::Ok();
    return Error(source + ": missing field '" + key + "'");
  }
  if (!j[key].is_number()) return Error(source + ": field '" + key + "' must be a number");
  const double v = j[key].get<double>();
  if (!(v >= 0)) return Error(source + ": field '" + key + "' must be >= 0");
  *out = v * unit;
  return Status::Ok();
}

}  // namespace

StatusOr<HardwareSpec> ParseHardware(const std::string& json_text, const std::string& source) {
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Error(source + ": not a JSON object");
  HardwareSpec h;
  if (!j.contains("name") || !j["name"].is_string()) return Error(source + ": missing 'name'");
  h.name = j["name"].get<std::string>();
  if (j.contains("description") && j["description"].is_string())
    h.description = j["description"].get<std::string>();
  if (j.contains("rates")) {
    if (!j["rates"].is_string() ||
        (j["rates"] != "datasheet" && j["rates"] != "measured"))
      return Error(source + ": field 'rates' must be \"datasheet\" or \"measured\"");
    h.measured_rates = j["rates"] == "measured";
  }
  MR_RETURN_IF_ERROR(ReadNumber(j, "hbm_gb", 1e9, false, source, &h.hbm_bytes));
  MR_RETURN_IF_ERROR(ReadNumber(j, "hbm_tb_s", 1e12, false, source, &h.hbm_bytes_per_s));
  if (!j.contains("tflops") || !j["tflops"].is_object())
    return Error(source + ": missing object 'tflops' (bf16, fp8, fp4)");
  const std::string tf = source + " tflops";
  MR_RETURN_IF_ERROR(ReadNumber(j["tflops"], "bf16", 1e12, false, tf, &h.flops_bf16));
  MR_RETURN_IF_ERROR(ReadNumber(j["tflops"], "fp8", 1e12, true, tf, &h.flops_fp8));
  MR_RETURN_IF_ERROR(ReadNumber(j["tflops"], "fp4", 1e12, true, tf, &h.flops_fp4));
  MR_RETURN_IF_ERROR(ReadNumber(j, "nvlink_gb_s", 1e9, false, source, &h.nvlink_bytes_per_s));
  MR_RETURN_IF_ERROR(ReadNumber(j, "scaleout_gb_s", 1e9, false, source, &h.scaleout_bytes_per_s));
  MR_RETURN_IF_ERROR(ReadNumber(j, "nvlink_latency_us", 1e-6, false, source, &h.nvlink_latency_s));
  MR_RETURN_IF_ERROR(
      ReadNumber(j, "scaleout_latency_us", 1e-6, false, source, &h.scaleout_latency_s));
  MR_RETURN_IF_ERROR(ReadNumber(j, "power_w", 1, false, source, &h.power_w));
  MR_RETURN_IF_ERROR(ReadNumber(j, "price_per_gpu_hour", 1, true, source, &h.price_per_gpu_hour));
  double domain = 1, max_gpus = 8;
  MR_RETURN_IF_ERROR(ReadNumber(j, "nvlink_domain", 1, false, source, &domain));
  MR_RETURN_IF_ERROR(ReadNumber(j, "max_gpus", 1, false, source, &max_gpus));
  if (domain > 65536 || max_gpus > 65536)
    return Error(source + ": nvlink_domain and max_gpus must be <= 65536");
  h.nvlink_domain = std::max(1, static_cast<int>(domain));
  h.max_gpus = std::max(1, static_cast<int>(max_gpus));
  if (h.nvlink_domain > 1 && h.nvlink_bytes_per_s <= 0)
    return Error(source + ": nvlink_gb_s must be positive when nvlink_domain exceeds 1");
  if (h.hbm_bytes <= 0 || h.hbm_bytes_per_s <= 0 || h.flops_bf16 <= 0)
    return Error(source + ": hbm_gb, hbm_tb_s and tflops.bf16 must be positive");
  if (h.scaleout_bytes_per_s <= 0 && h.max_gpus > h.nvlink_domain)
    return Error(source + ": scaleout_gb_s must be positive when max_gpus exceeds nvlink_domain");
  return h;
}

StatusOr<HardwareSpec> LoadHardware(const std::string& name_or_path) {
  namespace fs = std::filesystem;
  std::string path = name_or_path;
  if (!fs::is_regular_file(path)) {
    MR_ASSIGN_OR_RETURN(std::string data, FindDataDir());
    path = (fs::path(data) / "hardware" / (name_or_path + ".json")).string();
    if (!fs::is_regular_file(path)) {
      std::string known;
      for (const std::string& n : ListHardware()) known += (known.empty() ? "" : ", ") + n;
      return Error("--hardware: unknown system '" + name_or_path + "' (known: " + known + ")");
    }
  }
  MR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseHardware(text, path);
}

std::vector<std::string> ListHardware() {
  namespace fs = std::filesystem;
  std::vector<std::string> names;
  auto data = FindDataDir();
  if (!data.ok()) return names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(*data) / "hardware", ec))
    if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace moerack::sim
