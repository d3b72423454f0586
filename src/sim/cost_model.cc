#include "sim/cost_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/check.h"

namespace moerack::sim {

const char* PartName(Part p) {
  switch (p) {
    case Part::kAttention: return "attention";
    case Part::kExperts: return "experts";
    case Part::kDenseMlp: return "dense_mlp";
    case Part::kAllToAll: return "all_to_all";
    case Part::kAllReduce: return "all_reduce";
    case Part::kLmHead: return "lm_head";
    case Part::kOverhead: return "overhead";
  }
  return "?";
}

const char* BoundName(Bound b) {
  switch (b) {
    case Bound::kCompute: return "compute";
    case Bound::kMemory: return "memory";
    case Bound::kNetwork: return "network";
    case Bound::kLatency: return "latency";
  }
  return "?";
}

Status CheckLayout(const HardwareSpec& hw, const Layout& l) {
  const std::string what = "layout of " + std::to_string(l.gpus) + " GPUs on " + hw.name;
  if (l.gpus < 1 || l.tp < 1 || l.ep < 1 || l.gpus % l.tp || l.gpus % l.ep)
    return Error(what + ": gpus must be a positive multiple of tp and ep");
  if (l.tp > hw.nvlink_domain)
    return Error(what + ": tp " + std::to_string(l.tp) + " exceeds the NVLink domain of " +
                 std::to_string(hw.nvlink_domain));
  if (l.gpus > 1 && hw.nvlink_domain > 1 && hw.nvlink_bytes_per_s <= 0)
    return Error(what + ": the catalog gives no NVLink bandwidth");
  if (l.gpus > hw.nvlink_domain && hw.scaleout_bytes_per_s <= 0)
    return Error(what + ": it spans NVLink domains of " + std::to_string(hw.nvlink_domain) +
                 " and the catalog gives no scale-out bandwidth");
  return Status::Ok();
}

StatusOr<Efficiency> ParseEfficiency(const std::string& spec, Efficiency e) {
  struct Field {
    const char* name;
    double Efficiency::*field;
    double scale, lo, hi;  // value * scale must lie in (lo, hi]
  };
  static const Field kFields[] = {
      {"gemm", &Efficiency::gemm, 1, 0, 1},           {"hbm", &Efficiency::hbm, 1, 0, 1},
      {"attention", &Efficiency::attention, 1, 0, 1}, {"link", &Efficiency::link, 1, 0, 1},
      {"layer_overhead_us", &Efficiency::layer_overhead_s, 1e-6, -1e-12, 1},
      {"moe_skew", &Efficiency::moe_skew, 1, -1e-12, 10}};
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(pos, end - pos);
    pos = end + 1;
    const size_t eq = item.find('=');
    const std::string name = item.substr(0, eq);
    const Field* f = nullptr;
    for (const Field& k : kFields)
      if (name == k.name) f = &k;
    if (!f || eq == std::string::npos)
      return Error("--efficiency: '" + item +
                   "' is not NAME=VALUE with NAME one of gemm, hbm, attention, link, "
                   "layer_overhead_us, moe_skew");
    char* rest = nullptr;
    const std::string text = item.substr(eq + 1);
    const double v = std::strtod(text.c_str(), &rest) * f->scale;
    if (text.empty() || *rest != '\0' || !(v > f->lo && v <= f->hi))
      return Error("--efficiency: " + name + "=" + text + " is out of range");
    e.*f->field = v;
  }
  return e;
}

Part StepCost::Largest() const {
  int best = 0;
  for (int i = 1; i < kNumParts; ++i)
    if (part_s[i] > part_s[best]) best = i;
  return static_cast<Part>(best);
}

std::string StepCost::BoundLabel() const {
  const Part p = Largest();
  return std::string(PartName(p)) + " (" + BoundName(part_bound[static_cast<int>(p)]) + ")";
}

void StepCost::Add(const StepCost& o) {
  total_s += o.total_s;
  for (int i = 0; i < kNumParts; ++i) {
    // Keep the bound of the part's larger contribution.
    if (o.part_s[i] > part_s[i]) part_bound[i] = o.part_bound[i];
    part_s[i] += o.part_s[i];
  }
}

namespace {

struct Roof {
  double s = 0;
  Bound bound = Bound::kCompute;
};

Roof Roofline(double flops, double bytes, double flops_per_s, double bytes_per_s) {
  const double tc = flops / flops_per_s, tm = bytes / bytes_per_s;
  return tc >= tm ? Roof{tc, Bound::kCompute} : Roof{tm, Bound::kMemory};
}

void AddPart(StepCost* c, Part p, Roof r) {
  const int i = static_cast<int>(p);
  if (r.s > c->part_s[i]) c->part_bound[i] = r.bound;
  c->part_s[i] += r.s;
}

// Expected distinct bins hit when `draws` items each land in one of `bins`
// uniformly: bins * (1 - (1 - 1/bins)^draws).
double DistinctBins(double bins, double draws) {
  if (bins <= 1) return std::min(1.0, draws);
  return bins * (1.0 - std::pow(1.0 - 1.0 / bins, draws));
}

}  // namespace

