// DeepSeek-V3 family: DeepseekV3ForCausalLM (DeepSeek-V3/R1), Kimi K2 (same
// architecture, model_type kimi_k2) and Mistral Large 3 (MistralLarge3ForCausalLM:
// softmax routing without bias, Llama-4 query scaling). Follows transformers'
// modeling_deepseek_v3.py (formats.md §6.3-6.5); tests/reference/reference.py
// is its independent twin.
//
// Attention is MLA in the weight-absorbed form for every token (prefill and
// decode alike, so chunking never changes a result): the cache holds only the
// latent c_kv [kv_lora_rank] and the shared rope key k_pe [qk_rope_head_dim];
// per head, q_nope is folded through W_UK into the latent space, attention runs
// as multi-query attention over [c_kv | k_pe] with c_kv as the value, and W_UV
// maps the result back to v_head_dim.
#include <cmath>
#include <string>

#include "core/scratch.h"
#include "core/timer.h"
#include "kernels/attention.h"
#include "kernels/expert_ffn.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/architectures.h"
#include "model/decoder.h"
#include "model/linear_loader.h"
#include "model/rope.h"
#include "moe/moe_layer.h"
#include "quant/fp8.h"

namespace moerack {
namespace {

enum class Variant { kDeepseekV3, kMistralLarge3 };

// transformers builds q_a_layernorm and kv_a_layernorm with the RMSNorm default
// eps (1e-6), not config.rms_norm_eps (Mistral Large 3, run by vLLM: rms_norm_eps).
constexpr float kHfLatentNormEps = 1e-6f;

struct DeepseekConfig {
  int q_lora_rank = 0;  // 0: q_lora_rank null, plain q_proj
  int kv_lora_rank = 0;
  int qk_nope = 0;
  int qk_rope = 0;
  int v_head_dim = 0;
  int n_shared_experts = 0;
  RouterParams router;  // bias pointer filled per layer
  bool router_bias = false;
  RopeTable rope;
  float softmax_scale = 1.0f;
  double llama4_beta = 0.0;  // Mistral Large 3 query scaling; 0: off
  int llama4_original = 1;
  float latent_norm_eps = kHfLatentNormEps;  // q_a_layernorm, kv_a_layernorm
  int qk_head_dim() const { return qk_nope + qk_rope; }
};

std::string LayerName(int layer, const std::string& rest) {
  return "model.layers." + std::to_string(layer) + "." + rest;
}

Variant VariantOf(const ModelConfig& c) {
  return c.raw.contains("architectures") && c.raw["architectures"].is_array() &&
                 !c.raw["architectures"].empty() &&
                 c.raw["architectures"][0] == "MistralLarge3ForCausalLM"
             ? Variant::kMistralLarge3
             : Variant::kDeepseekV3;
}

StatusOr<DeepseekConfig> ParseDeepseek(ModelConfig& c, const std::string& source) {
  ConfigReader r(c.raw, source);
  DeepseekConfig d;
  c.model_type = c.raw.value("model_type", "");
  MR_ASSIGN_OR_RETURN(c.vocab_size, r.Int("vocab_size"));
  MR_ASSIGN_OR_RETURN(c.hidden_size, r.Int("hidden_size"));
  MR_ASSIGN_OR_RETURN(c.num_layers, r.Int("num_hidden_layers"));
  MR_ASSIGN_OR_RETURN(c.num_heads, r.Int("num_attention_heads"));
  c.num_kv_heads = c.num_heads;
  MR_ASSIGN_OR_RETURN(d.kv_lora_rank, r.Int("kv_lora_rank"));
  MR_ASSIGN_OR_RETURN(d.qk_nope, r.Int("qk_nope_head_dim"));
  MR_ASSIGN_OR_RETURN(d.qk_rope, r.Int("qk_rope_head_dim"));
  MR_ASSIGN_OR_RETURN(d.v_head_dim, r.Int("v_head_dim"));
  d.q_lora_rank = r.IntOr("q_lora_rank", 0);
  MR_ASSIGN_OR_RETURN(c.num_experts, r.Int("n_routed_experts"));
  MR_ASSIGN_OR_RETURN(c.num_experts_per_tok, r.Int("num_experts_per_tok"));
  MR_ASSIGN_OR_RETURN(c.moe_intermediate_size, r.Int("moe_intermediate_size"));
  MR_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("intermediate_size"));
  d.n_shared_experts = r.IntOr("n_shared_experts", 0);
  const int first_dense = r.IntOr("first_k_dense_replace", 0);
  const int freq = r.IntOr("moe_layer_freq", 1);
  c.rms_norm_eps = static_cast<float>(r.DoubleOr("rms_norm_eps", 1e-6));
  c.rope_theta = r.DoubleOr("rope_theta", 10000.0);
  c.max_position_embeddings = r.IntOr("max_position_embeddings", 4096);
  c.tie_word_embeddings = r.BoolOr("tie_word_embeddings", false);
  c.head_dim = d.qk_nope + d.qk_rope;
  c.norm_topk_prob = r.BoolOr("norm_topk_prob", true);
  MR_RETURN_IF_ERROR(r.status());
  if (r.BoolOr("attention_bias", false))
    return Error(source + ": attention_bias=true is not supported");
  if (c.raw.contains("hidden_act") && c.raw["hidden_act"] != "silu") {
    return Error(source + ": hidden_act " + c.raw["hidden_act"].dump() +
                 " is not supported (only silu)");
  }
  if (c.vocab_size == 0 || c.hidden_size == 0 || c.num_layers == 0 || c.num_heads == 0 ||
      d.kv_lora_rank == 0 || d.qk_rope % 2 != 0 || d.v_head_dim == 0) {
    return Error(source +
                 ": vocab_size, hidden_size, num_hidden_layers, num_attention_heads, kv_lora_rank, "
                 "v_head_dim must be > 0 and qk_rope_head_dim even");
  }
  if (freq < 1) return Error(source + ": moe_layer_freq must be >= 1");
  // transformers: a layer is MoE when n_routed_experts is set, layer >= first_k_dense_replace
  // and layer % moe_layer_freq == 0; otherwise a dense MLP of intermediate_size.
  for (int l = 0; l < c.num_layers; ++l) {
    c.layer_is_moe.push_back(c.num_experts > 0 && l >= first_dense && l % freq == 0);
  }
  const Variant variant = VariantOf(c);
  const std::string scoring =
      c.raw.value("scoring_func", variant == Variant::kMistralLarge3 ? "softmax" : "sigmoid");
  if (scoring != "sigmoid" && scoring != "softmax") {
    return Error(source + ": scoring_func '" + scoring + "' is not supported (sigmoid or softmax)");
  }
  RouterParams& rp = d.router;
  rp.num_experts = c.num_experts;
  rp.top_k = c.num_experts_per_tok;
  rp.scoring = scoring == "sigmoid" ? RouterScoring::kSigmoid : RouterScoring::kSoftmax;
  rp.num_groups = std::max(1, r.IntOr("n_group", 1));
  rp.topk_groups = std::max(1, r.IntOr("topk_group", 1));
  rp.renormalize = c.norm_topk_prob;
  rp.scaling = static_cast<float>(r.DoubleOr("routed_scaling_factor", 1.0));
  d.router_bias = rp.scoring == RouterScoring::kSigmoid;
  MR_RETURN_IF_ERROR(r.status());
  const bool any_moe =
      std::find(c.layer_is_moe.begin(), c.layer_is_moe.end(), true) != c.layer_is_moe.end();
  if (any_moe) {
    if (rp.top_k < 1 || rp.top_k > c.num_experts)
      return Error(source + ": num_experts_per_tok must be in [1, n_routed_experts]");
    if (c.num_experts % rp.num_groups != 0 || rp.topk_groups > rp.num_groups) {
      return Error(source +
                   ": n_routed_experts must divide into n_group groups and topk_group <= n_group");
    }
    if (rp.top_k > rp.topk_groups * (c.num_experts / rp.num_groups)) {
      return Error(source + ": num_experts_per_tok exceeds the experts of topk_group groups");
    }
  }
  // transformers v5 writes `rope_parameters` (with rope_theta inside) instead of rope_scaling.
  nlohmann::json rope_scaling =
      c.raw.contains("rope_scaling") ? c.raw["rope_scaling"] : nlohmann::json();
  if (rope_scaling.is_null() && c.raw.contains("rope_parameters") &&
      c.raw["rope_parameters"].is_object()) {
    rope_scaling = c.raw["rope_parameters"];
    c.rope_theta = rope_scaling.value("rope_theta", c.rope_theta);
  }
  MR_ASSIGN_OR_RETURN(d.rope, MakeRopeTable(d.qk_rope, c.rope_theta, rope_scaling,
                                            c.max_position_embeddings, source));
  d.softmax_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.qk_head_dim())));
  // YaRN's magnitude correction of the softmax scale (transformers). Mistral
  // Large 3 uses YaRN frequencies without it (vLLM: apply_scale false).
  if (d.rope.mscale_all_dim != 0.0 && variant != Variant::kMistralLarge3) {
    const double m = YarnGetMscale(d.rope.yarn_factor, d.rope.mscale_all_dim);
    d.softmax_scale = static_cast<float>(d.softmax_scale * m * m);
  }
  if (variant == Variant::kMistralLarge3) d.latent_norm_eps = c.rms_norm_eps;
  if (c.raw.contains("llama_4_scaling") && c.raw["llama_4_scaling"].is_object()) {
    const auto& l4 = c.raw["llama_4_scaling"];
    d.llama4_beta = l4.value("beta", 0.0);
    d.llama4_original = l4.value("original_max_position_embeddings", 0);
    if (d.llama4_original <= 0)
      return Error(source + ": llama_4_scaling.original_max_position_embeddings must be > 0");
  }
  return d;
}

