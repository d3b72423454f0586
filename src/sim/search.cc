#include "sim/search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

namespace moerack::sim {

namespace {

constexpr int kBlockSize = 64;
constexpr int64_t kAggregatedTokensPerStep = 8192;   // chunked-prefill budget per rank
constexpr int64_t kPrefillTokensPerGpu = 16384;      // prefill instances' step size
constexpr double kPrefillTargetUtilization = 0.85;  // prefill pools are sized to this load

StatusOr<RankLimits> Limits(const CostModel& cm, const SimSetup& s, double mean_context,
                            int max_seqs, int64_t tokens_per_step) {
  const double kv = cm.KvTokenCapacity(mean_context);
  if (kv < static_cast<double>(s.isl + s.osl))
    return Error("the weights leave no room for the KV cache of one request on " +
                 std::to_string(cm.layout().gpus) + " GPU(s) of " + s.hw.name);
  RankLimits l;
  l.kv_tokens = static_cast<int64_t>(std::min(kv, 4e9));
  l.block_size = kBlockSize;
  l.max_num_seqs = std::max(1, max_seqs);
  l.max_batched_tokens = tokens_per_step;
  return l;
}

RankWorkload Workload(const SimSetup& s, Role role) {
  RankWorkload w;
  w.role = role;
  w.isl = s.isl;
  w.osl = s.osl;
  w.dist = s.dist;
  w.mtp_accept = s.mtp_accept;
  w.seed = s.seed;
  return w;
}

StepCost MeanStep(const RankSimResult& r) {
  StepCost c = r.cost;
  if (r.steps > 0) {
    c.total_s /= r.steps;
    for (double& p : c.part_s) p /= r.steps;
  }
  return c;
}

void FillLatency(const RankSimResult& decode, SystemPoint* p) {
  p->itl_mean_s = Mean(decode.itl_s);
  p->itl_p50_s = Percentile(decode.itl_s, 50);
  p->itl_p90_s = Percentile(decode.itl_s, 90);
  p->itl_p99_s = Percentile(decode.itl_s, 99);
  p->tokens_per_s_per_user = p->itl_mean_s > 0 ? 1.0 / p->itl_mean_s : 0;
  p->decode_step = MeanStep(decode);
}

void FillEconomics(const HardwareSpec& hw, SystemPoint* p) {
  if (p->output_tokens_per_s_per_gpu <= 0) return;
  p->cost_per_million_output_tokens = hw.price_per_gpu_hour / 3600.0 /
                                      p->output_tokens_per_s_per_gpu * 1e6;
  if (hw.power_w > 0) p->output_tokens_per_s_per_kw = p->output_tokens_per_s_per_gpu / hw.power_w * 1e3;
}

CostModel Model(const SimSetup& s, const Layout& l) {
  return CostModel(s.model, s.hw, l, s.system, s.eff);
}

StatusOr<RankSimResult> RunDecode(const SimSetup& s, const PoolReport& pool) {
  const CostModel cm = Model(s, pool.layout);
  const bool open = pool.rate_per_rank > 0;
  const int c = open ? 4096 : std::max(1, static_cast<int>(std::lround(pool.batch_per_rank)));
  const int64_t q = int64_t{c} * (1 + s.system.mtp);
  MR_ASSIGN_OR_RETURN(RankLimits lim,
                      Limits(cm, s, s.isl + s.osl / 2.0, c, std::max<int64_t>(2 * q, 1024)));
  RankWorkload wl = Workload(s, Role::kDecode);
  wl.concurrency = c;
  wl.arrival_rate_per_s = pool.rate_per_rank;
  return SimulateRank(cm, wl, lim);
}

StatusOr<RankSimResult> RunPrefill(const SimSetup& s, const PoolReport& pool,
                                   double rate_per_rank) {
  const CostModel cm = Model(s, pool.layout);
  MR_ASSIGN_OR_RETURN(RankLimits lim, Limits(cm, s, s.isl / 2.0, 4096, pool.tokens_per_step));
  RankWorkload wl = Workload(s, Role::kPrefill);
  wl.osl = 1;
  wl.arrival_rate_per_s = rate_per_rank;
  wl.concurrency = static_cast<int>((pool.tokens_per_step + s.isl - 1) / s.isl) + 1;
  RankSimOptions opt;
  opt.min_steps = 16;
  opt.max_steps = 400;
  return SimulateRank(cm, wl, lim, opt);
}

// The disaggregated point from a decode run and a chosen prefill pool.
StatusOr<SystemPoint> ComposeDisaggregated(const SimSetup& s, PoolReport prefill,
                                           const PoolReport& decode, const RankSimResult& rd) {
  SystemPoint p;
  const double out_per_s = rd.output_per_s() * decode.instances * decode.layout.dp();
  const double req_per_s = out_per_s / static_cast<double>(s.osl);
  const double prefill_ranks = prefill.instances * prefill.layout.dp();
  MR_ASSIGN_OR_RETURN(RankSimResult rp, RunPrefill(s, prefill, req_per_s / prefill_ranks));
  prefill.utilization = rp.duration_s > 0 ? rp.cost.total_s / rp.duration_s : 0;
  const bool same_domain = prefill.gpus() + decode.gpus() <= s.hw.nvlink_domain;
  const double transfer = Model(s, prefill.layout).KvTransferSeconds(s.isl, same_domain);
  FillLatency(rd, &p);
  const double first_step = p.itl_mean_s;
  p.ttft_p50_s = Percentile(rp.ttft_s, 50) + transfer + first_step;
  p.ttft_p90_s = Percentile(rp.ttft_s, 90) + transfer + first_step;
  p.ttft_p99_s = Percentile(rp.ttft_s, 99) + transfer + first_step;
  p.gpus = prefill.gpus() + decode.gpus();
  p.output_tokens_per_s_per_gpu = out_per_s / p.gpus;
  p.total_tokens_per_s_per_gpu = (out_per_s + req_per_s * s.isl) / p.gpus;
  PoolReport d = decode;
  if (d.rate_per_rank > 0) d.batch_per_rank = rd.mean_running;
  p.pools = {prefill, d};
  FillEconomics(s.hw, &p);
  return p;
}

std::vector<int> InstanceSizes(const SimSetup& s, int limit) {
  std::set<int> sizes;
  for (int g = 1; g <= limit; g *= 2) sizes.insert(g);
  if (s.hw.nvlink_domain <= limit) sizes.insert(s.hw.nvlink_domain);
  sizes.insert(limit);
  return {sizes.begin(), sizes.end()};
}

// Layouts of one instance of `g` GPUs: TP 1-8 (inside the NVLink domain), EP
// over the instance (up to one expert per GPU; the rest split each expert),
// with and without two-batch overlap.
std::vector<Layout> Layouts(const SimSetup& s, int g) {
  std::vector<Layout> out;
  int ep = std::max(1, std::min(g, std::max(1, s.model.num_experts)));
  while (g % ep != 0) --ep;
  for (int tp = 1; tp <= std::min({8, g, s.hw.nvlink_domain}); tp *= 2) {
    if (g % tp != 0) continue;
    for (int ov = 0; ov < (ep > 1 ? 2 : 1); ++ov) {
      const Layout l{g, tp, ep, ov == 1};
      if (CheckLayout(s.hw, l).ok()) out.push_back(l);
    }
  }
  return out;
}

// Concurrencies per DP rank worth simulating: powers of two while the steady
// state KV fits.
std::vector<int> Batches(const SimSetup& s, const CostModel& cm) {
  std::vector<int> out;
  const double per_seq = s.isl + s.osl / 2.0;
  const double cap = cm.KvTokenCapacity(per_seq);
  for (int c = 1; c <= 4096; c *= 2) {
    if (c * per_seq > cap) {
      if (cap >= per_seq + s.osl) out.push_back(static_cast<int>(cap / per_seq));
      break;
    }
    out.push_back(c);
  }
  return out;
}

std::vector<SystemPoint> Pareto(std::vector<SystemPoint> pts) {
  std::sort(pts.begin(), pts.end(), [](const SystemPoint& a, const SystemPoint& b) {
    if (a.tokens_per_s_per_user != b.tokens_per_s_per_user)
      return a.tokens_per_s_per_user > b.tokens_per_s_per_user;
    return a.output_tokens_per_s_per_gpu > b.output_tokens_per_s_per_gpu;
  });
  std::vector<SystemPoint> front;
  double best = 0;
  for (SystemPoint& p : pts) {
    if (p.output_tokens_per_s_per_gpu > best * 1.0001) {
      best = p.output_tokens_per_s_per_gpu;
      front.push_back(std::move(p));
    }
  }
  std::reverse(front.begin(), front.end());
  return front;
}

// xPyD pool sizes within `limit` GPUs: for each count of decode instances, the
// prefill instances that keep their load under the target; keeps the best
// output per GPU in the pools' `instances`. False when nothing fits.
bool SizePools(const SimSetup& s, int limit, double decode_out_per_gpu, double prefill_cap,
               PoolReport* prefill, PoolReport* decode) {
  const int gp = prefill->layout.gpus, gd = decode->layout.gpus;
  double best = 0;
  for (int nd = 1; nd * gd + gp <= limit; ++nd) {
    const double demand = nd * gd * decode_out_per_gpu * s.isl / static_cast<double>(s.osl);
    const int np = std::max(
        1, static_cast<int>(std::ceil(demand / (gp * prefill_cap * kPrefillTargetUtilization))));
    const int total = np * gp + nd * gd;
    if (total > limit) break;
    const double per_gpu = nd * gd * decode_out_per_gpu / total;
    if (per_gpu > best * 1.0001) {
      best = per_gpu;
      prefill->instances = np;
      decode->instances = nd;
    }
  }
  return best > 0;
}

}  // namespace

StatusOr<SystemPoint> SimulateAggregated(const SimSetup& s, const Layout& layout, int instances,
                                         double concurrency, double rate_per_rank) {
  MR_RETURN_IF_ERROR(CheckLayout(s.hw, layout));
  const CostModel cm = Model(s, layout);
  const int c = std::max(1, static_cast<int>(std::lround(concurrency)));
  const int64_t q = int64_t{c} * (1 + s.system.mtp);
  MR_ASSIGN_OR_RETURN(RankLimits lim,
                      Limits(cm, s, s.isl + s.osl / 2.0, rate_per_rank > 0 ? 4096 : c,
                             std::max<int64_t>(kAggregatedTokensPerStep, 2 * q)));
  RankWorkload wl = Workload(s, Role::kAggregated);
  wl.concurrency = c;
  wl.arrival_rate_per_s = rate_per_rank;
  MR_ASSIGN_OR_RETURN(RankSimResult r, SimulateRank(cm, wl, lim));
  SystemPoint p;
  FillLatency(r, &p);
  p.ttft_p50_s = Percentile(r.ttft_s, 50);
  p.ttft_p90_s = Percentile(r.ttft_s, 90);
  p.ttft_p99_s = Percentile(r.ttft_s, 99);
  p.gpus = instances * layout.gpus;
  p.output_tokens_per_s_per_gpu = r.output_per_s() / layout.tp;
  p.total_tokens_per_s_per_gpu = (r.output_per_s() + r.input_per_s()) / layout.tp;
  PoolReport pool;
  pool.role = Role::kAggregated;
  pool.instances = instances;
  pool.layout = layout;
  pool.batch_per_rank = rate_per_rank > 0 ? r.mean_running : c;
  pool.tokens_per_step = lim.max_batched_tokens;
  p.pools = {pool};
  FillEconomics(s.hw, &p);
  return p;
}

StatusOr<double> PrefillCapacityPerGpu(const SimSetup& s, const Layout& layout,
                                       int64_t tokens_per_step) {
  PoolReport pool;
  pool.role = Role::kPrefill;
  pool.layout = layout;
  pool.tokens_per_step = tokens_per_step;
  MR_ASSIGN_OR_RETURN(RankSimResult r, RunPrefill(s, pool, 0));
  return r.input_per_s() / layout.tp;
}

StatusOr<SystemPoint> SimulateDisaggregated(const SimSetup& s, const PoolReport& prefill,
                                            const PoolReport& decode) {
  MR_RETURN_IF_ERROR(CheckLayout(s.hw, prefill.layout));
  MR_RETURN_IF_ERROR(CheckLayout(s.hw, decode.layout));
  if (prefill.gpus() + decode.gpus() > s.hw.nvlink_domain && s.hw.scaleout_bytes_per_s <= 0)
    return Error("the pools span NVLink domains of " + s.hw.name +
                 " and the catalog gives no scale-out bandwidth for the KV transfer");
  MR_ASSIGN_OR_RETURN(RankSimResult rd, RunDecode(s, decode));
  return ComposeDisaggregated(s, prefill, decode, rd);
}

StatusOr<SystemPoint> SimulatePhase(const SimSetup& s, const PoolReport& pool) {
  MR_RETURN_IF_ERROR(CheckLayout(s.hw, pool.layout));
  SystemPoint p;
  p.gpus = pool.gpus();
  p.pools = {pool};
  if (pool.role == Role::kPrefill) {
    MR_ASSIGN_OR_RETURN(RankSimResult r, RunPrefill(s, pool, 0));
    p.total_tokens_per_s_per_gpu = r.input_per_s() / pool.layout.tp;
    p.ttft_p50_s = Percentile(r.ttft_s, 50);
    p.ttft_p90_s = Percentile(r.ttft_s, 90);
    p.ttft_p99_s = Percentile(r.ttft_s, 99);
    p.decode_step = MeanStep(r);
    return p;
  }
  if (pool.role == Role::kAggregated)
    return SimulateAggregated(s, pool.layout, pool.instances, pool.batch_per_rank);
  MR_ASSIGN_OR_RETURN(RankSimResult r, RunDecode(s, pool));
  FillLatency(r, &p);
  p.output_tokens_per_s_per_gpu = r.output_per_s() / pool.layout.tp;
  p.total_tokens_per_s_per_gpu = p.output_tokens_per_s_per_gpu;
  FillEconomics(s.hw, &p);
  return p;
}

StatusOr<SearchResult> Search(const SimSetup& s) {
  const auto t0 = std::chrono::steady_clock::now();
  int limit = s.gpus > 0 ? s.gpus : s.hw.max_gpus;
  // Without a scale-out network a deployment ends at the NVLink domain.
  if (s.hw.scaleout_bytes_per_s <= 0) limit = std::min(limit, s.hw.nvlink_domain);
  SearchResult res;
  std::vector<SystemPoint> points;
  const std::vector<int> sizes = InstanceSizes(s, limit);

  // Disaggregation: the prefill layout with the most input tokens/s per GPU.
  PoolReport prefill;
  double prefill_cap = 0;
  if (s.disagg != Disagg::kOff && limit >= 2) {
    for (int g : sizes) {
      if (g > std::min(32, limit / 2)) break;
      for (const Layout& l : Layouts(s, g)) {
        const int64_t tokens = kPrefillTokensPerGpu * l.tp;
        auto cap = PrefillCapacityPerGpu(s, l, tokens);
        ++res.configurations;
        if (cap.ok() && *cap > prefill_cap) {
          prefill_cap = *cap;
          prefill.role = Role::kPrefill;
          prefill.layout = l;
          prefill.tokens_per_step = tokens;
        }
      }
    }
  }

  for (int g : sizes) {
    for (const Layout& l : Layouts(s, g)) {
      const CostModel cm = Model(s, l);
      if (cm.KvTokenCapacity(s.isl + s.osl / 2.0) < s.isl + s.osl) continue;  // does not fit
      for (int c : Batches(s, cm)) {
        if (s.disagg != Disagg::kOn) {
          auto p = SimulateAggregated(s, l, limit / g, c);
          ++res.configurations;
          if (p.ok()) points.push_back(std::move(*p));
        }
        if (prefill_cap <= 0 || g + prefill.layout.gpus > limit) continue;
        PoolReport decode;
        decode.role = Role::kDecode;
        decode.layout = l;
        decode.batch_per_rank = c;
        auto rd = RunDecode(s, decode);
        ++res.configurations;
        if (!rd.ok()) continue;
        if (!SizePools(s, limit, rd->output_per_s() / l.tp, prefill_cap, &prefill, &decode))
          continue;
        auto p = ComposeDisaggregated(s, prefill, decode, *rd);
        if (p.ok()) points.push_back(std::move(*p));
      }
    }
  }
  if (points.empty())
    return Error("no layout of " + s.model.name + " fits on up to " + std::to_string(limit) +
                 " GPUs of " + s.hw.name);
  res.frontier = Pareto(std::move(points));
  res.elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

const SystemPoint* BestAtInteractivity(const std::vector<SystemPoint>& frontier,
                                       double tokens_per_s_per_user) {
  const SystemPoint* best = nullptr;
  for (const SystemPoint& p : frontier)
    if (p.tokens_per_s_per_user >= tokens_per_s_per_user &&
        (!best || p.output_tokens_per_s_per_gpu > best->output_tokens_per_s_per_gpu))
      best = &p;
  return best;
}

}  // namespace moerack::sim
