// moerack sim: the rack-scale simulator's front door. Searches parallel
// layouts for a model on a modelled system and prints the throughput-per-GPU vs
// tokens/s-per-user frontier (text, --json, --csv, --plot); --compare runs
// several systems on one workload; --layout/--phase price one fixed
// configuration; --validate/--fit replay published measurements.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "sim/report.h"
#include "sim/validation.h"

namespace moerack::cli {
namespace {

using namespace moerack::sim;

struct SimFlags {
  std::string model = "deepseek-r1";
  std::string hardware;
  std::string precision = "fp8";
  std::string kv_dtype;  // default: fp8 with nvfp4, else bf16
  int64_t isl = 1024, osl = 1024;
  std::string len_dist = "fixed";
  std::string disagg = "auto";
  int gpus = 0;
  bool json = false, csv = false;
  std::string plot;
  std::string compare;
  std::string layout;
  std::string phase;
  double concurrency = 0;
  double arrival_rate = 0;
  int mtp = 0;
  double mtp_accept = 0.7;
  bool inswitch_reduce = false;
  uint64_t seed = 1;
  double price = 0;  // $/GPU-hour; 0: the catalog's
  std::string validate, fit;
  std::string efficiency;  // overrides of the fitted factors
};

const char* kCmd = "sim";

StatusOr<SimSetup> Setup(const SimFlags& f, const std::string& hardware,
                         const std::string& precision) {
  SimSetup s;
  MR_ASSIGN_OR_RETURN(s.model, LoadModelSpec(f.model));
  MR_ASSIGN_OR_RETURN(s.hw, LoadHardware(hardware));
  if (f.price > 0) s.hw.price_per_gpu_hour = f.price;
  MR_ASSIGN_OR_RETURN(s.system.precision, ParsePrecision(precision, "--precision"));
  const std::string kv =
      f.kv_dtype.empty() ? (s.system.precision == Precision::kNvfp4 ? "fp8" : "bf16") : f.kv_dtype;
  MR_ASSIGN_OR_RETURN(s.system.kv, ParsePrecision(kv, "--kv-dtype"));
  if (s.system.kv == Precision::kNvfp4) return Error("--kv-dtype: bf16 or fp8");
  s.system.mtp = f.mtp;
  s.system.inswitch_reduce = f.inswitch_reduce;
  s.isl = f.isl;
  s.osl = f.osl;
  s.dist = f.len_dist == "uniform" ? LengthDist::kUniform : LengthDist::kFixed;
  s.mtp_accept = f.mtp_accept;
  s.disagg = f.disagg == "on" ? Disagg::kOn : f.disagg == "off" ? Disagg::kOff : Disagg::kAuto;
  s.gpus = f.gpus;
  s.seed = f.seed;
  MR_ASSIGN_OR_RETURN(s.eff, ParseEfficiency(f.efficiency, s.eff));
  return s;
}

std::string KvName(const SimSetup& s) { return PrecisionName(s.system.kv); }

void PrintFrontierText(const SimSetup& s, const SearchResult& r) {
  std::printf("%s on %s (%s weights, %s KV), ISL %lld / OSL %lld, up to %d GPUs: %lld "
              "configurations in %.2f s\n",
              s.model.name.c_str(), s.hw.name.c_str(), PrecisionName(s.system.precision),
              KvName(s).c_str(), static_cast<long long>(s.isl), static_cast<long long>(s.osl),
              s.gpus > 0 ? s.gpus : s.hw.max_gpus, static_cast<long long>(r.configurations),
              r.elapsed_s);
  std::printf("%10s %12s %12s %9s %9s %5s  %-22s %s\n", "tok/s/user", "out tok/s/GPU",
              "all tok/s/GPU", "TTFT p50", "ITL", "GPUs", "bound", "layout");
  for (const SystemPoint& p : r.frontier)
    std::printf("%10.1f %12.1f %12.1f %8.3fs %7.1fms %5d  %-22s %s\n", p.tokens_per_s_per_user,
                p.output_tokens_per_s_per_gpu, p.total_tokens_per_s_per_gpu, p.ttft_p50_s,
                p.itl_mean_s * 1e3, p.gpus, p.decode_step.BoundLabel().c_str(),
                LayoutSummary(p).c_str());
}

nlohmann::json SearchJson(const SimSetup& s, const SearchResult& r) {
  nlohmann::json j;
  j["model"] = s.model.name;
  j["hardware"] = s.hw.name;
  j["precision"] = PrecisionName(s.system.precision);
  j["kv_dtype"] = KvName(s);
  j["isl"] = s.isl;
  j["osl"] = s.osl;
  j["mtp"] = s.system.mtp;
  j["configurations"] = r.configurations;
  j["elapsed_s"] = r.elapsed_s;
  j["frontier"] = nlohmann::json::array();
  for (const SystemPoint& p : r.frontier) j["frontier"].push_back(PointJson(p));
  return j;
}

Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  if (!out) return Error("--plot: cannot write '" + path + "'");
  out << text;
  if (!out) return Error("--plot: write to '" + path + "' failed");
  return Status::Ok();
}

// "prefill:gpus=8,tp=1,ep=8,tokens=16384;decode:gpus=48,ep=48,batch=256"
StatusOr<std::vector<PoolReport>> ParseLayout(const std::string& spec, const SimSetup& s) {
  std::vector<PoolReport> pools;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ';')) {
    if (item.empty()) continue;
    const size_t colon = item.find(':');
    const std::string role = colon == std::string::npos ? "agg" : item.substr(0, colon);
    PoolReport p;
    if (role == "prefill") p.role = Role::kPrefill;
    else if (role == "decode") p.role = Role::kDecode;
    else if (role == "agg" || role == "aggregated") p.role = Role::kAggregated;
    else return Error("--layout: pool role '" + role + "' (prefill, decode or agg)");
    int gpus = 1, tp = 1, ep = 0;
    bool overlap = false;
    double batch = 0, tokens = 16384;
    p.instances = 1;
    std::stringstream kv(colon == std::string::npos ? item : item.substr(colon + 1));
    std::string pair;
    while (std::getline(kv, pair, ',')) {
      const size_t eq = pair.find('=');
      if (eq == std::string::npos) return Error("--layout: expected key=value, got '" + pair + "'");
      const std::string k = pair.substr(0, eq), v = pair.substr(eq + 1);
      char* end = nullptr;
      const double x = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end || !std::isfinite(x) || x < 0)
        return Error("--layout: bad value for " + k + ": '" + v + "'");
      const bool integral = x == std::floor(x);
      auto count = [&](int* out) -> Status {
        if (!integral || x < 1 || x > 65536)
          return Error("--layout: " + k + " must be a whole number in [1, 65536], not '" + v + "'");
        *out = static_cast<int>(x);
        return Status::Ok();
      };
      if (k == "gpus") MR_RETURN_IF_ERROR(count(&gpus));
      else if (k == "instances") MR_RETURN_IF_ERROR(count(&p.instances));
      else if (k == "tp") MR_RETURN_IF_ERROR(count(&tp));
      else if (k == "ep") MR_RETURN_IF_ERROR(count(&ep));
      else if (k == "overlap") overlap = x != 0;
      else if (k == "batch") batch = x;
      else if (k == "tokens") tokens = x;
      else return Error("--layout: unknown key '" + k +
                        "' (gpus, instances, tp, ep, overlap, batch, tokens)");
    }
    if (ep == 0) ep = gpus;
    if (gpus < 1 || tp < 1 || ep < 1 || gpus % tp || gpus % ep || p.instances < 1)
      return Error("--layout: gpus must be a positive multiple of tp and ep (pool " + role + ")");
    if (s.model.num_experts > 0 && ep > s.model.num_experts)
      return Error("--layout: ep " + std::to_string(ep) + " exceeds the model's " +
                   std::to_string(s.model.num_experts) + " experts");
    p.layout = Layout{gpus, tp, ep, overlap};
    MR_RETURN_IF_ERROR(CheckLayout(s.hw, p.layout));
    p.batch_per_rank = batch * tp;
    p.tokens_per_step = static_cast<int64_t>(tokens * tp);
    if (p.batch_per_rank > 1e6)
      return Error("--layout: batch of " + std::to_string(p.batch_per_rank) +
                   " sequences per rank (at most 1e6)");
    if (p.tokens_per_step < 1 || tokens * tp > 1e8)
      return Error("--layout: tokens per step per rank must be in [1, 1e8]");
    pools.push_back(p);
  }
  if (pools.empty()) return Error("--layout: no pool given");
  return pools;
}