Status ParseConfig(ModelConfig& c, const std::string& source) {
  return ParseDeepseek(c, source).status();
}

std::vector<TensorSpec> TensorSpecs(const ModelConfig& cfg) {
  ModelConfig c = cfg;
  DeepseekConfig d = ParseDeepseek(c, "").value();
  const int64_t H = c.hidden_size, nh = c.num_heads;
  std::vector<TensorSpec> specs = {{"model.embed_tokens.weight", {c.vocab_size, H}},
                                   {"model.norm.weight", {H}, true}};
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, H}});
  for (int l = 0; l < c.num_layers; ++l) {
    specs.push_back({LayerName(l, "input_layernorm.weight"), {H}, true});
    specs.push_back({LayerName(l, "post_attention_layernorm.weight"), {H}, true});
    if (d.q_lora_rank > 0) {
      specs.push_back({LayerName(l, "self_attn.q_a_proj.weight"), {d.q_lora_rank, H}});
      specs.push_back({LayerName(l, "self_attn.q_a_layernorm.weight"), {d.q_lora_rank}, true});
      specs.push_back(
          {LayerName(l, "self_attn.q_b_proj.weight"), {nh * d.qk_head_dim(), d.q_lora_rank}});
    } else {
      specs.push_back({LayerName(l, "self_attn.q_proj.weight"), {nh * d.qk_head_dim(), H}});
    }
    specs.push_back(
        {LayerName(l, "self_attn.kv_a_proj_with_mqa.weight"), {d.kv_lora_rank + d.qk_rope, H}});
    specs.push_back({LayerName(l, "self_attn.kv_a_layernorm.weight"), {d.kv_lora_rank}, true});
    specs.push_back({LayerName(l, "self_attn.kv_b_proj.weight"),
                     {nh * (d.qk_nope + d.v_head_dim), d.kv_lora_rank}});
    specs.push_back({LayerName(l, "self_attn.o_proj.weight"), {H, nh * d.v_head_dim}});
    if (c.layer_is_moe[l]) {
      const int64_t I = c.moe_intermediate_size;
      specs.push_back({LayerName(l, "mlp.gate.weight"), {c.num_experts, H}});
      if (d.router_bias)
        specs.push_back({LayerName(l, "mlp.gate.e_score_correction_bias"), {c.num_experts}});
      for (int e = 0; e < c.num_experts; ++e) {
        AddSwigluSpecs(LayerName(l, "mlp.experts." + std::to_string(e) + "."), I, H, &specs);
      }
      if (d.n_shared_experts > 0) {
        AddSwigluSpecs(LayerName(l, "mlp.shared_experts."), I * d.n_shared_experts, H, &specs);
      }
    } else {
      AddSwigluSpecs(LayerName(l, "mlp."), c.intermediate_size, H, &specs);
    }
  }
  return specs;
}

