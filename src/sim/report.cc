#include "sim/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace moerack::sim {

namespace {

const char* RoleName(Role r) {
  switch (r) {
    case Role::kAggregated: return "aggregated";
    case Role::kPrefill: return "prefill";
    case Role::kDecode: return "decode";
  }
  return "?";
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

nlohmann::json PointJson(const SystemPoint& p) {
  nlohmann::json j;
  j["tokens_per_s_per_user"] = p.tokens_per_s_per_user;
  j["output_tokens_per_s_per_gpu"] = p.output_tokens_per_s_per_gpu;
  j["total_tokens_per_s_per_gpu"] = p.total_tokens_per_s_per_gpu;
  j["ttft_s"] = p.ttft_p50_s;
  j["ttft_p90_s"] = p.ttft_p90_s;
  j["ttft_p99_s"] = p.ttft_p99_s;
  j["itl_s"] = p.itl_mean_s;
  j["itl_p50_s"] = p.itl_p50_s;
  j["itl_p90_s"] = p.itl_p90_s;
  j["itl_p99_s"] = p.itl_p99_s;
  j["gpus"] = p.gpus;
  j["cost_per_million_output_tokens"] = p.cost_per_million_output_tokens;
  j["output_tokens_per_s_per_kw"] = p.output_tokens_per_s_per_kw;
  j["bound"] = p.decode_step.BoundLabel();
  nlohmann::json parts = nlohmann::json::object();
  for (int i = 0; i < kNumParts; ++i)
    parts[PartName(static_cast<Part>(i))] = p.decode_step.part_s[i];
  j["breakdown"] = {{"step_s", p.decode_step.total_s}, {"parts_s", parts}};
  nlohmann::json pools = nlohmann::json::array();
  for (const PoolReport& pool : p.pools) {
    const Layout& l = pool.layout;
    nlohmann::json q;
    q["role"] = RoleName(pool.role);
    q["instances"] = pool.instances;
    q["gpus_per_instance"] = l.gpus;
    q["gpus"] = pool.gpus();
    q["tp"] = l.tp;
    q["ep"] = l.ep;
    q["dp"] = l.dp();
    q["overlap"] = l.overlap;
    if (pool.role != Role::kPrefill) q["batch_per_gpu"] = pool.batch_per_rank / l.tp;
    q["tokens_per_step"] = pool.tokens_per_step;
    if (pool.role == Role::kPrefill) q["utilization"] = pool.utilization;
    pools.push_back(q);
  }
  j["layout"] = {{"mode", p.disaggregated() ? "disaggregated" : "aggregated"}, {"pools", pools}};
  return j;
}

std::string LayoutSummary(const SystemPoint& p) {
  std::string out;
  for (const PoolReport& pool : p.pools) {
    const Layout& l = pool.layout;
    if (!out.empty()) out += " + ";
    std::string par;
    if (l.tp > 1) par += "TP" + std::to_string(l.tp);
    if (l.dp() > 1) par += (par.empty() ? "" : "/") + std::string("DP") + std::to_string(l.dp());
    if (l.ep > 1) par += (par.empty() ? "" : "/") + std::string("EP") + std::to_string(l.ep);
    if (par.empty()) par = "1 GPU";
    out += std::string(pool.role == Role::kPrefill ? "P " : pool.role == Role::kDecode ? "D " : "") +
           std::to_string(pool.instances) + "x" + par + (l.overlap ? "+TBO" : "");
    if (pool.role != Role::kPrefill) out += Fmt(" b=%.4g/GPU", pool.batch_per_rank / l.tp);
  }
  return out;
}

std::string CsvHeader() {
  return "system,tokens_per_s_per_user,output_tokens_per_s_per_gpu,total_tokens_per_s_per_gpu,"
         "ttft_s,ttft_p99_s,itl_s,itl_p99_s,gpus,cost_per_million_output_tokens,"
         "output_tokens_per_s_per_kw,bound,layout\n";
}

std::string CsvRow(const std::string& system, const SystemPoint& p) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s,%.4g,%.6g,%.6g,%.4g,%.4g,%.4g,%.4g,%d,%.4g,%.6g,%s,%s\n",
                system.c_str(), p.tokens_per_s_per_user, p.output_tokens_per_s_per_gpu,
                p.total_tokens_per_s_per_gpu, p.ttft_p50_s, p.ttft_p99_s, p.itl_mean_s,
                p.itl_p99_s, p.gpus, p.cost_per_million_output_tokens,
                p.output_tokens_per_s_per_kw, p.decode_step.BoundLabel().c_str(),
                LayoutSummary(p).c_str());
  return buf;
}

