#include "sim/validation.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/mapped_file.h"

namespace moerack::sim {

namespace {

std::vector<std::string> SplitCsvLine(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        cur += ch;
      }
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (ch != '\r') {
      cur += ch;
    }
  }
  out.push_back(cur);
  return out;
}

StatusOr<double> Number(const std::string& s, const std::string& what, bool allow_empty) {
  if (s.empty()) {
    if (allow_empty) return 0.0;
    return Error(what + " is empty");
  }
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || !(v >= 0)) return Error(what + ": bad number '" + s + "'");
  return v;
}

}  // namespace

StatusOr<std::vector<PublishedRow>> LoadPublished(const std::string& path) {
  MR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    if (nl > pos) lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  if (lines.empty()) return Error(path + ": empty");
  const std::vector<std::string> header = SplitCsvLine(lines[0]);
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < header.size(); ++i) col[header[i]] = i;
  for (const char* need : {"id", "model", "hardware", "precision", "kv_dtype", "phase", "isl",
                           "osl", "gpus", "tp", "ep", "batch_per_gpu", "mtp", "metric", "value",
                           "role"})
    if (!col.count(need)) return Error(path + ": missing column '" + need + "'");
  std::vector<PublishedRow> rows;
  for (size_t li = 1; li < lines.size(); ++li) {
    const std::vector<std::string> f = SplitCsvLine(lines[li]);
    const std::string where = path + " line " + std::to_string(li + 1);
    if (f.size() < header.size()) return Error(where + ": " + std::to_string(f.size()) +
                                               " fields, header has " +
                                               std::to_string(header.size()));
    auto get = [&](const char* k) { return f[col[k]]; };
    PublishedRow r;
    r.id = get("id");
    r.model = get("model");
    r.hardware = get("hardware");
    r.precision = get("precision");
    r.kv_dtype = get("kv_dtype");
    r.phase = get("phase");
    r.metric = get("metric");
    r.role = get("role");
    if (col.count("source")) r.source = get("source");
    MR_ASSIGN_OR_RETURN(double isl, Number(get("isl"), where + " isl", false));
    MR_ASSIGN_OR_RETURN(double osl, Number(get("osl"), where + " osl", true));
    MR_ASSIGN_OR_RETURN(double gpus, Number(get("gpus"), where + " gpus", false));
    MR_ASSIGN_OR_RETURN(double tp, Number(get("tp"), where + " tp", false));
    MR_ASSIGN_OR_RETURN(double ep, Number(get("ep"), where + " ep", false));
    MR_ASSIGN_OR_RETURN(r.batch_per_gpu, Number(get("batch_per_gpu"), where + " batch", true));
    MR_ASSIGN_OR_RETURN(double mtp, Number(get("mtp"), where + " mtp", true));
    MR_ASSIGN_OR_RETURN(r.value, Number(get("value"), where + " value", false));
    r.isl = static_cast<int64_t>(isl);
    r.osl = static_cast<int64_t>(osl);
    r.gpus = static_cast<int>(gpus);
    r.tp = std::max(1, static_cast<int>(tp));
    r.ep = std::max(1, static_cast<int>(ep));
    r.mtp = static_cast<int>(mtp);
    if (r.role != "calibration" && r.role != "validation")
      return Error(where + ": role must be calibration or validation, not '" + r.role + "'");
    if (r.phase != "prefill" && r.phase != "decode" && r.phase != "aggregated")
      return Error(where + ": phase must be prefill, decode or aggregated");
    if (r.metric != "tokens_per_s_per_gpu" && r.metric != "tokens_per_s_per_user")
      return Error(where + ": metric must be tokens_per_s_per_gpu or tokens_per_s_per_user");
    if (r.gpus <= 0 || r.gpus > 65536 || r.gpus % r.tp != 0 || r.gpus % r.ep != 0)
      return Error(where + ": gpus must be a positive multiple of tp and ep, at most 65536");
    if (r.batch_per_gpu > 1e6 || r.isl > (int64_t{1} << 24) || r.osl > (int64_t{1} << 24) ||
        r.mtp > 8)
      return Error(where + ": batch_per_gpu <= 1e6, isl and osl <= 2^24, mtp <= 8");
    rows.push_back(std::move(r));
  }
  return rows;
}