KvSpec KvSpecOf(const ModelConfig& cfg) {
  ModelConfig c = cfg;
  const DeepseekConfig d = ParseDeepseek(c, "").value();
  return {int64_t{d.kv_lora_rank} + d.qk_rope,
          int64_t{c.num_heads} * (d.qk_head_dim() + d.v_head_dim)};
}

const std::vector<DType> kNormDTypes = {DType::kBF16, DType::kF32, DType::kF16};

class DeepseekV3Model final : public Model {
 public:
  DeepseekV3Model(ModelConfig config, std::shared_ptr<const WeightStore> weights)
      : config_(std::move(config)), weights_(std::move(weights)) {}

  Status Load(const ModelLoadOptions& options);
  const ModelConfig& config() const override { return config_; }
  int64_t kv_floats_per_token() const override { return d_.kv_lora_rank + d_.qk_rope; }
  WeightFootprint footprint() const override { return footprint_; }
  void PrefetchExpert(int layer, int expert) const override {
    if (layer < 0 || layer >= config_.num_layers || !config_.layer_is_moe[layer]) return;
    const auto& experts = layers_[static_cast<size_t>(layer)].experts;
    if (expert >= 0 && expert < static_cast<int>(experts.size())) experts[expert].TouchPages();
  }
  void ForwardImpl(const ForwardBatch& batch, const KvCacheView& cache, ThreadPool& pool,
                   std::vector<float>* logits) override;

