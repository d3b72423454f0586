#include "moe/moe_stats.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/mapped_file.h"

namespace moerack {

void MoeStats::AddRouting(int layer, const RoutingResult& routing) {
  if (layer < 0 || layer >= num_layers) return;
  for (int32_t e : routing.expert_ids)
    if (e >= 0 && e < num_experts) expert_tokens[static_cast<size_t>(layer) * num_experts + e] += 1;
}

namespace {

// The scalar fields of one rank, in a fixed order for the all-gather.
std::vector<double> Scalars(const MoeStats& s) {
  return {s.dispatch_bytes, s.combine_bytes, s.attention_s, s.dispatch_s,
          s.expert_s,       s.combine_s,     s.num_forward};
}

std::string Heatmap(const std::vector<double>& counts, int layers, int experts) {
  const int cell = 12, left = 60, top = 30;
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                    std::to_string(left + experts * cell + 20) + "\" height=\"" +
                    std::to_string(top + layers * cell + 30) +
                    "\" font-family=\"sans-serif\" font-size=\"10\">\n"
                    "<text x=\"4\" y=\"14\">expert load per layer (darker = more tokens; each row "
                    "scaled to its max)</text>\n";
  for (int l = 0; l < layers && experts > 0; ++l) {
    const double* row = counts.data() + static_cast<size_t>(l) * experts;
    const double mx = std::max(1.0, *std::max_element(row, row + experts));
    svg += "<text x=\"4\" y=\"" + std::to_string(top + l * cell + 9) + "\">layer " +
           std::to_string(l) + "</text>\n";
    for (int e = 0; e < experts; ++e) {
      const int shade = 255 - static_cast<int>(215.0 * row[e] / mx);
      char color[16];
      std::snprintf(color, sizeof(color), "#%02x%02xff", shade, shade);
      svg += "<rect x=\"" + std::to_string(left + e * cell) + "\" y=\"" +
             std::to_string(top + l * cell) + "\" width=\"" + std::to_string(cell - 1) +
             "\" height=\"" + std::to_string(cell - 1) + "\" fill=\"" + color + "\"><title>layer " +
             std::to_string(l) + " expert " + std::to_string(e) + ": " +
             std::to_string(static_cast<int64_t>(row[e])) + "</title></rect>\n";
    }
  }
  return svg + "</svg>\n";
}

}  // namespace

Status WriteMoeStats(const MoeStats& mine, const std::vector<ExpertMap>& maps, Communicator* comm,
                     const std::string& json_path, const std::string& svg_path,
                     const nlohmann::json& extra) {
  CHECK_EQ(static_cast<int>(maps.size()), mine.num_layers);
  const int ranks = comm != nullptr ? comm->size() : 1;
  std::vector<double> counts = mine.expert_tokens;
  std::vector<double> scalars = Scalars(mine), all(scalars.size() * static_cast<size_t>(ranks));
  if (comm != nullptr) {
    MR_RETURN_IF_ERROR(comm->AllReduceSum(counts));
    MR_RETURN_IF_ERROR(comm->AllGather(scalars.data(),
                                       static_cast<int64_t>(scalars.size() * sizeof(double)),
                                       all.data()));
    if (comm->rank() != 0) return Status::Ok();
  } else {
    all = scalars;
  }
  using json = nlohmann::json;
  json layers = json::array();
  for (int l = 0; l < mine.num_layers; ++l) {
    const double* row = counts.data() + static_cast<size_t>(l) * mine.num_experts;
    const ExpertMap& map = maps[static_cast<size_t>(l)];
    const std::vector<double> rank_load =
        map.RankLoad(std::span<const double>(row, static_cast<size_t>(mine.num_experts)));
    double total = 0, mx = 0;
    for (double v : rank_load) total += v, mx = std::max(mx, v);
    const double mean = total / map.ep_size;
    const double emax = mine.num_experts > 0 ? *std::max_element(row, row + mine.num_experts) : 0;
    layers.push_back({{"layer", l},
                      {"expert_tokens", std::vector<double>(row, row + mine.num_experts)},
                      {"rank_tokens", rank_load},
                      {"rank_slots", map.first},
                      {"slot_expert", map.slot_expert},
                      {"rank_imbalance", mean > 0 ? mx / mean : 0.0},
                      {"expert_imbalance",
                       total > 0 ? emax / (total / mine.num_experts) : 0.0}});
  }
  json per_rank = json::array();
  for (int r = 0; r < ranks; ++r) {
    const double* s = all.data() + static_cast<size_t>(r) * scalars.size();
    const double steps = std::max(1.0, s[6]);
    per_rank.push_back({{"rank", r},
                        {"forward_passes", s[6]},
                        {"dispatch_bytes_per_step", s[0] / steps},
                        {"combine_bytes_per_step", s[1] / steps},
                        {"time_s", {{"attention", s[2]}, {"dispatch", s[3]}, {"expert_gemm", s[4]},
                                    {"combine", s[5]}}}});
  }
  json out = {{"ep_size", ranks},
                    {"num_layers", mine.num_layers},
                    {"num_experts", mine.num_experts},
                    {"layers", layers},
                    {"ranks", per_rank}};
  for (const auto& [key, value] : extra.items()) out[key] = value;
  if (!json_path.empty()) MR_RETURN_IF_ERROR(WriteStringToFile(json_path, out.dump(2) + "\n"));
  if (!svg_path.empty())
    MR_RETURN_IF_ERROR(WriteStringToFile(svg_path, Heatmap(counts, mine.num_layers, mine.num_experts)));
  return Status::Ok();
}

}  // namespace moerack
