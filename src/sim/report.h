// How simulation results leave the simulator: JSON (the `moerack sim --json`
// contract), CSV, and an SVG chart of one or more frontiers.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sim/search.h"

namespace moerack::sim {

// One frontier point: tokens_per_s_per_user, output_tokens_per_s_per_gpu,
// total_tokens_per_s_per_gpu, ttft_s (p50) and percentiles, itl_s (mean) and
// percentiles, gpus, cost and energy figures, bound, breakdown (seconds per
// step by part) and layout {mode, pools: [{role, instances, gpus_per_instance,
// gpus, tp, ep, dp, overlap, batch_per_gpu, tokens_per_step, utilization}]}.
nlohmann::json PointJson(const SystemPoint& p);

std::string CsvHeader();
std::string CsvRow(const std::string& system, const SystemPoint& p);
// "DEP48 x1 (b=64/GPU)" style summary of the pools.
std::string LayoutSummary(const SystemPoint& p);

struct PlotSeries {
  std::string label;  // e.g. "gb200-nvl72 nvfp4"
  const std::vector<SystemPoint>* frontier = nullptr;
};
// Output tokens/s per GPU against tokens/s per user, one stepped line per series.
std::string FrontierSvg(const std::string& title, const std::vector<PlotSeries>& series);

}  // namespace moerack::sim