 private:
  struct Layer {
    TensorView input_norm, post_norm;
    TensorView q_a_norm, kv_a_norm;
    LinearWeight q_a, q_b, q;  // q_a/q_a_norm/q_b with q_lora_rank, else q
    LinearWeight kv_a, kv_b, o;
    float kv_scale = 1.0f;  // FP8 latent-cache scale (k_scale of the attention), 1 when absent
    std::vector<float> w_uk_t;  // [heads][kv_lora_rank][qk_nope]: W_UK transposed per head
    TensorView router;
    std::vector<float> router_bias;      // e_score_correction_bias, f32
    std::vector<ExpertWeights> experts;  // routed experts; the dense MLP alone in dense layers
    ExpertWeights shared;                // the shared expert, if has_shared
    bool has_shared = false;
  };

  // A linear weight as the checkpoint stores it (model/linear_loader.h).
  Status GetLinear(const std::string& name, const std::vector<int64_t>& shape, LinearWeight* out);
  Status GetNorm(const std::string& name, const std::vector<int64_t>& shape, TensorView* out);
  void Attention(const Layer& L, int layer, std::span<const AttentionSeq> seqs,
                 std::span<const int64_t> positions, const KvCacheView& cache, ThreadPool& pool);
  void FeedForward(const Layer& L, int layer, int64_t T, ThreadPool& pool);

  ModelConfig config_;
  DeepseekConfig d_;
  std::shared_ptr<const WeightStore> weights_;
  std::vector<std::unique_ptr<std::vector<float>>> owned_;  // dequantized kv_b, see Load
  TensorView embed_, final_norm_;
  LinearWeight lm_head_;
  std::vector<Layer> layers_;
  WeightFootprint footprint_;
  ScratchVector<float> h_, x_, tmp_;
  ScratchVector<float> rope_angles_;  // RopeAngles of each row's position
};

Status DeepseekV3Model::GetNorm(const std::string& name, const std::vector<int64_t>& shape,
                                TensorView* out) {
  MR_ASSIGN_OR_RETURN(*out, weights_->Get(name, shape, kNormDTypes));
  footprint_.total_bytes += out->nbytes();
  return Status::Ok();
}

Status DeepseekV3Model::GetLinear(const std::string& name, const std::vector<int64_t>& shape,
                                  LinearWeight* out) {
  MR_ASSIGN_OR_RETURN(*out, LoadLinear(*weights_, config_.quant, name, shape[0], shape[1]));
  footprint_.total_bytes += out->nbytes();
  return Status::Ok();
}