void PrintPoint(const SystemPoint& p, bool json) {
  if (json) {
    std::printf("%s\n", PointJson(p).dump(2).c_str());
    return;
  }
  std::printf("layout: %s (%d GPUs)\n", LayoutSummary(p).c_str(), p.gpus);
  if (p.output_tokens_per_s_per_gpu > 0)
    std::printf("output: %.1f tok/s per GPU; %.1f tok/s per user (ITL mean %.2f ms, p99 %.2f ms)\n",
                p.output_tokens_per_s_per_gpu, p.tokens_per_s_per_user, p.itl_mean_s * 1e3,
                p.itl_p99_s * 1e3);
  std::printf("total (input + output): %.1f tok/s per GPU\n", p.total_tokens_per_s_per_gpu);
  if (p.ttft_p50_s > 0)
    std::printf("TTFT: p50 %.3f s, p90 %.3f s, p99 %.3f s\n", p.ttft_p50_s, p.ttft_p90_s,
                p.ttft_p99_s);
  if (p.cost_per_million_output_tokens > 0)
    std::printf("cost: $%.3f per million output tokens; %.0f output tok/s per kW\n",
                p.cost_per_million_output_tokens, p.output_tokens_per_s_per_kw);
  std::printf("step: %.3f ms, bound by %s; parts (ms per step):", p.decode_step.total_s * 1e3,
              p.decode_step.BoundLabel().c_str());
  for (int i = 0; i < kNumParts; ++i)
    std::printf(" %s %.3f", PartName(static_cast<Part>(i)), p.decode_step.part_s[i] * 1e3);
  std::printf("\n");
}

