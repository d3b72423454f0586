#include "sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moerack::sim {

namespace {

// Sum over key counts p = start+1 .. start+n of min(p, window) (window 0: p).
double CausalPairs(double start, double n, double window) {
  auto prefix = [window](double x) {
    if (window <= 0 || x <= window) return x * (x + 1) / 2;
    return window * (window + 1) / 2 + (x - window) * window;
  };
  return prefix(start + n) - prefix(start);
}

}  // namespace

StepCost SimExecutor::Execute(const StepPlan& plan, const std::vector<bool>& is_decode,
                              double slowest_prefill_scale) const {
  const ModelSpec& m = model_.model();
  const double window = static_cast<double>(m.sliding_window);
  const double q_per_seq = 1.0 + model_.options().mtp;
  StepWork w;
  w.slowest_prefill_scale = slowest_prefill_scale;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    const double start = static_cast<double>(c.start), n = static_cast<double>(c.num_tokens);
    if (is_decode[i]) {
      const double ctx = start + n;
      w.decode_seqs += 1;
      w.tokens += q_per_seq;
      w.decode_ctx += ctx;
      w.decode_ctx_win += window > 0 ? std::min(ctx, window) : ctx;
      w.sampled += 1;
    } else {
      w.tokens += n;
      w.prefill_tokens += n;
      w.prefill_pairs += CausalPairs(start, n, 0);
      w.prefill_pairs_win += CausalPairs(start, n, window);
      w.prefill_ctx += start + n;
      w.sampled += c.samples ? 1 : 0;
    }
  }
  return model_.Step(w);
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(v.size() - 1, lo + 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

double Mean(const std::vector<double>& v) {
  return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}

namespace {

struct Request {
  double arrival_s = 0;
  int64_t isl = 0, osl = 0;
  int64_t generated = 0;
  double last_token_s = -1;  // < 0: no previous token seen in this run
};

class RankSim {
 public:
  RankSim(const CostModel& model, const RankWorkload& wl, const RankLimits& limits,
          const RankSimOptions& opt)
      : exec_(model),
        wl_(wl),
        opt_(opt),
        mtp_(model.options().mtp),
        dp_(model.layout().dp()),
        sched_(SchedulerConfig{std::max<int64_t>(0, limits.kv_tokens / limits.block_size),
                               limits.block_size, limits.max_num_seqs,
                               limits.max_batched_tokens, /*chunked_prefill=*/true}),
        rng_(wl.seed) {}

  StatusOr<RankSimResult> Run() {
    const bool open = wl_.arrival_rate_per_s > 0;
    std::exponential_distribution<double> gap(open ? wl_.arrival_rate_per_s : 1.0);
    double next_arrival = open ? gap(rng_) : 0;
    int64_t arrivals = 0;
    if (!open) {
      for (int i = 0; i < wl_.concurrency; ++i) {
        // Steady state at once: requests part-way through their output, staggered.
        const double progress = (i + 0.5) / wl_.concurrency;
        MR_RETURN_IF_ERROR(Arrive(0.0, wl_.role == Role::kPrefill ? -1.0 : progress));
      }
    }
    int64_t chunk_ops = 0;
    double running_sum = 0;
    std::vector<bool> is_decode;
    while (true) {
      while (open && arrivals < opt_.open_loop_requests && next_arrival <= t_) {
        MR_RETURN_IF_ERROR(Arrive(next_arrival, -1.0));
        ++arrivals;
        last_arrival_s_ = next_arrival;
        output_at_last_arrival_ = res_.output_tokens;
        input_at_last_arrival_ = res_.input_tokens;
        next_arrival += gap(rng_);
      }
      if (!sched_.HasWork()) {
        if (open && arrivals < opt_.open_loop_requests) {
          t_ = next_arrival;
          continue;
        }
        break;
      }
      const StepPlan plan = sched_.Schedule();
      if (plan.empty())
        return Error("the rank's KV cache cannot hold even one request (" +
                     std::to_string(sched_.blocks().num_blocks()) + " blocks)");
      is_decode.assign(plan.chunks.size(), false);
      int64_t prefill_tokens = 0;
      for (size_t i = 0; i < plan.chunks.size(); ++i) {
        const ScheduledChunk& c = plan.chunks[i];
        const Request& r = reqs_[c.seq];
        is_decode[i] = r.generated > 0 && c.samples && c.num_tokens <= 1 + mtp_;
        if (!is_decode[i]) prefill_tokens += c.num_tokens;
      }
      // Aggregated ranks take prompts at random steps; a step waits for the
      // rank with the most prefill. With prefill on a fraction q of a rank's
      // steps, some rank of dp has it on 1 - (1 - q)^dp of them: the prefill
      // this rank does costs that over q (time-averaged, the slowest rank's).
      double scale = 1;
      if (wl_.role == Role::kAggregated && dp_ > 1 && prefill_tokens > 0) {
        const double q = (prefill_steps_ + 1.0) / (res_.steps + 2.0);
        scale = (1.0 - std::pow(1.0 - q, dp_)) / q;
      }
      if (prefill_tokens > 0) ++prefill_steps_;
      const StepCost cost = exec_.Execute(plan, is_decode, scale);
      t_ += cost.total_s;
      res_.cost.Add(cost);
      ++res_.steps;
      chunk_ops += static_cast<int64_t>(plan.chunks.size());
      running_sum += static_cast<double>(plan.chunks.size());
      res_.preemptions += static_cast<int64_t>(plan.preempted.size());
      res_.input_tokens += prefill_tokens;
      sched_.OnStepDone(plan);
      for (const ScheduledChunk& c : plan.chunks)
        if (c.samples) MR_RETURN_IF_ERROR(Sampled(c.seq, open));
      if (open) {
        if (res_.steps >= opt_.max_steps * 20) break;  // overloaded: the queue only grows
      } else if (res_.steps >= opt_.max_steps ||
                 (res_.steps >= opt_.min_steps &&
                  (chunk_ops >= opt_.chunk_budget || res_.steps >= wl_.osl) &&
                  (wl_.role != Role::kAggregated ||
                   static_cast<int64_t>(res_.ttft_s.size()) >=
                       std::min<int64_t>(8, wl_.concurrency)))) {
        break;
      }
    }
    res_.duration_s = t_;
    if (open && last_arrival_s_ > first_finish_s_ && first_finish_s_ > 0) {
      // Throughput in steady state: from the first completion (the ramp-up is
      // over) to the last arrival (before the drain).
      res_.duration_s = last_arrival_s_ - first_finish_s_;
      res_.output_tokens = output_at_last_arrival_ - output_at_first_finish_;
      res_.input_tokens = input_at_last_arrival_ - input_at_first_finish_;
    }
    res_.mean_running = res_.steps > 0 ? running_sum / res_.steps : 0;
    return std::move(res_);
  }

 private:
  int64_t Draw(int64_t n) {
    if (wl_.dist == LengthDist::kFixed || n < 2) return n;
    return std::uniform_int_distribution<int64_t>(std::max<int64_t>(1, n / 2), n + n / 2)(rng_);
  }

  // A request arrives at `t`. `progress` in (0, 1): already that far through its
  // output (steady-state start); < 0: fresh.
  Status Arrive(double t, double progress) {
    const SeqId id = static_cast<SeqId>(reqs_.size());
    Request r;
    r.arrival_s = t;
    r.isl = Draw(wl_.isl);
    r.osl = std::max<int64_t>(1, Draw(wl_.osl));
    int64_t tokens = r.isl, computed = 0;
    if (progress >= 0 && r.osl > 1) {
      r.generated = 1 + static_cast<int64_t>(progress * (r.osl - 1));
      r.generated = std::min(r.generated, r.osl - 1);
      tokens = r.isl + r.generated;
      computed = tokens - 1;
    } else if (wl_.role == Role::kDecode) {
      // The prefill instance computed the prompt and sampled the first token.
      r.generated = 1;
      tokens = r.isl + 1;
      computed = r.isl;
      r.last_token_s = t;
    }
    reqs_.push_back(r);
    return sched_.Add(id, tokens, computed);
  }

  Status Sampled(SeqId id, bool open) {
    Request& r = reqs_[id];
    int64_t produced = 1;
    if (r.generated == 0) {
      res_.ttft_s.push_back(t_ - r.arrival_s);
    } else {
      // MTP: each draft token is accepted with probability mtp_accept, in order.
      std::uniform_real_distribution<double> u(0, 1);
      for (int d = 0; d < mtp_ && u(rng_) < wl_.mtp_accept; ++d) ++produced;
      produced = std::min(produced, r.osl - r.generated);
      if (r.last_token_s >= 0)
        for (int64_t i = 0; i < produced; ++i) res_.itl_s.push_back((t_ - r.last_token_s) / produced);
    }
    r.generated += produced;
    r.last_token_s = t_;
    res_.output_tokens += produced;
    if (wl_.role == Role::kPrefill || r.generated >= r.osl) {
      sched_.Remove(id);
      if (res_.finished++ == 0) {
        first_finish_s_ = t_;
        output_at_first_finish_ = res_.output_tokens;
        input_at_first_finish_ = res_.input_tokens;
      }
      if (!open) return Arrive(t_, -1.0);  // closed loop: the user sends the next request
      return Status::Ok();
    }
    for (int64_t i = 0; i < produced; ++i) sched_.AppendToken(id);
    return Status::Ok();
  }

  SimExecutor exec_;
  RankWorkload wl_;
  RankSimOptions opt_;
  int mtp_;
  int dp_;
  int64_t prefill_steps_ = 0;
  Scheduler sched_;
  std::mt19937_64 rng_;
  std::vector<Request> reqs_;
  RankSimResult res_;
  double t_ = 0;
  double last_arrival_s_ = 0, first_finish_s_ = 0;
  int64_t output_at_first_finish_ = 0, input_at_first_finish_ = 0;
  int64_t output_at_last_arrival_ = 0, input_at_last_arrival_ = 0;
};

}  // namespace

StatusOr<RankSimResult> SimulateRank(const CostModel& model, const RankWorkload& workload,
                                     const RankLimits& limits, const RankSimOptions& options) {
  if (workload.isl <= 0 || workload.osl <= 0) return Error("--isl and --osl must be positive");
  if (workload.arrival_rate_per_s <= 0 && workload.concurrency <= 0)
    return Error("a closed-loop run needs a concurrency of at least 1");
  if (limits.block_size <= 0 || limits.max_num_seqs <= 0 || limits.max_batched_tokens <= 0)
    return Error("rank limits: block size, sequences and tokens per step must be positive");
  // The scheduler holds whole blocks, and one more token than it has computed.
  const int64_t longest = (workload.dist == LengthDist::kUniform ? 3 : 2) *
                              (workload.isl + workload.osl) / 2 + 1;
  const int64_t capacity = limits.kv_tokens / limits.block_size * limits.block_size;
  if (capacity < longest + 1)
    return Error("the KV cache of one rank (" + std::to_string(capacity) +
                 " tokens) cannot hold one request of up to " + std::to_string(longest) +
                 " tokens");
  RankSim sim(model, workload, limits, options);
  return sim.Run();
}

}  // namespace moerack::sim