Status DeepseekV3Model::Load(const ModelLoadOptions& options) {
  ModelConfig& c = config_;
  set_expert_placement(c.num_experts, c.num_layers, options);
  MR_ASSIGN_OR_RETURN(d_, ParseDeepseek(c, "config.json"));
  const int64_t H = c.hidden_size, nh = c.num_heads;
  MR_RETURN_IF_ERROR(GetNorm("model.embed_tokens.weight", {c.vocab_size, H}, &embed_));
  MR_RETURN_IF_ERROR(GetNorm("model.norm.weight", {H}, &final_norm_));
  if (c.tie_word_embeddings) {
    if (embed_.dtype == DType::kF16) return Error("tied embeddings in F16 are not supported");
    lm_head_ = embed_;
  } else {
    MR_RETURN_IF_ERROR(GetLinear("lm_head.weight", {c.vocab_size, H}, &lm_head_));
  }
  int64_t active = lm_head_.nbytes() + final_norm_.nbytes() + embed_.nbytes() / c.vocab_size;
  layers_.resize(static_cast<size_t>(c.num_layers));
  for (int l = 0; l < c.num_layers; ++l) {
    Layer& L = layers_[l];
    const int64_t before = footprint_.total_bytes;
    MR_RETURN_IF_ERROR(GetNorm(LayerName(l, "input_layernorm.weight"), {H}, &L.input_norm));
    MR_RETURN_IF_ERROR(GetNorm(LayerName(l, "post_attention_layernorm.weight"), {H}, &L.post_norm));
    if (d_.q_lora_rank > 0) {
      MR_RETURN_IF_ERROR(
          GetLinear(LayerName(l, "self_attn.q_a_proj.weight"), {d_.q_lora_rank, H}, &L.q_a));
      MR_RETURN_IF_ERROR(
          GetNorm(LayerName(l, "self_attn.q_a_layernorm.weight"), {d_.q_lora_rank}, &L.q_a_norm));
      MR_RETURN_IF_ERROR(GetLinear(LayerName(l, "self_attn.q_b_proj.weight"),
                                   {nh * d_.qk_head_dim(), d_.q_lora_rank}, &L.q_b));
    } else {
      MR_RETURN_IF_ERROR(
          GetLinear(LayerName(l, "self_attn.q_proj.weight"), {nh * d_.qk_head_dim(), H}, &L.q));
    }
    MR_RETURN_IF_ERROR(GetLinear(LayerName(l, "self_attn.kv_a_proj_with_mqa.weight"),
                                 {d_.kv_lora_rank + d_.qk_rope, H}, &L.kv_a));
    MR_RETURN_IF_ERROR(
        GetNorm(LayerName(l, "self_attn.kv_a_layernorm.weight"), {d_.kv_lora_rank}, &L.kv_a_norm));
    MR_RETURN_IF_ERROR(GetLinear(LayerName(l, "self_attn.kv_b_proj.weight"),
                                 {nh * (d_.qk_nope + d_.v_head_dim), d_.kv_lora_rank}, &L.kv_b));
    MR_RETURN_IF_ERROR(
        GetLinear(LayerName(l, "self_attn.o_proj.weight"), {H, nh * d_.v_head_dim}, &L.o));
    if (weights_->Has(LayerName(l, "self_attn.kv_a_proj_with_mqa.k_scale"))) {
      MR_ASSIGN_OR_RETURN(L.kv_scale, ReadScalarF32(*weights_, LayerName(l, "self_attn.kv_a_proj_with_mqa.k_scale")));
    } else {
      MR_ASSIGN_OR_RETURN(L.kv_scale, ReadKvScale(*weights_, LayerName(l, "self_attn."), "k"));
    }
    // W_UK of head h is rows [h * (nope + v), h * (nope + v) + nope) of kv_b.
    L.w_uk_t.resize(static_cast<size_t>(nh * d_.kv_lora_rank * d_.qk_nope));
    std::vector<float> row(static_cast<size_t>(d_.kv_lora_rank));
    for (int64_t h = 0; h < nh; ++h) {
      for (int i = 0; i < d_.qk_nope; ++i) {
        L.kv_b.DequantizeRange(h * (d_.qk_nope + d_.v_head_dim) + i, 0, d_.kv_lora_rank,
                               row.data());
        for (int cidx = 0; cidx < d_.kv_lora_rank; ++cidx) {
          L.w_uk_t[(h * d_.kv_lora_rank + cidx) * d_.qk_nope + i] = row[cidx];
        }
      }
    }
    // W_UV is read as per-head row slices of kv_b (Attention); block-FP8 slices
    // must start on a scale block, else kv_b (small) is kept dequantized.
    if (L.kv_b.format == WeightFormat::kFp8 &&
        (d_.qk_nope % L.kv_b.block_n != 0 || (d_.qk_nope + d_.v_head_dim) % L.kv_b.block_n != 0)) {
      owned_.push_back(std::make_unique<std::vector<float>>(L.kv_b.Dequantize()));
      L.kv_b = LinearWeight(
          TensorView(owned_.back()->data(), DType::kF32, {L.kv_b.rows, L.kv_b.cols}));
    }
    if (c.layer_is_moe[l]) {
      const int64_t I = c.moe_intermediate_size;
      MR_ASSIGN_OR_RETURN(L.router, weights_->Get(LayerName(l, "mlp.gate.weight"),
                                                  {c.num_experts, H}, {DType::kBF16, DType::kF32}));
      footprint_.total_bytes += L.router.nbytes();
      if (d_.router_bias) {
        TensorView bias;
        MR_RETURN_IF_ERROR(
            GetNorm(LayerName(l, "mlp.gate.e_score_correction_bias"), {c.num_experts}, &bias));
        L.router_bias.resize(static_cast<size_t>(c.num_experts));
        LoadF32(bias, 0, c.num_experts, L.router_bias.data());
      }
      int64_t expert_bytes = 0;
      for (int e = 0; e < c.num_experts; ++e) {  // views; an EP rank touches only its slots'
        const std::string p = "mlp.experts." + std::to_string(e) + ".";
        ExpertWeights w;
        const int64_t b0 = footprint_.total_bytes;
        MR_RETURN_IF_ERROR(GetLinear(LayerName(l, p + "gate_proj.weight"), {I, H}, &w.gate));
        MR_RETURN_IF_ERROR(GetLinear(LayerName(l, p + "up_proj.weight"), {I, H}, &w.up));
        MR_RETURN_IF_ERROR(GetLinear(LayerName(l, p + "down_proj.weight"), {H, I}, &w.down));
        expert_bytes = footprint_.total_bytes - b0;
        L.experts.push_back(w);
      }
      active += footprint_.total_bytes - before - c.num_experts * expert_bytes +
                c.num_experts_per_tok * expert_bytes;
      if (d_.n_shared_experts > 0) {
        const int64_t S = I * d_.n_shared_experts;
        ExpertWeights w;
        const int64_t b0 = footprint_.total_bytes;
        MR_RETURN_IF_ERROR(
            GetLinear(LayerName(l, "mlp.shared_experts.gate_proj.weight"), {S, H}, &w.gate));
        MR_RETURN_IF_ERROR(
            GetLinear(LayerName(l, "mlp.shared_experts.up_proj.weight"), {S, H}, &w.up));
        MR_RETURN_IF_ERROR(
            GetLinear(LayerName(l, "mlp.shared_experts.down_proj.weight"), {H, S}, &w.down));
        L.shared = w;
        L.has_shared = true;
        active += footprint_.total_bytes - b0;
      }
    } else {
      const int64_t I = c.intermediate_size;
      ExpertWeights w;
      MR_RETURN_IF_ERROR(GetLinear(LayerName(l, "mlp.gate_proj.weight"), {I, H}, &w.gate));
      MR_RETURN_IF_ERROR(GetLinear(LayerName(l, "mlp.up_proj.weight"), {I, H}, &w.up));
      MR_RETURN_IF_ERROR(GetLinear(LayerName(l, "mlp.down_proj.weight"), {H, I}, &w.down));
      L.experts.push_back(w);
      active += footprint_.total_bytes - before;
    }
  }
  footprint_.active_bytes_per_token = active;
  return Status::Ok();
}

