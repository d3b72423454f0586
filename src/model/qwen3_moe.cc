// Qwen3-MoE (Qwen3MoeForCausalLM) and Mixtral (MixtralForCausalLM): pre-norm
// decoder blocks with GQA attention (NeoX RoPE; Qwen3 adds a per-head RMSNorm
// on q and k before RoPE) and a softmax-routed top-k MoE of SwiGLU experts.
// The math follows transformers' modeling_qwen3_moe.py / modeling_mixtral.py
// (formats.md §6.1, §6.2); tests/reference/reference.py is its independent twin.
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

namespace moerack {
namespace {

enum class Family { kQwen3Moe, kMixtral };

const std::vector<DType> kLinearDTypes = {DType::kBF16, DType::kF32};
const std::vector<DType> kNormDTypes = {DType::kBF16, DType::kF32, DType::kF16};

std::string LayerName(int layer, const std::string& rest) {
  return "model.layers." + std::to_string(layer) + "." + rest;
}

// Names of the MoE tensors of a layer, which the two families spell differently.
std::string RouterName(Family f, int layer) {
  return LayerName(layer,
                   f == Family::kMixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight");
}
std::string ExpertName(Family f, int layer, int expert, const std::string& which) {
  const std::string e = std::to_string(expert);
  if (f == Family::kMixtral) {
    const std::string w = which == "gate" ? "w1" : which == "up" ? "w3" : "w2";
    return LayerName(layer, "block_sparse_moe.experts." + e + "." + w + ".weight");
  }
  return LayerName(layer, "mlp.experts." + e + "." + which + "_proj.weight");
}

Status ParseConfig(ModelConfig& c, const std::string& source, Family f) {
  ConfigReader r(c.raw, source);
  c.model_type = c.raw.value("model_type", "");
  MR_ASSIGN_OR_RETURN(c.vocab_size, r.Int("vocab_size"));
  MR_ASSIGN_OR_RETURN(c.hidden_size, r.Int("hidden_size"));
  MR_ASSIGN_OR_RETURN(c.num_layers, r.Int("num_hidden_layers"));
  MR_ASSIGN_OR_RETURN(c.num_heads, r.Int("num_attention_heads"));
  MR_ASSIGN_OR_RETURN(c.num_experts_per_tok, r.Int("num_experts_per_tok"));
  c.num_kv_heads = r.IntOr("num_key_value_heads", c.num_heads);
  if (c.num_heads == 0) return Error(source + ": num_attention_heads must be > 0");
  c.head_dim = r.IntOr("head_dim", c.hidden_size / c.num_heads);
  c.max_position_embeddings = r.IntOr("max_position_embeddings", 32768);
  c.tie_word_embeddings = r.BoolOr("tie_word_embeddings", false);
  c.attention_bias = r.BoolOr("attention_bias", false);
  if (f == Family::kMixtral) {
    MR_ASSIGN_OR_RETURN(c.num_experts, r.Int("num_local_experts"));
    MR_ASSIGN_OR_RETURN(c.moe_intermediate_size, r.Int("intermediate_size"));
    c.norm_topk_prob = true;  // Mixtral always renormalises the top-k weights
    c.rms_norm_eps = static_cast<float>(r.DoubleOr("rms_norm_eps", 1e-5));
    c.rope_theta = r.DoubleOr("rope_theta", 1e6);
    c.sliding_window = r.IntOr("sliding_window", 0);
    c.layer_is_moe.assign(static_cast<size_t>(c.num_layers), true);
  } else {
    MR_ASSIGN_OR_RETURN(c.num_experts, r.Int("num_experts"));
    c.norm_topk_prob = r.BoolOr("norm_topk_prob", false);
    c.rms_norm_eps = static_cast<float>(r.DoubleOr("rms_norm_eps", 1e-6));
    c.rope_theta = r.DoubleOr("rope_theta", 10000.0);
    if (r.BoolOr("use_sliding_window", false)) {
      return Error(source + ": use_sliding_window=true is not supported for qwen3_moe");
    }
    const int step = r.IntOr("decoder_sparse_step", 1);
    const std::vector<int> mlp_only = r.IntListOr("mlp_only_layers");
    // transformers' Qwen3MoeDecoderLayer: sparse unless listed in mlp_only_layers,
    // when there are experts and (layer + 1) is a multiple of decoder_sparse_step.
    for (int l = 0; l < c.num_layers; ++l) {
      const bool listed = std::find(mlp_only.begin(), mlp_only.end(), l) != mlp_only.end();
      c.layer_is_moe.push_back(!listed && c.num_experts > 0 && step > 0 && (l + 1) % step == 0);
    }
    if (c.num_experts > 0) {
      MR_ASSIGN_OR_RETURN(c.moe_intermediate_size, r.Int("moe_intermediate_size"));
    }
  }
  const bool any_dense =
      std::find(c.layer_is_moe.begin(), c.layer_is_moe.end(), false) != c.layer_is_moe.end();
  if (any_dense) {
    MR_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("intermediate_size"));
  }
  MR_RETURN_IF_ERROR(r.status());
  if (r.Has("rope_scaling"))
    return Error(source + ": rope_scaling is not supported for this architecture yet");
  if (c.raw.contains("hidden_act") && c.raw["hidden_act"] != "silu") {
    return Error(source + ": hidden_act " + c.raw["hidden_act"].dump() +
                 " is not supported (only silu)");
  }
  if (c.vocab_size == 0 || c.hidden_size == 0 || c.num_layers == 0) {
    return Error(source + ": vocab_size, hidden_size and num_hidden_layers must be > 0");
  }
  if (c.num_kv_heads == 0 || c.num_heads % c.num_kv_heads != 0) {
    return Error(source + ": num_attention_heads must be a multiple of num_key_value_heads");
  }
  if (c.head_dim == 0 || c.head_dim % 2 != 0)
    return Error(source + ": head_dim must be even and > 0");
  const bool any_moe =
      std::find(c.layer_is_moe.begin(), c.layer_is_moe.end(), true) != c.layer_is_moe.end();
  if (any_moe && (c.num_experts_per_tok == 0 || c.num_experts_per_tok > c.num_experts)) {
    return Error(source + ": num_experts_per_tok must be in [1, number of experts]");
  }
  return Status::Ok();
}

std::vector<TensorSpec> TensorSpecs(const ModelConfig& c, Family f) {
  const int64_t H = c.hidden_size, q = int64_t{c.num_heads} * c.head_dim,
                kv = int64_t{c.num_kv_heads} * c.head_dim;
  std::vector<TensorSpec> specs = {{"model.embed_tokens.weight", {c.vocab_size, H}},
                                   {"model.norm.weight", {H}, true}};
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, H}});
  for (int l = 0; l < c.num_layers; ++l) {
    specs.push_back({LayerName(l, "input_layernorm.weight"), {H}, true});
    specs.push_back({LayerName(l, "post_attention_layernorm.weight"), {H}, true});
    specs.push_back({LayerName(l, "self_attn.q_proj.weight"), {q, H}});
    specs.push_back({LayerName(l, "self_attn.k_proj.weight"), {kv, H}});
    specs.push_back({LayerName(l, "self_attn.v_proj.weight"), {kv, H}});
    specs.push_back({LayerName(l, "self_attn.o_proj.weight"), {H, q}});
    if (c.attention_bias) {
      specs.push_back({LayerName(l, "self_attn.q_proj.bias"), {q}});
      specs.push_back({LayerName(l, "self_attn.k_proj.bias"), {kv}});
      specs.push_back({LayerName(l, "self_attn.v_proj.bias"), {kv}});
      specs.push_back({LayerName(l, "self_attn.o_proj.bias"), {H}});
    }
    if (f == Family::kQwen3Moe) {
      specs.push_back({LayerName(l, "self_attn.q_norm.weight"), {c.head_dim}, true});
      specs.push_back({LayerName(l, "self_attn.k_norm.weight"), {c.head_dim}, true});
    }
    if (c.layer_is_moe[l]) {
      const int64_t I = c.moe_intermediate_size;
      specs.push_back({RouterName(f, l), {c.num_experts, H}});
      for (int e = 0; e < c.num_experts; ++e) {
        specs.push_back({ExpertName(f, l, e, "gate"), {I, H}});
        specs.push_back({ExpertName(f, l, e, "up"), {I, H}});
        specs.push_back({ExpertName(f, l, e, "down"), {H, I}});
      }
    } else {
      AddSwigluSpecs(LayerName(l, "mlp."), c.intermediate_size, H, &specs);
    }
  }
  return specs;
}