CostModel::CostModel(const ModelSpec& model, const HardwareSpec& hw, const Layout& layout,
                     const SystemOptions& options, const Efficiency& eff)
    : model_(model), hw_(hw), layout_(layout), options_(options), eff_(eff) {
  CHECK_GT(layout_.gpus, 0);
  CHECK_GT(layout_.tp, 0);
  CHECK_GT(layout_.ep, 0);
  CHECK_EQ(layout_.gpus % layout_.tp, 0);
  CHECK_EQ(layout_.gpus % layout_.ep, 0);
  if (hw_.measured_rates) eff_.gemm = eff_.hbm = eff_.attention = eff_.link = 1.0;
}

double CostModel::WeightBytesPerGpu() const {
  const ModelSpec& m = model_;
  const double b = BytesPerElement(options_.precision);
  const double b_attn = BytesPerElement(Widest(options_.precision, Precision::kFp8));
  const double tp = layout_.tp;
  double bytes = m.num_layers * static_cast<double>(m.attn_params) * b_attn / tp;
  bytes += m.num_dense_layers() * static_cast<double>(m.dense_ffn_params) * b / tp;
  bytes += m.num_moe_layers * static_cast<double>(m.shared_params) * b / tp;
  bytes += m.num_moe_layers * static_cast<double>(m.num_experts) * m.expert_params * b /
           layout_.gpus;
  bytes += (m.embed_params() + (m.tied_embeddings ? 0 : m.head_params())) * 2.0 / tp;
  return bytes;
}

double CostModel::KvBytesPerTokenPerGpu(double mean_context) const {
  const ModelSpec& m = model_;
  // GQA heads split over the tensor-parallel GPUs (up to one KV head each); the
  // MLA latent is shared by all heads, so every TP GPU keeps all of it.
  const double split = m.attention == AttentionKind::kGqa
                           ? std::min<double>(layout_.tp, m.num_kv_heads)
                           : 1.0;
  double layers = m.num_layers - m.num_window_layers;
  if (m.num_window_layers > 0)
    layers += m.num_window_layers *
              std::min(1.0, static_cast<double>(m.sliding_window) / std::max(1.0, mean_context));
  return layers * m.kv_elements_per_token_layer * BytesPerElement(options_.kv) / split;
}

double CostModel::KvTokenCapacity(double mean_context) const {
  const double free = hw_.hbm_bytes * kMemFraction - WeightBytesPerGpu();
  return free / KvBytesPerTokenPerGpu(mean_context);
}

double CostModel::KvTransferSeconds(double tokens, bool same_domain) const {
  const ModelSpec& m = model_;
  const double bytes =
      tokens * m.num_layers * m.kv_elements_per_token_layer * BytesPerElement(options_.kv);
  // The rank's GPUs each send their share in parallel.
  const double bw = hw_.LinkBytesPerS(same_domain) * eff_.link * layout_.tp;
  return bytes / bw + (same_domain ? hw_.nvlink_latency_s : hw_.scaleout_latency_s);
}

void CostModel::AllToAll(double tokens_per_gpu, double bytes_per_element, StepCost* c) const {
  const int gpus = layout_.gpus;
  // Attention tensor-parallel over the whole instance: every GPU already holds
  // every token, the experts' partial outputs meet in the all-reduce.
  if (gpus <= 1 || layout_.tp >= gpus || tokens_per_gpu <= 0) return;
  const double k = model_.top_k;
  const double token_bytes = model_.hidden * bytes_per_element;
  // GPUs a token visits: the moe_tp GPUs of each distinct expert-parallel rank
  // its top-k experts live on, less its own GPU (part of its own rank, visited
  // with probability 1/ep per distinct rank).
  const double ranks = DistinctBins(layout_.ep, k);
  const double remote_gpus = ranks * (layout_.moe_tp() - 1.0 / layout_.ep);
  const int domain = std::min(gpus, hw_.nvlink_domain);
  const double domains = std::ceil(static_cast<double>(gpus) / domain);
  // Inside the domain: NVLink, one copy per destination GPU. Across domains: one
  // copy per remote domain over the NIC (then forwarded over NVLink there).
  const double nvl_share = gpus > 1 ? (domain - 1.0) / (gpus - 1.0) : 0.0;
  const double nvl_bytes = tokens_per_gpu * token_bytes * remote_gpus * nvl_share;
  const double nic_bytes =
      domains > 1 ? tokens_per_gpu * token_bytes * DistinctBins(domains, k) * (domains - 1) /
                        domains
                  : 0.0;
  const double t_nvl = nvl_bytes / (hw_.nvlink_bytes_per_s * eff_.link);
  const double t_nic = nic_bytes > 0 ? nic_bytes / (hw_.scaleout_bytes_per_s * eff_.link) : 0;
  const double latency = domains > 1 ? hw_.scaleout_latency_s : hw_.nvlink_latency_s;
  const double t = std::max(t_nvl, t_nic);
  AddPart(c, Part::kAllToAll, {t + latency, t > latency ? Bound::kNetwork : Bound::kLatency});
}