void DeepseekV3Model::Attention(const Layer& L, int layer, std::span<const AttentionSeq> seqs,
                                std::span<const int64_t> positions, const KvCacheView& cache,
                                ThreadPool& pool) {
  const ModelConfig& c = config_;
  const int64_t T = static_cast<int64_t>(positions.size()), H = c.hidden_size, nh = c.num_heads;
  const int64_t dqk = d_.qk_head_dim(), R = d_.kv_lora_rank, dr = d_.qk_rope, dv = d_.v_head_dim;
  const int64_t kva_dim = R + dr, lat = R + dr;  // latent query/key width per head
  ScratchVector<float> q(static_cast<size_t>(T * nh * dqk)), kva(static_cast<size_t>(T * kva_dim));
  for (const AttentionSeq& s : seqs)
    cache.PrefetchForWrite(layer, s.block_table, s.start_pos, s.num_tokens);
  if (d_.q_lora_rank > 0) {
    ScratchVector<float> cq(static_cast<size_t>(T * d_.q_lora_rank));
    const GemmProblem first[2] = {{x_.data(), H, T, L.q_a, cq.data(), d_.q_lora_rank},
                                  {x_.data(), H, T, L.kv_a, kva.data(), kva_dim}};
    GroupedMatMul(first, pool);
    RmsNorm(cq.data(), d_.q_lora_rank, L.q_a_norm, d_.latent_norm_eps, T, d_.q_lora_rank, cq.data(),
            d_.q_lora_rank);
    MatMul({cq.data(), d_.q_lora_rank, T, L.q_b, q.data(), nh * dqk}, pool);
  } else {
    const GemmProblem first[2] = {{x_.data(), H, T, L.q, q.data(), nh * dqk},
                                  {x_.data(), H, T, L.kv_a, kva.data(), kva_dim}};
    GroupedMatMul(first, pool);
  }
  // Latent queries: [q_nope W_UK (R) | q_pe (dr)] per head.
  ScratchVector<float> q_lat(static_cast<size_t>(T * nh * lat));
  pool.ParallelRange(T, 4, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      float* qt = q.data() + t * nh * dqk;
      float* kv = kva.data() + t * kva_dim;
      RmsNorm(kv, R, L.kv_a_norm, d_.latent_norm_eps, 1, R, kv, R);
      const float* cos_sin = rope_angles_.data() + t * dr;
      ApplyRope(kv + R, 1, dr, static_cast<int>(dr), cos_sin, RopeStyle::kInterleaved);
      ApplyRope(qt + d_.qk_nope, static_cast<int>(nh), dqk, static_cast<int>(dr), cos_sin,
                RopeStyle::kInterleaved);
      if (d_.llama4_beta != 0.0) {
        const float s = static_cast<float>(
            1.0 + d_.llama4_beta * std::log(1.0 + std::floor(static_cast<double>(positions[t]) /
                                                             d_.llama4_original)));
        for (int64_t i = 0; i < nh * dqk; ++i) qt[i] *= s;
      }
      for (int64_t h = 0; h < nh; ++h) {
        std::copy_n(qt + h * dqk + d_.qk_nope, dr, q_lat.data() + (t * nh + h) * lat + R);
      }
    }
  });
  std::vector<GemmProblem> absorb;
  for (int64_t h = 0; h < nh; ++h) {
    absorb.push_back({q.data() + h * dqk, nh * dqk, T,
                      TensorView(const_cast<float*>(L.w_uk_t.data()) + h * R * d_.qk_nope,
                                 DType::kF32, {R, d_.qk_nope}),
                      q_lat.data() + h * lat, nh * lat});
  }
  GroupedMatMul(absorb, pool);
  for (const AttentionSeq& s : seqs) {
    for (int64_t i = 0; i < s.num_tokens; ++i) {
      cache.Store(layer, s.block_table, s.start_pos + i, 0,
                  kva.data() + (s.first_row + i) * kva_dim, kva_dim, L.kv_scale);
    }
  }
  ScratchVector<float> o_lat(static_cast<size_t>(T * nh * R));
  AttentionParams ap;
  ap.q = q_lat.data();
  ap.q_stride = nh * lat;
  ap.out = o_lat.data();
  ap.out_stride = nh * R;
  ap.num_heads = static_cast<int>(nh);
  ap.num_kv_heads = 1;
  ap.head_dim = static_cast<int>(lat);
  ap.v_head_dim = static_cast<int>(R);
  ap.k_offset = 0;
  ap.v_offset = 0;
  ap.scale = d_.softmax_scale;
  ap.k_scale = ap.v_scale = L.kv_scale;
  ap.layer = layer;
  PagedAttention(ap, seqs, cache, pool);
  // W_UV of head h: rows [h * (nope + v) + nope, (h + 1) * (nope + v)) of kv_b, a [dv, R] view.
  ScratchVector<float> o(static_cast<size_t>(T * nh * dv));
  std::vector<GemmProblem> expand;
  for (int64_t h = 0; h < nh; ++h) {
    const int64_t r0 = h * (d_.qk_nope + dv) + d_.qk_nope;
    const LinearWeight w_uv = L.kv_b.RowSlice(r0, r0 + dv);
    expand.push_back({o_lat.data() + h * R, nh * R, T, w_uv, o.data() + h * dv, nh * dv});
  }
  GroupedMatMul(expand, pool);
  MatMul({o.data(), nh * dv, T, L.o, tmp_.data(), H}, pool);
  for (int64_t i = 0; i < T * H; ++i) h_[i] += tmp_[i];
}

