#include "engine/eplb_runtime.h"

#include <algorithm>
#include <chrono>

namespace moerack {

namespace {

double MeanImbalance(const std::vector<ExpertMap>& maps, const std::vector<double>& tokens,
                     const ModelConfig& c) {
  double sum = 0;
  int n = 0;
  for (int l = 0; l < c.num_layers; ++l) {
    if (!c.layer_is_moe[l]) continue;
    const std::vector<double> load = maps[l].RankLoad(
        std::span<const double>(tokens.data() + static_cast<size_t>(l) * c.num_experts,
                                static_cast<size_t>(c.num_experts)));
    double total = 0, mx = 0;
    for (double v : load) total += v, mx = std::max(mx, v);
    if (total > 0) sum += mx / (total / static_cast<double>(load.size())), ++n;
  }
  return n > 0 ? sum / n : 1.0;
}

}  // namespace

EplbController::EplbController(Model& model, Communicator& comm, const MoeStats& stats,
                               EplbOptions options)
    : model_(model), comm_(comm), stats_(stats), options_(options),
      window_start_(stats.expert_tokens) {}

EplbController::~EplbController() {
  {
    std::lock_guard<std::mutex> lock(mover_mu_);
    stop_mover_ = true;
  }
  mover_cv_.notify_all();
  if (mover_.joinable()) mover_.join();
}

void EplbController::StartMover(const std::vector<ExpertMap>& maps) {
  if (mover_.joinable()) mover_.join();
  mover_done_ = false;
  // Which expert weights this rank will need: the experts of its new slots.
  std::vector<std::pair<int, int>> wanted;  // (layer, expert)
  for (int l = 0; l < static_cast<int>(maps.size()); ++l)
    for (int s = maps[l].first[comm_.rank()]; s < maps[l].first[comm_.rank() + 1]; ++s)
      wanted.push_back({l, maps[l].slot_expert[s]});
  mover_ = std::thread([this, wanted] {
    if (options_.mover_delay_ms > 0) {
      std::unique_lock<std::mutex> lock(mover_mu_);
      if (mover_cv_.wait_for(lock, std::chrono::milliseconds(options_.mover_delay_ms),
                             [this] { return stop_mover_; }))
        return;  // shutting down
    }
    for (const auto& [layer, expert] : wanted) {
      {
        std::lock_guard<std::mutex> lock(mover_mu_);
        if (stop_mover_) return;  // shutting down: the plan is dropped
      }
      model_.PrefetchExpert(layer, expert);
    }
    mover_done_ = true;
  });
}

Status EplbController::Plan() {
  const ModelConfig& c = model_.config();
  std::vector<double> window(stats_.expert_tokens.size());
  for (size_t i = 0; i < window.size(); ++i) window[i] = stats_.expert_tokens[i] - window_start_[i];
  window_start_ = stats_.expert_tokens;
  MR_RETURN_IF_ERROR(comm_.AllReduceSum(window));  // every rank plans from the same counts
  std::vector<ExpertMap> maps = model_.expert_maps();
  for (int l = 0; l < c.num_layers; ++l) {
    if (!c.layer_is_moe[l]) continue;
    maps[l] = PlanPlacement(std::span<const double>(window.data() + static_cast<size_t>(l) * c.num_experts,
                                                    static_cast<size_t>(c.num_experts)),
                            c.num_experts + options_.redundant_slots, comm_.size());
  }
  events_.push_back({{"planned_at_step", step_},
                     {"imbalance_before", MeanImbalance(model_.expert_maps(), window, c)},
                     {"imbalance_after", MeanImbalance(maps, window, c)},
                     {"applied_at_step", nullptr}});
  pending_ = std::move(maps);
  has_pending_ = true;
  StartMover(pending_);
  return Status::Ok();
}

Status EplbController::AfterStep() {
  ++step_;
  if (has_pending_) {
    // Switch at this boundary only if every rank's mover is done; else keep serving.
    std::vector<double> not_ready = {mover_done_ ? 0.0 : 1.0};
    MR_RETURN_IF_ERROR(comm_.AllReduceSum(not_ready));
    if (not_ready[0] == 0) {
      model_.set_expert_maps(std::move(pending_));
      has_pending_ = false;
      events_.back()["applied_at_step"] = step_;
    }
  }
  if (!has_pending_ && options_.interval_steps > 0 && step_ % options_.interval_steps == 0)
    MR_RETURN_IF_ERROR(Plan());
  return Status::Ok();
}

}  // namespace moerack