namespace {

StatusOr<double> ReplayRow(const PublishedRow& row, const Efficiency& eff, std::string* bound) {
  SimSetup s;
  MR_ASSIGN_OR_RETURN(s.model, LoadModelSpec(row.model));
  MR_ASSIGN_OR_RETURN(s.hw, LoadHardware(row.hardware));
  MR_ASSIGN_OR_RETURN(s.system.precision, ParsePrecision(row.precision, row.id + " precision"));
  MR_ASSIGN_OR_RETURN(s.system.kv, ParsePrecision(row.kv_dtype, row.id + " kv_dtype"));
  s.system.mtp = row.mtp;
  s.eff = eff;
  s.isl = row.isl;
  // Decode rows: the published KV length is the context; a short output keeps it there.
  s.osl = row.osl > 0 ? row.osl : 100;
  PoolReport pool;
  pool.layout = Layout{row.gpus, row.tp, row.ep, /*overlap=*/false};
  pool.instances = 1;
  const CostModel cm(s.model, s.hw, pool.layout, s.system, s.eff);
  if (row.phase == "prefill") {
    pool.role = Role::kPrefill;
    pool.tokens_per_step = static_cast<int64_t>(
        (row.batch_per_gpu > 0 ? row.batch_per_gpu : 16384.0) * row.tp);
  } else {
    pool.role = row.phase == "decode" ? Role::kDecode : Role::kAggregated;
    double batch = row.batch_per_gpu * row.tp;
    const double per_seq = s.isl + s.osl / 2.0;
    const double fits = std::floor(cm.KvTokenCapacity(per_seq) / per_seq);
    // Unpublished batch: the KV-limited one, as the sources size it.
    if (batch <= 0) batch = fits;
    if (batch < 1) return Error("the weights leave no room for the KV cache");
    pool.batch_per_rank = std::max(1.0, std::round(batch));
  }
  // The sources tuned their deployments: price the layout with and without
  // two-batch overlap and keep the better.
  double best = -1;
  for (int overlap = 0; overlap < (row.ep > 1 ? 2 : 1); ++overlap) {
    pool.layout.overlap = overlap == 1;
    MR_ASSIGN_OR_RETURN(SystemPoint p, SimulatePhase(s, pool));
    const double v = row.metric == "tokens_per_s_per_user" ? p.tokens_per_s_per_user
                     : row.phase == "prefill"             ? p.total_tokens_per_s_per_gpu
                                                          : p.output_tokens_per_s_per_gpu;
    if (v > best) {
      best = v;
      *bound = p.decode_step.BoundLabel() + (overlap ? ", overlap" : "");
    }
  }
  return best;
}

}  // namespace

std::vector<RowResult> Replay(const std::vector<PublishedRow>& rows, const Efficiency& eff) {
  std::vector<RowResult> out;
  for (const PublishedRow& row : rows) {
    RowResult r;
    r.row = row;
    auto v = ReplayRow(row, eff, &r.bound);
    if (v.ok()) {
      r.predicted = *v;
      r.error = row.value > 0 ? *v / row.value - 1 : 0;
    } else {
      r.failure = v.status().message();
    }
    out.push_back(std::move(r));
  }
  return out;
}

double MedianAbsError(const std::vector<RowResult>& results, const std::string& role) {
  std::vector<double> e;
  for (const RowResult& r : results)
    if (r.failure.empty() && (role.empty() || r.row.role == role)) e.push_back(std::fabs(r.error));
  return e.empty() ? 0 : Percentile(e, 50);
}

Efficiency FitEfficiency(const std::vector<PublishedRow>& rows, const Efficiency& start) {
  std::vector<PublishedRow> calib;
  for (const PublishedRow& r : rows)
    if (r.role == "calibration") calib.push_back(r);
  // Mean |log(predicted / published)|: symmetric in over/under-prediction.
  auto loss = [&](const Efficiency& e) {
    double sum = 0;
    int n = 0;
    for (const RowResult& r : Replay(calib, e)) {
      if (!r.failure.empty() || r.predicted <= 0) return 1e9;
      sum += std::fabs(std::log(r.predicted / r.row.value));
      ++n;
    }
    return n ? sum / n : 1e9;
  };
  struct Knob {
    double Efficiency::*field;
    double lo, hi;
  };
  // Ranges a real system plausibly spans (the fit may not leave them).
  const Knob knobs[] = {{&Efficiency::gemm, 0.25, 0.8},      {&Efficiency::hbm, 0.6, 0.9},
                        {&Efficiency::attention, 0.2, 0.7},  {&Efficiency::link, 0.4, 0.85},
                        {&Efficiency::layer_overhead_s, 5e-6, 100e-6},
                        {&Efficiency::moe_skew, 0.0, 0.4}};
  Efficiency best = start;
  double best_loss = loss(best);
  for (int round = 0; round < 3; ++round) {
    for (const Knob& k : knobs) {
      for (int i = 0; i <= 8; ++i) {
        Efficiency e = best;
        e.*k.field = k.lo + (k.hi - k.lo) * i / 8.0;
        const double l = loss(e);
        if (l < best_loss - 1e-9) {
          best_loss = l;
          best = e;
        }
      }
    }
  }
  return best;
}

}  // namespace moerack::sim