void DeepseekV3Model::FeedForward(const Layer& L, int layer, int64_t T, ThreadPool& pool) {
  const int64_t H = config_.hidden_size;
  if (L.router.empty()) {
    const int64_t offsets[2] = {0, T};
    GroupedExpertFfn({L.experts, offsets, x_.data(), tmp_.data(), H}, pool);
  } else {
    RouterParams rp = d_.router;
    rp.bias = L.router_bias.empty() ? nullptr : L.router_bias.data();
    RunMoe({L.router, rp, L.experts, L.has_shared ? &L.shared : nullptr}, layer, x_.data(), T, H,
                tmp_.data(), pool);
  }
  for (int64_t i = 0; i < T * H; ++i) h_[i] += tmp_[i];
}

void DeepseekV3Model::ForwardImpl(const ForwardBatch& batch, const KvCacheView& cache,
                                  ThreadPool& pool, std::vector<float>* logits) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size;
  const BatchLayout layout = LayoutBatch(batch);
  const int64_t T = layout.num_rows();
  h_.resize(static_cast<size_t>(T * H));
  x_.resize(h_.size());
  tmp_.resize(h_.size());
  const int dr = static_cast<int>(d_.qk_rope);
  rope_angles_.resize(static_cast<size_t>(T * dr));
  for (int64_t t = 0; t < T; ++t)
    RopeAngles(d_.rope, dr, layout.positions[t], rope_angles_.data() + t * dr);
  EmbedTokens(batch, embed_, H, h_.data());
  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& L = layers_[l];
    RmsNorm(h_.data(), H, L.input_norm, c.rms_norm_eps, T, H, x_.data(), H);
    Timer attention_timer;
    Attention(L, l, layout.seqs, layout.positions, cache, pool);
    RecordAttentionTime(attention_timer.Seconds());
    RmsNorm(h_.data(), H, L.post_norm, c.rms_norm_eps, T, H, x_.data(), H);
    FeedForward(L, l, T, pool);
  }
  AppendLogits({final_norm_, c.rms_norm_eps, lm_head_}, h_.data(), H, layout.logit_rows, pool,
               logits);
}

StatusOr<std::unique_ptr<Model>> Load(const ModelConfig& c, std::shared_ptr<const WeightStore> w,
                                      const ModelLoadOptions& options) {
  auto model = std::make_unique<DeepseekV3Model>(c, std::move(w));
  MR_RETURN_IF_ERROR(model->Load(options));
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace

const Architecture kDeepseekV3Architecture = {
    {"DeepseekV3ForCausalLM", "KimiK2ForCausalLM", "MistralLarge3ForCausalLM", "deepseek_v3",
     "kimi_k2"},
    &ParseConfig,
    &TensorSpecs,
    &Load,
    &KvSpecOf};

}  // namespace moerack