KvSpec KvSpecOf(const ModelConfig& c) {
  const int64_t kv = 2 * int64_t{c.num_kv_heads} * c.head_dim;
  return {kv, kv};
}

class Qwen3MoeModel final : public Model {
 public:
  Qwen3MoeModel(ModelConfig config, Family family, std::shared_ptr<const WeightStore> weights)
      : config_(std::move(config)), family_(family), weights_(std::move(weights)) {}

  Status Load(const ModelLoadOptions& options) {
    const ModelConfig& c = config_;
    set_expert_placement(c.num_experts, c.num_layers, options);
    const int64_t H = c.hidden_size, q = int64_t{c.num_heads} * c.head_dim,
                  kv = int64_t{c.num_kv_heads} * c.head_dim;
    auto get = [&](const std::string& name, const std::vector<int64_t>& shape,
                   const std::vector<DType>& dtypes, TensorView* out) -> Status {
      MR_ASSIGN_OR_RETURN(*out, weights_->Get(name, shape, dtypes));
      footprint_.total_bytes += out->nbytes();
      return Status::Ok();
    };
    auto linear = [&](const std::string& name, int64_t N, int64_t K, LinearWeight* out) -> Status {
      MR_ASSIGN_OR_RETURN(*out, LoadLinear(*weights_, c.quant, name, N, K));
      footprint_.total_bytes += out->nbytes();
      return Status::Ok();
    };
    MR_RETURN_IF_ERROR(get("model.embed_tokens.weight", {c.vocab_size, H}, kNormDTypes, &embed_));
    MR_RETURN_IF_ERROR(get("model.norm.weight", {H}, kNormDTypes, &final_norm_));
    if (c.tie_word_embeddings) {
      if (embed_.dtype == DType::kF16) return Error("tied embeddings in F16 are not supported");
      lm_head_ = embed_;
    } else {
      MR_RETURN_IF_ERROR(linear("lm_head.weight", c.vocab_size, H, &lm_head_));
    }
    int64_t active = lm_head_.nbytes() + final_norm_.nbytes() + embed_.nbytes() / c.vocab_size;
    layers_.resize(static_cast<size_t>(c.num_layers));
    for (int l = 0; l < c.num_layers; ++l) {
      Layer& L = layers_[l];
      const int64_t before = footprint_.total_bytes;
      MR_RETURN_IF_ERROR(
          get(LayerName(l, "input_layernorm.weight"), {H}, kNormDTypes, &L.input_norm));
      MR_RETURN_IF_ERROR(
          get(LayerName(l, "post_attention_layernorm.weight"), {H}, kNormDTypes, &L.post_norm));
      MR_RETURN_IF_ERROR(linear(LayerName(l, "self_attn.q_proj.weight"), q, H, &L.q));
      MR_RETURN_IF_ERROR(
          linear(LayerName(l, "self_attn.k_proj.weight"), kv, H, &L.k));
      MR_RETURN_IF_ERROR(
          linear(LayerName(l, "self_attn.v_proj.weight"), kv, H, &L.v));
      MR_RETURN_IF_ERROR(linear(LayerName(l, "self_attn.o_proj.weight"), H, q, &L.o));
      MR_ASSIGN_OR_RETURN(L.k_scale, ReadKvScale(*weights_, LayerName(l, "self_attn."), "k"));
      MR_ASSIGN_OR_RETURN(L.v_scale, ReadKvScale(*weights_, LayerName(l, "self_attn."), "v"));
      if (c.attention_bias) {
        MR_RETURN_IF_ERROR(get(LayerName(l, "self_attn.q_proj.bias"), {q}, kNormDTypes, &L.q_bias));
        MR_RETURN_IF_ERROR(
            get(LayerName(l, "self_attn.k_proj.bias"), {kv}, kNormDTypes, &L.k_bias));
        MR_RETURN_IF_ERROR(
            get(LayerName(l, "self_attn.v_proj.bias"), {kv}, kNormDTypes, &L.v_bias));
        MR_RETURN_IF_ERROR(get(LayerName(l, "self_attn.o_proj.bias"), {H}, kNormDTypes, &L.o_bias));
      }
      if (family_ == Family::kQwen3Moe) {
        MR_RETURN_IF_ERROR(
            get(LayerName(l, "self_attn.q_norm.weight"), {c.head_dim}, kNormDTypes, &L.q_norm));
        MR_RETURN_IF_ERROR(
            get(LayerName(l, "self_attn.k_norm.weight"), {c.head_dim}, kNormDTypes, &L.k_norm));
      }
      if (c.layer_is_moe[l]) {
        const int64_t I = c.moe_intermediate_size;
        MR_RETURN_IF_ERROR(
            get(RouterName(family_, l), {c.num_experts, H}, kLinearDTypes, &L.router));
        active += footprint_.total_bytes - before;
        for (int e = 0; e < c.num_experts; ++e) {  // views; an EP rank touches only its slots'
          ExpertWeights w;
          MR_RETURN_IF_ERROR(
              linear(ExpertName(family_, l, e, "gate"), I, H, &w.gate));
          MR_RETURN_IF_ERROR(linear(ExpertName(family_, l, e, "up"), I, H, &w.up));
          MR_RETURN_IF_ERROR(
              linear(ExpertName(family_, l, e, "down"), H, I, &w.down));
          L.experts.push_back(w);
        }
        if (!L.experts.empty()) active += c.num_experts_per_tok * L.experts[0].nbytes();
      } else {
        const int64_t I = c.intermediate_size;
        ExpertWeights w;
        MR_RETURN_IF_ERROR(
            linear(LayerName(l, "mlp.gate_proj.weight"), I, H, &w.gate));
        MR_RETURN_IF_ERROR(linear(LayerName(l, "mlp.up_proj.weight"), I, H, &w.up));
        MR_RETURN_IF_ERROR(
            linear(LayerName(l, "mlp.down_proj.weight"), H, I, &w.down));
        L.experts.push_back(w);
        active += footprint_.total_bytes - before;
      }
    }
    footprint_.active_bytes_per_token = active;
    MR_ASSIGN_OR_RETURN(
        rope_, MakeRopeTable(c.head_dim, c.rope_theta, nullptr, c.max_position_embeddings, ""));
    return Status::Ok();
  }