int RunLayout(const SimFlags& f) {
  auto s = Setup(f, f.hardware, f.precision);
  if (!s.ok()) return Fail(kCmd, s.status());
  auto pools = ParseLayout(f.layout, *s);
  if (!pools.ok()) return Fail(kCmd, pools.status());
  const PoolReport* prefill = nullptr;
  const PoolReport* decode = nullptr;
  const PoolReport* agg = nullptr;
  for (const PoolReport& p : *pools)
    (p.role == Role::kPrefill ? prefill : p.role == Role::kDecode ? decode : agg) = &p;
  StatusOr<SystemPoint> point = Error("--layout: give one agg pool, or prefill and/or decode pools");
  if (!f.phase.empty()) {
    const PoolReport* pool = f.phase == "prefill" ? prefill : decode;
    if (!pool) return Fail(kCmd, Error("--phase " + f.phase + ": --layout has no such pool"));
    if (pool->role == Role::kDecode && pool->batch_per_rank <= 0)
      return Fail(kCmd, Error("--layout: the decode pool needs batch=N (per GPU)"));
    point = SimulatePhase(*s, *pool);
  } else if (agg && !prefill && !decode) {
    const double ranks = agg->instances * agg->layout.dp();
    double c = agg->batch_per_rank;
    if (f.concurrency > 0) c = f.concurrency / ranks;
    if (c > 1e6) return Fail(kCmd, Error("--concurrency: more than 1e6 requests per rank"));
    if (f.arrival_rate <= 0 && c <= 0)
      return Fail(kCmd, Error("--layout agg: give batch=N, --concurrency or --arrival-rate"));
    point = SimulateAggregated(*s, agg->layout, agg->instances, std::max(1.0, c),
                               f.arrival_rate > 0 ? f.arrival_rate / ranks : 0);
  } else if (prefill && decode && !agg) {
    PoolReport d = *decode;
    const double ranks = d.instances * d.layout.dp();
    if (f.concurrency > 0) d.batch_per_rank = f.concurrency / ranks;
    if (d.batch_per_rank > 1e6)
      return Fail(kCmd, Error("--concurrency: more than 1e6 requests per rank"));
    if (f.arrival_rate > 0) d.rate_per_rank = f.arrival_rate / ranks;
    if (d.batch_per_rank <= 0 && d.rate_per_rank <= 0)
      return Fail(kCmd, Error("--layout: the decode pool needs batch=N, --concurrency or "
                              "--arrival-rate"));
    point = SimulateDisaggregated(*s, *prefill, d);
  }
  if (!point.ok()) return Fail(kCmd, point.status());
  PrintPoint(*point, f.json);
  return 0;
}