StepCost CostModel::Layer(const StepWork& w, bool moe, double frac) const {
  const ModelSpec& m = model_;
  const double tp = layout_.tp;
  const double T = w.tokens * frac;
  // Tokens of the slowest data-parallel rank (attention, dense MLPs, all-reduce).
  const double pf = w.slowest_prefill_scale;
  const double T_local = (w.tokens + (pf - 1) * w.prefill_tokens) * frac;
  StepCost c;
  const double bw = hw_.hbm_bytes_per_s * eff_.hbm;
  const Precision p_attn = Widest(options_.precision, Precision::kFp8);
  const double b = BytesPerElement(options_.precision);

  // Attention projections. MLA: decode tokens use kv_b absorbed (once per
  // query); prefill chunks expand the latent of every context token.
  double attn_flops = 2.0 * T_local * static_cast<double>(m.attn_params - m.kv_expand_params) / tp;
  attn_flops += 2.0 * m.kv_expand_params *
                ((w.tokens - w.prefill_tokens) + pf * w.prefill_ctx) * frac / tp;
  Roof proj = Roofline(attn_flops, m.attn_params * BytesPerElement(p_attn) / tp,
                       hw_.GemmFlops(p_attn) * eff_.gemm, bw);
  // Attention over the context; windowed layers see at most the window.
  const double wf = static_cast<double>(m.num_window_layers) / m.num_layers;
  const double dec_ctx = ((1 - wf) * w.decode_ctx + wf * w.decode_ctx_win) * frac;
  const double pre_pairs = ((1 - wf) * w.prefill_pairs + wf * w.prefill_pairs_win) * frac * pf;
  // Query tokens of a decode step (MTP verifies 1 + mtp per sequence).
  const double q_per_seq = 1.0 + options_.mtp;
  const double core_flops = (dec_ctx * q_per_seq * m.AttentionFlopsPerPair(true) +
                             pre_pairs * m.AttentionFlopsPerPair(false)) / tp;
  const double split = m.attention == AttentionKind::kGqa
                           ? std::min<double>(layout_.tp, m.num_kv_heads)
                           : 1.0;
  const double kv_bytes = (dec_ctx + w.prefill_ctx * frac * pf) * m.kv_elements_per_token_layer *
                          BytesPerElement(options_.kv) / split;
  // FP8 KV halves the bytes, not the math: attention kernels compute in bf16.
  const double attn_rate = hw_.flops_bf16 * eff_.attention;
  Roof core = Roofline(core_flops, kv_bytes, attn_rate, bw);
  AddPart(&c, Part::kAttention, {proj.s + core.s, proj.s >= core.s ? proj.bound : core.bound});

  const double gemm_rate = hw_.GemmFlops(options_.precision) * eff_.gemm;
  if (moe) {
    // Routed experts on the busiest GPU of the instance.
    const double tokens_instance = T * layout_.dp();
    const double assignments = tokens_instance * m.top_k;
    const double ep = layout_.ep;
    const double mean_load = assignments / ep;  // token-expert rows per EP rank
    double imbalance = 1.0;
    if (ep > 1 && mean_load > 0)
      imbalance = std::min(ep, 1.0 + eff_.moe_skew + std::sqrt(2.0 * std::log(ep) / mean_load));
    const double flops = 2.0 * m.expert_params * assignments / layout_.gpus * imbalance;
    const double experts_per_rank = static_cast<double>(m.num_experts) / ep;
    const double hit_p = 1.0 - std::pow(1.0 - static_cast<double>(m.top_k) / m.num_experts,
                                        tokens_instance);
    const double active_mean = experts_per_rank * hit_p;
    double active_max = active_mean;
    if (ep > 1 && active_mean > 0)
      active_max = std::min(experts_per_rank,
                            active_mean * (1.0 + std::sqrt(2.0 * std::log(ep) / active_mean)));
    const double bytes = active_max * m.expert_params * b / layout_.moe_tp();
    AddPart(&c, Part::kExperts, Roofline(flops, bytes, gemm_rate, bw));
    if (m.shared_params > 0)
      AddPart(&c, Part::kDenseMlp,
              Roofline(2.0 * T_local * m.shared_params / tp, m.shared_params * b / tp, gemm_rate,
                       bw));
    // Dispatch in the GEMM precision (NVFP4 / FP8 activations), combine in bf16.
    const double tokens_per_gpu = T / tp;
    AllToAll(tokens_per_gpu, b, &c);
    const double combine_elem_bytes = options_.inswitch_reduce ? 2.0 / model_.top_k : 2.0;
    AllToAll(tokens_per_gpu, combine_elem_bytes, &c);
  } else {
    AddPart(&c, Part::kDenseMlp,
            Roofline(2.0 * T_local * m.dense_ffn_params / tp, m.dense_ffn_params * b / tp,
                     gemm_rate, bw));
  }
  if (layout_.tp > 1) {
    // Two ring all-reduces (after attention and after the MLP) of T x hidden bf16.
    const double bytes = 2.0 * (tp - 1) / tp * T_local * m.hidden * 2.0;
    const double t = 2.0 * bytes / (hw_.nvlink_bytes_per_s * eff_.link);
    const double lat = 2.0 * 2.0 * std::log2(tp) * hw_.nvlink_latency_s;
    AddPart(&c, Part::kAllReduce, {t + lat, t > lat ? Bound::kNetwork : Bound::kLatency});
  }
  AddPart(&c, Part::kOverhead, {eff_.layer_overhead_s, Bound::kLatency});

  double compute = 0, comm = 0;
  for (int i = 0; i < kNumParts; ++i) {
    const Part p = static_cast<Part>(i);
    (p == Part::kAllToAll || p == Part::kAllReduce ? comm : compute) += c.part_s[i];
  }
  c.total_s = compute + comm;
  return c;
}