  const ModelConfig& config() const override { return config_; }
  int64_t kv_floats_per_token() const override { return KvSpecOf(config_).cached; }
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
    TensorView input_norm, post_norm, q_bias, k_bias, v_bias, o_bias, q_norm, k_norm;
    LinearWeight q, k, v, o;
    float k_scale = 1.0f, v_scale = 1.0f;  // FP8 KV cache scales (ModelOpt k_scale / v_scale)
    TensorView router;                   // empty for dense layers
    std::vector<ExpertWeights> experts;  // one entry (the dense MLP) for dense layers
  };

  void Attention(const Layer& L, int layer, std::span<const AttentionSeq> seqs,
                 std::span<const int64_t> positions, const KvCacheView& cache, ThreadPool& pool);
  void FeedForward(const Layer& L, int layer, int64_t T, ThreadPool& pool);

  ModelConfig config_;
  Family family_;
  std::shared_ptr<const WeightStore> weights_;
  TensorView embed_, final_norm_;
  LinearWeight lm_head_;
  std::vector<Layer> layers_;
  RopeTable rope_;
  WeightFootprint footprint_;
  // Activations of the current batch, reused across layers; rope_angles_:
  // RopeAngles of each row's position.
  ScratchVector<float> h_, x_, q_, k_, v_, attn_, tmp_, rope_angles_;
};