int RunValidate(const SimFlags& f) {
  auto parsed = ParseEfficiency(f.efficiency, Efficiency{});
  if (!parsed.ok()) return Fail(kCmd, parsed.status());
  auto rows = LoadPublished(f.fit.empty() ? f.validate : f.fit);
  if (!rows.ok()) return Fail(kCmd, rows.status());
  Efficiency eff = *parsed;
  if (!f.fit.empty()) {
    eff = FitEfficiency(*rows, eff);
    std::printf("fitted on calibration rows: gemm %.3f, hbm %.3f, attention %.3f, link %.3f, "
                "layer_overhead_s %.2e, moe_skew %.3f\n",
                eff.gemm, eff.hbm, eff.attention, eff.link, eff.layer_overhead_s, eff.moe_skew);
  }
  const std::vector<RowResult> res = Replay(*rows, eff);
  if (f.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const RowResult& r : res)
      j.push_back({{"id", r.row.id}, {"role", r.row.role}, {"metric", r.row.metric},
                   {"published", r.row.value}, {"predicted", r.predicted}, {"error", r.error},
                   {"bound", r.bound}, {"failure", r.failure}});
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("| row | role | metric | published | simulated | error | bound |\n");
  std::printf("|---|---|---|---:|---:|---:|---|\n");
  for (const RowResult& r : res) {
    if (!r.failure.empty()) {
      std::printf("| %s | %s | %s | %.6g | failed: %s | | |\n", r.row.id.c_str(),
                  r.row.role.c_str(), r.row.metric.c_str(), r.row.value, r.failure.c_str());
      continue;
    }
    std::printf("| %s | %s | %s | %.6g | %.6g | %+.1f%% | %s |\n", r.row.id.c_str(),
                r.row.role.c_str(), r.row.metric.c_str(), r.row.value, r.predicted,
                100 * r.error, r.bound.c_str());
  }
  std::printf("median |error|: validation %.1f%%, calibration %.1f%%\n",
              100 * MedianAbsError(res, "validation"), 100 * MedianAbsError(res, "calibration"));
  return 0;
}