StepCost CostModel::Step(const StepWork& w) const {
  const ModelSpec& m = model_;
  StepCost step;
  if (w.tokens <= 0) return step;
  const bool overlap = layout_.overlap && w.tokens >= 2;
  double fill_s = 0;  // two-batch overlap's pipeline fill, once per step
  for (int moe = 0; moe < 2; ++moe) {
    const int n = moe ? m.num_moe_layers : m.num_dense_layers();
    if (n == 0) continue;
    StepCost layer;
    if (overlap) {
      // Two micro-batches: one's all-to-all runs under the other's compute.
      const StepCost half = Layer(w, moe == 1, 0.5);
      double compute = 0, comm = 0;
      for (int i = 0; i < kNumParts; ++i) {
        const Part p = static_cast<Part>(i);
        (p == Part::kAllToAll || p == Part::kAllReduce ? comm : compute) += half.part_s[i];
      }
      layer.Add(half);
      layer.Add(half);
      // Steady state across layers: one half's communication runs under the
      // other half's compute, 2 max(compute, comm) per layer; the pipeline
      // fills and drains once per step (below).
      layer.total_s = 2 * std::max(compute, comm);
      fill_s = std::max(fill_s, std::min(compute, comm));
    } else {
      layer = Layer(w, moe == 1, 1.0);
    }
    for (int i = 0; i < kNumParts; ++i) layer.part_s[i] *= n;
    layer.total_s *= n;
    step.Add(layer);
  }
  step.total_s += fill_s;
  // lm_head over the sampled rows (bf16, split over TP).
  const double tp = layout_.tp;
  const Roof head = Roofline(2.0 * w.sampled * (1 + options_.mtp) * m.hidden * m.vocab / tp,
                             m.head_params() * 2.0 / tp, hw_.flops_bf16 * eff_.gemm,
                             hw_.hbm_bytes_per_s * eff_.hbm);
  AddPart(&step, Part::kLmHead, head);
  step.total_s += head.s;
  if (options_.mtp > 0 && w.decode_seqs > 0) {
    // Each draft token runs the MTP module (one more MoE layer) over the
    // decoding sequences, one after another.
    StepWork draft;
    draft.tokens = w.decode_seqs;
    draft.decode_seqs = w.decode_seqs;
    draft.decode_ctx = w.decode_ctx;
    draft.decode_ctx_win = w.decode_ctx_win;
    const StepCost layer = Layer(draft, m.num_moe_layers > 0, 1.0);
    for (int d = 0; d < options_.mtp; ++d) step.Add(layer);
  }
  return step;
}

}  // namespace moerack::sim