void AddBias(float* y, int64_t rows, int64_t stride, const TensorView& bias) {
  if (bias.empty()) return;
  std::vector<float> b(static_cast<size_t>(bias.numel()));
  LoadF32(bias, 0, bias.numel(), b.data());
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t i = 0; i < b.size(); ++i) y[r * stride + static_cast<int64_t>(i)] += b[i];
  }
}

void Qwen3MoeModel::Attention(const Layer& L, int layer, std::span<const AttentionSeq> seqs,
                              std::span<const int64_t> positions, const KvCacheView& cache,
                              ThreadPool& pool) {
  const ModelConfig& c = config_;
  const int64_t T = static_cast<int64_t>(positions.size()), H = c.hidden_size;
  const int64_t nq = int64_t{c.num_heads} * c.head_dim, nkv = int64_t{c.num_kv_heads} * c.head_dim;
  const GemmProblem qkv[3] = {{x_.data(), H, T, L.q, q_.data(), nq},
                              {x_.data(), H, T, L.k, k_.data(), nkv},
                              {x_.data(), H, T, L.v, v_.data(), nkv}};
  for (const AttentionSeq& s : seqs)
    cache.PrefetchForWrite(layer, s.block_table, s.start_pos, s.num_tokens);
  GroupedMatMul(qkv, pool);
  AddBias(q_.data(), T, nq, L.q_bias);
  AddBias(k_.data(), T, nkv, L.k_bias);
  AddBias(v_.data(), T, nkv, L.v_bias);
  pool.ParallelRange(T, 4, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      float* qt = q_.data() + t * nq;
      float* kt = k_.data() + t * nkv;
      if (!L.q_norm.empty()) {
        RmsNorm(qt, c.head_dim, L.q_norm, c.rms_norm_eps, c.num_heads, c.head_dim, qt, c.head_dim);
        RmsNorm(kt, c.head_dim, L.k_norm, c.rms_norm_eps, c.num_kv_heads, c.head_dim, kt,
                c.head_dim);
      }
      const float* cos_sin = rope_angles_.data() + t * c.head_dim;
      ApplyRope(qt, c.num_heads, c.head_dim, c.head_dim, cos_sin, RopeStyle::kNeox);
      ApplyRope(kt, c.num_kv_heads, c.head_dim, c.head_dim, cos_sin, RopeStyle::kNeox);
    }
  });
  for (const AttentionSeq& s : seqs) {
    for (int64_t i = 0; i < s.num_tokens; ++i) {
      cache.Store(layer, s.block_table, s.start_pos + i, 0, k_.data() + (s.first_row + i) * nkv,
                  nkv, L.k_scale);
      cache.Store(layer, s.block_table, s.start_pos + i, nkv, v_.data() + (s.first_row + i) * nkv,
                  nkv, L.v_scale);
    }
  }
  AttentionParams ap;
  ap.q = q_.data();
  ap.q_stride = nq;
  ap.out = attn_.data();
  ap.out_stride = nq;
  ap.num_heads = c.num_heads;
  ap.num_kv_heads = c.num_kv_heads;
  ap.head_dim = c.head_dim;
  ap.v_head_dim = c.head_dim;
  ap.k_offset = 0;
  ap.v_offset = nkv;
  ap.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ap.k_scale = L.k_scale;
  ap.v_scale = L.v_scale;
  ap.sliding_window = c.sliding_window;
  ap.layer = layer;
  PagedAttention(ap, seqs, cache, pool);
  MatMul({attn_.data(), nq, T, L.o, tmp_.data(), H}, pool);
  AddBias(tmp_.data(), T, H, L.o_bias);
  for (int64_t i = 0; i < T * H; ++i) h_[i] += tmp_[i];
}