int RunCompare(const SimFlags& f) {
  struct System {
    std::string label;
    SimSetup setup;
    SearchResult result;
  };
  std::vector<System> systems;
  std::stringstream ss(f.compare);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t colon = item.find(':');
    const std::string hw = item.substr(0, colon);
    const std::string prec = colon == std::string::npos ? f.precision : item.substr(colon + 1);
    auto s = Setup(f, hw, prec);
    if (!s.ok()) return Fail(kCmd, s.status());
    auto r = Search(*s);
    if (!r.ok()) return Fail(kCmd, r.status());
    systems.push_back({hw + " " + prec, *s, std::move(*r)});
  }
  if (systems.size() < 2) return Fail(kCmd, Error("--compare: give at least two HW:PRECISION"));
  const System& base = systems.back();
  const double levels[] = {5, 10, 20, 30, 40, 50, 60, 75, 100, 150, 200, 300, 500};
  nlohmann::json jratios = nlohmann::json::array();
  if (!f.json && !f.csv) {
    std::printf("%s, ISL %lld / OSL %lld: output tok/s per GPU at >= tok/s per user (ratio vs %s)\n",
                f.model.c_str(), static_cast<long long>(f.isl), static_cast<long long>(f.osl),
                base.label.c_str());
  }
  for (double level : levels) {
    const SystemPoint* b = BestAtInteractivity(base.result.frontier, level);
    std::string line = "";
    nlohmann::json jl = {{"tokens_per_s_per_user", level}};
    bool any = false;
    for (const System& sys : systems) {
      const SystemPoint* p = BestAtInteractivity(sys.result.frontier, level);
      char buf[256];
      if (p) {
        any = true;
        std::snprintf(buf, sizeof buf, " | %s %.0f [%s]", sys.label.c_str(),
                      p->output_tokens_per_s_per_gpu, p->decode_step.BoundLabel().c_str());
        jl[sys.label] = {{"output_tokens_per_s_per_gpu", p->output_tokens_per_s_per_gpu},
                         {"bound", p->decode_step.BoundLabel()},
                         {"layout", LayoutSummary(*p)}};
      } else {
        std::snprintf(buf, sizeof buf, " | %s -", sys.label.c_str());
      }
      line += buf;
    }
    if (!any) continue;
    if (b) {
      for (const System& sys : systems) {
        if (&sys == &base) continue;
        const SystemPoint* p = BestAtInteractivity(sys.result.frontier, level);
        if (!p) continue;
        const double ratio = p->output_tokens_per_s_per_gpu / b->output_tokens_per_s_per_gpu;
        jl["ratio_" + sys.label] = ratio;
        char buf[32];
        std::snprintf(buf, sizeof buf, " | ratio %.2fx", ratio);
        line += buf;
      }
    } else {
      line += " | ratio: " + base.label + " cannot reach it";
    }
    jratios.push_back(jl);
    if (!f.json && !f.csv) std::printf("%5.0f tok/s/user%s\n", level, line.c_str());
  }
  if (f.json) {
    nlohmann::json j;
    j["systems"] = nlohmann::json::array();
    for (const System& sys : systems) j["systems"].push_back(SearchJson(sys.setup, sys.result));
    j["ratios"] = jratios;
    std::printf("%s\n", j.dump(2).c_str());
  } else if (f.csv) {
    std::printf("%s", CsvHeader().c_str());
    for (const System& sys : systems)
      for (const SystemPoint& p : sys.result.frontier) std::printf("%s", CsvRow(sys.label, p).c_str());
  }
  if (!f.plot.empty()) {
    std::vector<PlotSeries> series;
    for (const System& sys : systems) series.push_back({sys.label, &sys.result.frontier});
    const std::string title = f.model + ", ISL " + std::to_string(f.isl) + " / OSL " +
                              std::to_string(f.osl) + " (moerack sim)";
    const Status st = WriteFile(f.plot, FrontierSvg(title, series));
    if (!st.ok()) return Fail(kCmd, st);
  }
  return 0;
}

int RunSim(const SimFlags& f) {
  if (!f.validate.empty() || !f.fit.empty()) return RunValidate(f);
  if (!f.compare.empty()) return RunCompare(f);
  if (f.hardware.empty())
    return Fail(kCmd, Error("--hardware is required (known: gb200-nvl72, gb300-nvl72, b200, h200, "
                            "h100, h800, cpu; or a .json file), or use --compare"));
  if (!f.layout.empty()) return RunLayout(f);
  if (!f.phase.empty()) return Fail(kCmd, Error("--phase needs --layout"));
  auto s = Setup(f, f.hardware, f.precision);
  if (!s.ok()) return Fail(kCmd, s.status());
  auto r = Search(*s);
  if (!r.ok()) return Fail(kCmd, r.status());
  if (f.json) {
    std::printf("%s\n", SearchJson(*s, *r).dump(2).c_str());
  } else if (f.csv) {
    std::printf("%s", CsvHeader().c_str());
    for (const SystemPoint& p : r->frontier)
      std::printf("%s", CsvRow(s->hw.name + " " + f.precision, p).c_str());
  } else {
    PrintFrontierText(*s, *r);
  }
  if (!f.plot.empty()) {
    const std::string label = s->hw.name + " " + PrecisionName(s->system.precision);
    const std::string title = s->model.name + ", ISL " + std::to_string(f.isl) + " / OSL " +
                              std::to_string(f.osl) + " (moerack sim)";
    const Status st = WriteFile(f.plot, FrontierSvg(title, {{label, &r->frontier}}));
    if (!st.ok()) return Fail(kCmd, st);
  }
  return 0;
}

}  // namespace