std::string FrontierSvg(const std::string& title, const std::vector<PlotSeries>& series) {
  const double W = 760, H = 480, left = 80, right = 20, top = 40, bottom = 60;
  double xmax = 1, ymax = 1;
  for (const PlotSeries& s : series)
    for (const SystemPoint& p : *s.frontier) {
      xmax = std::max(xmax, p.tokens_per_s_per_user);
      ymax = std::max(ymax, p.output_tokens_per_s_per_gpu);
    }
  // Round the axes up to a round number.
  auto nice = [](double v) {
    const double e = std::pow(10, std::floor(std::log10(v)));
    for (double m : {1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0})
      if (v <= m * e) return m * e;
    return 10 * e;
  };
  xmax = nice(xmax * 1.05);
  ymax = nice(ymax * 1.05);
  auto X = [&](double x) { return left + x / xmax * (W - left - right); };
  auto Y = [&](double y) { return H - bottom - y / ymax * (H - top - bottom); };
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + Fmt("%.0f", W) +
                    "\" height=\"" + Fmt("%.0f", H) +
                    "\" font-family=\"sans-serif\" font-size=\"12\">\n"
                    "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += "<text x=\"" + Fmt("%.0f", W / 2) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" +
         title + "</text>\n";
  for (int i = 0; i <= 5; ++i) {
    const double xv = xmax * i / 5, yv = ymax * i / 5;
    svg += "<line x1=\"" + Fmt("%.1f", X(xv)) + "\" y1=\"" + Fmt("%.1f", Y(0)) + "\" x2=\"" +
           Fmt("%.1f", X(xv)) + "\" y2=\"" + Fmt("%.1f", Y(ymax)) + "\" stroke=\"#ddd\"/>\n";
    svg += "<text x=\"" + Fmt("%.1f", X(xv)) + "\" y=\"" + Fmt("%.1f", Y(0) + 16) +
           "\" text-anchor=\"middle\">" + Fmt("%g", xv) + "</text>\n";
    svg += "<line x1=\"" + Fmt("%.1f", X(0)) + "\" y1=\"" + Fmt("%.1f", Y(yv)) + "\" x2=\"" +
           Fmt("%.1f", X(xmax)) + "\" y2=\"" + Fmt("%.1f", Y(yv)) + "\" stroke=\"#ddd\"/>\n";
    svg += "<text x=\"" + Fmt("%.1f", X(0) - 6) + "\" y=\"" + Fmt("%.1f", Y(yv) + 4) +
           "\" text-anchor=\"end\">" + Fmt("%g", yv) + "</text>\n";
  }
  svg += "<text x=\"" + Fmt("%.0f", (left + W - right) / 2) + "\" y=\"" + Fmt("%.0f", H - 20) +
         "\" text-anchor=\"middle\">tokens/s per user (1 / mean inter-token latency)</text>\n";
  svg += "<text transform=\"translate(18," + Fmt("%.0f", (top + H - bottom) / 2) +
         ") rotate(-90)\" text-anchor=\"middle\">output tokens/s per GPU</text>\n";
  const char* colors[] = {"#76b900", "#1f77b4", "#d62728", "#9467bd", "#ff7f0e", "#8c564b"};
  for (size_t si = 0; si < series.size(); ++si) {
    const char* color = colors[si % 6];
    std::string path;
    for (const SystemPoint& p : *series[si].frontier)
      path += (path.empty() ? "M" : " L") + Fmt("%.1f", X(p.tokens_per_s_per_user)) + "," +
              Fmt("%.1f", Y(p.output_tokens_per_s_per_gpu));
    svg += "<path d=\"" + path + "\" fill=\"none\" stroke=\"" + color +
           "\" stroke-width=\"2\"/>\n";
    for (const SystemPoint& p : *series[si].frontier)
      svg += "<circle cx=\"" + Fmt("%.1f", X(p.tokens_per_s_per_user)) + "\" cy=\"" +
             Fmt("%.1f", Y(p.output_tokens_per_s_per_gpu)) + "\" r=\"2.5\" fill=\"" + color +
             "\"/>\n";
    const double ly = top + 16 + 18 * si;
    svg += "<rect x=\"" + Fmt("%.0f", W - right - 230) + "\" y=\"" + Fmt("%.0f", ly - 9) +
           "\" width=\"14\" height=\"4\" fill=\"" + color + "\"/>\n";
    svg += "<text x=\"" + Fmt("%.0f", W - right - 210) + "\" y=\"" + Fmt("%.0f", ly - 3) + "\">" +
           series[si].label + "</text>\n";
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace moerack::sim