void Qwen3MoeModel::FeedForward(const Layer& L, int layer, int64_t T, ThreadPool& pool) {
  const int64_t H = config_.hidden_size;
  if (L.router.empty()) {  // dense MLP: the grouped GEMM with one expert
    const int64_t offsets[2] = {0, T};
    GroupedExpertFfn({L.experts, offsets, x_.data(), tmp_.data(), H}, pool);
  } else {
    RouterParams rp;
    rp.num_experts = config_.num_experts;
    rp.top_k = config_.num_experts_per_tok;
    rp.renormalize = config_.norm_topk_prob;
    RunMoe({L.router, rp, L.experts, nullptr}, layer, x_.data(), T, H, tmp_.data(), pool);
  }
  for (int64_t i = 0; i < T * H; ++i) h_[i] += tmp_[i];
}

void Qwen3MoeModel::ForwardImpl(const ForwardBatch& batch, const KvCacheView& cache,
                                ThreadPool& pool, std::vector<float>* logits) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size;
  const BatchLayout layout = LayoutBatch(batch);
  const int64_t T = layout.num_rows();
  const int64_t nq = int64_t{c.num_heads} * c.head_dim, nkv = int64_t{c.num_kv_heads} * c.head_dim;
  h_.resize(static_cast<size_t>(T * H));
  x_.resize(h_.size());
  tmp_.resize(h_.size());
  q_.resize(static_cast<size_t>(T * nq));
  attn_.resize(q_.size());
  k_.resize(static_cast<size_t>(T * nkv));
  v_.resize(k_.size());
  rope_angles_.resize(static_cast<size_t>(T * c.head_dim));
  for (int64_t t = 0; t < T; ++t)
    RopeAngles(rope_, c.head_dim, layout.positions[t], rope_angles_.data() + t * c.head_dim);
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

template <Family F>
Status Parse(ModelConfig& c, const std::string& source) {
  return ParseConfig(c, source, F);
}
template <Family F>
std::vector<TensorSpec> Specs(const ModelConfig& c) {
  return TensorSpecs(c, F);
}
template <Family F>
StatusOr<std::unique_ptr<Model>> Load(const ModelConfig& c, std::shared_ptr<const WeightStore> w,
                                      const ModelLoadOptions& options) {
  auto model = std::make_unique<Qwen3MoeModel>(c, F, std::move(w));
  MR_RETURN_IF_ERROR(model->Load(options));
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace

const Architecture kQwen3MoeArchitecture = {{"Qwen3MoeForCausalLM", "qwen3_moe"},
                                            &Parse<Family::kQwen3Moe>,
                                            &Specs<Family::kQwen3Moe>,
                                            &Load<Family::kQwen3Moe>,
                                            &KvSpecOf};
const Architecture kMixtralArchitecture = {{"MixtralForCausalLM", "mixtral"},
                                           &Parse<Family::kMixtral>,
                                           &Specs<Family::kMixtral>,
                                           &Load<Family::kMixtral>,
                                           &KvSpecOf};

}  // namespace moerack