Command RegisterSim(CLI::App& app) {
  auto f = std::make_shared<SimFlags>();
  app.add_option("--model", f->model,
                 "deepseek-r1, kimi-k2, mistral-large-3, gpt-oss-120b, qwen3-235b-a22b, "
                 "mixtral-8x7b, or a config.json / model directory")
      ->capture_default_str();
  app.add_option("--hardware", f->hardware,
                 "gb200-nvl72, gb300-nvl72, b200, h200, h100, h800, cpu, or a catalog .json");
  app.add_option("--precision", f->precision, "Weight/GEMM precision of linear and expert layers")
      ->check(CLI::IsMember({"bf16", "fp8", "nvfp4"}))
      ->capture_default_str();
  app.add_option("--kv-dtype", f->kv_dtype, "KV cache: bf16 or fp8 (default fp8 with nvfp4)")
      ->check(CLI::IsMember({"bf16", "fp8"}));
  app.add_option("--isl", f->isl, "Input tokens per request")->check(CLI::Range(1, 1 << 22))
      ->capture_default_str();
  app.add_option("--osl", f->osl, "Output tokens per request")->check(CLI::Range(1, 1 << 22))
      ->capture_default_str();
  app.add_option("--len-dist", f->len_dist, "fixed, or uniform over [n/2, 3n/2]")
      ->check(CLI::IsMember({"fixed", "uniform"}));
  app.add_option("--disagg", f->disagg, "Disaggregated prefill/decode: auto, on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--gpus", f->gpus, "At most this many GPUs (default: one NVL72 rack / 16 HGX nodes)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_flag("--json", f->json, "Print JSON (one object with a frontier array)");
  app.add_flag("--csv", f->csv, "Print CSV");
  app.add_option("--plot", f->plot, "Write the frontier(s) as an SVG chart");
  app.add_option("--compare", f->compare,
                 "Systems to compare on one workload, HW:PRECISION,... (e.g. gb200-nvl72:nvfp4,h200:fp8)");
  app.add_option("--layout", f->layout,
                 "Fixed layout: 'prefill:gpus=8,tp=1,ep=8,tokens=16384;decode:gpus=48,ep=48,batch=256' "
                 "or 'agg:gpus=8,tp=8,ep=8,batch=1' (batch per GPU, tokens per GPU per step, "
                 "overlap=1 for two-batch overlap, instances=N)");
  app.add_option("--phase", f->phase, "With --layout: price one phase in isolation")
      ->check(CLI::IsMember({"prefill", "decode"}));
  app.add_option("--concurrency", f->concurrency, "With --layout: requests in flight in total")
      ->check(CLI::Range(1.0, 1e7));
  app.add_option("--arrival-rate", f->arrival_rate, "With --layout: Poisson arrivals in total, requests/s")
      ->check(CLI::Range(1e-6, 1e7));
  app.add_option("--mtp", f->mtp, "MTP speculative draft tokens per step (0: off)")
      ->check(CLI::Range(0, 8));
  app.add_option("--mtp-accept", f->mtp_accept, "Acceptance probability of each draft token")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--inswitch-reduce", f->inswitch_reduce, "Combine reduced in the NVLink switch");
  app.add_option("--seed", f->seed, "Random seed of arrivals and lengths");
  app.add_option("--price", f->price, "$ per GPU-hour for the cost figures (default: the catalog's)")
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--validate", f->validate, "Replay a published.csv and print the errors");
  app.add_option("--fit", f->fit, "Fit the efficiency factors on a published.csv's calibration rows");
  app.add_option("--efficiency", f->efficiency,
                 "Override fitted efficiency factors: gemm=F,hbm=F,attention=F,link=F,"
                 "layer_overhead_us=F,moe_skew=F (--fit starts from them)");
  return [f] { return RunSim(*f); };
}

}  // namespace moerack::cli
