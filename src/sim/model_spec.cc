#include "sim/model_spec.h"

#include <filesystem>

#include "core/mapped_file.h"
#include "core/paths.h"

namespace moerack::sim {

double ModelSpec::AttentionFlopsPerPair(bool absorbed) const {
  // Two FLOPs per multiply-add; scores (q.k) and the weighted sum of values.
  if (attention == AttentionKind::kMla && absorbed)
    return 2.0 * num_heads * static_cast<double>((kv_lora_rank + qk_rope_dim) + kv_lora_rank);
  return 2.0 * num_heads * static_cast<double>(qk_head_dim + v_head_dim);
}

namespace {

class Fields {
 public:
  Fields(const nlohmann::json& j, std::string source) : j_(j), source_(std::move(source)) {}
  bool Has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
  // The first present key of `keys`; error naming them all when none is.
  StatusOr<int64_t> Int(std::initializer_list<const char*> keys) const {
    for (const char* k : keys) {
      if (!Has(k)) continue;
      if (!j_[k].is_number_integer() || j_[k].get<int64_t>() < 0)
        return Error(source_ + ": field '" + k + "' must be a non-negative integer");
      return j_[k].get<int64_t>();
    }
    std::string names;
    for (const char* k : keys) names += (names.empty() ? "'" : " or '") + std::string(k) + "'";
    return Error(source_ + ": missing field " + names);
  }
  int64_t IntOr(std::initializer_list<const char*> keys, int64_t fallback) const {
    for (const char* k : keys)
      if (Has(k) && j_[k].is_number_integer()) return j_[k].get<int64_t>();
    return fallback;
  }
  bool BoolOr(const char* key, bool fallback) const {
    return Has(key) && j_[key].is_boolean() ? j_[key].get<bool>() : fallback;
  }
  const nlohmann::json& json() const { return j_; }

 private:
  const nlohmann::json& j_;
  std::string source_;
};

// Which layers have routed experts, by the family's keys: DeepSeek's
// first_k_dense_replace / moe_layer_freq, Qwen's mlp_only_layers /
// decoder_sparse_step; otherwise (Mixtral, gpt-oss) every layer.
int CountMoeLayers(const Fields& f, int num_layers) {
  int n = 0;
  if (f.Has("n_routed_experts")) {
    const int64_t first = f.IntOr({"first_k_dense_replace"}, 0);
    const int64_t freq = std::max<int64_t>(1, f.IntOr({"moe_layer_freq"}, 1));
    for (int i = 0; i < num_layers; ++i) n += (i >= first && i % freq == 0) ? 1 : 0;
    return n;
  }
  std::vector<int64_t> dense_only;
  if (f.Has("mlp_only_layers") && f.json()["mlp_only_layers"].is_array())
    for (const auto& v : f.json()["mlp_only_layers"])
      if (v.is_number_integer()) dense_only.push_back(v.get<int64_t>());
  const int64_t step = std::max<int64_t>(1, f.IntOr({"decoder_sparse_step"}, 1));
  for (int i = 0; i < num_layers; ++i) {
    const bool listed = std::find(dense_only.begin(), dense_only.end(), i) != dense_only.end();
    n += (!listed && (i + 1) % step == 0) ? 1 : 0;
  }
  return n;
}

}  // namespace

StatusOr<ModelSpec> ParseModelSpec(const nlohmann::json& config, const std::string& name) {
  if (!config.is_object()) return Error(name + ": config is not a JSON object");
  // Multimodal wrappers (Kimi K2.5, Mistral Large 3's HF export) nest the LM.
  const nlohmann::json& j =
      config.contains("text_config") && config["text_config"].is_object() ? config["text_config"]
                                                                          : config;
  const Fields f(j, name);
  ModelSpec m;
  m.name = name;
  MR_ASSIGN_OR_RETURN(m.hidden, f.Int({"hidden_size"}));
  MR_ASSIGN_OR_RETURN(m.vocab, f.Int({"vocab_size"}));
  MR_ASSIGN_OR_RETURN(int64_t layers, f.Int({"num_hidden_layers"}));
  MR_ASSIGN_OR_RETURN(int64_t heads, f.Int({"num_attention_heads"}));
  if (m.hidden <= 0 || m.vocab <= 0 || layers <= 0 || heads <= 0)
    return Error(name + ": hidden_size, vocab_size, num_hidden_layers and num_attention_heads "
                        "must be positive");
  if (m.hidden > (1 << 20) || m.vocab > (1 << 26) || layers > 100000 || heads > 65536)
    return Error(name + ": hidden_size, vocab_size, num_hidden_layers or num_attention_heads is "
                        "implausibly large");
  m.num_layers = static_cast<int>(layers);
  m.num_heads = static_cast<int>(heads);
  m.tied_embeddings = f.BoolOr("tie_word_embeddings", false);
  const int64_t H = m.hidden;

  if (f.Has("kv_lora_rank")) {
    m.attention = AttentionKind::kMla;
    MR_ASSIGN_OR_RETURN(m.kv_lora_rank, f.Int({"kv_lora_rank"}));
    MR_ASSIGN_OR_RETURN(const int64_t nope, f.Int({"qk_nope_head_dim"}));
    MR_ASSIGN_OR_RETURN(m.qk_rope_dim, f.Int({"qk_rope_head_dim"}));
    MR_ASSIGN_OR_RETURN(m.v_head_dim, f.Int({"v_head_dim"}));
    m.qk_head_dim = nope + m.qk_rope_dim;
    m.num_kv_heads = 1;
    const int64_t q_rank = f.IntOr({"q_lora_rank"}, 0);
    const int64_t q = q_rank > 0 ? H * q_rank + q_rank + q_rank * heads * m.qk_head_dim
                                 : H * heads * m.qk_head_dim;
    m.kv_expand_params = m.kv_lora_rank * heads * (nope + m.v_head_dim);
    m.attn_params = q + H * (m.kv_lora_rank + m.qk_rope_dim) + m.kv_lora_rank +
                    m.kv_expand_params + heads * m.v_head_dim * H;
    m.kv_elements_per_token_layer = m.kv_lora_rank + m.qk_rope_dim;
  } else {
    m.attention = AttentionKind::kGqa;
    m.num_kv_heads = static_cast<int>(f.IntOr({"num_key_value_heads"}, heads));
    m.qk_head_dim = f.IntOr({"head_dim"}, H / heads);
    m.v_head_dim = m.qk_head_dim;
    if (m.num_kv_heads <= 0 || m.qk_head_dim <= 0)
      return Error(name + ": num_key_value_heads and head_dim must be positive");
    const int64_t kv = m.num_kv_heads * m.qk_head_dim;
    m.attn_params = H * heads * m.qk_head_dim + 2 * H * kv + heads * m.qk_head_dim * H;
    if (f.BoolOr("attention_bias", false)) m.attn_params += heads * m.qk_head_dim + 2 * kv + H;
    m.kv_elements_per_token_layer = 2 * kv;
  }

  // Sliding windows: gpt-oss lists layer_types; Mistral-style configs window every
  // layer; Qwen's key only counts with use_sliding_window.
  const int64_t window = f.IntOr({"sliding_window"}, 0);
  if (window > 0 && f.BoolOr("use_sliding_window", true)) {
    m.sliding_window = window;
    if (j.contains("layer_types") && j["layer_types"].is_array()) {
      for (const auto& t : j["layer_types"])
        m.num_window_layers += t.is_string() && t.get<std::string>() == "sliding_attention";
    } else {
      m.num_window_layers = m.num_layers;
    }
  }

  // Experts.
  m.num_experts = static_cast<int>(f.IntOr({"n_routed_experts", "num_local_experts", "num_experts"}, 0));
  m.top_k = static_cast<int>(f.IntOr({"num_experts_per_tok", "experts_per_token"}, 0));
  if (m.num_experts > (1 << 20)) return Error(name + ": implausible number of experts");
  if (m.num_experts > 0) {
    if (m.top_k <= 0 || m.top_k > m.num_experts)
      return Error(name + ": num_experts_per_tok must be in [1, number of experts]");
    MR_ASSIGN_OR_RETURN(const int64_t inter, f.Int({"moe_intermediate_size", "intermediate_size"}));
    m.expert_params = 3 * H * inter;
    m.router_params = H * m.num_experts;
    m.num_moe_layers = CountMoeLayers(f, m.num_layers);
    const int64_t n_shared = f.IntOr({"n_shared_experts"}, 0);
    m.shared_params = n_shared * 3 * H * inter;
    const int64_t shared_inter = f.IntOr({"shared_expert_intermediate_size"}, 0);
    m.shared_params += 3 * H * shared_inter;
  }
  if (m.num_dense_layers() > 0) {
    MR_ASSIGN_OR_RETURN(const int64_t inter, f.Int({"intermediate_size"}));
    m.dense_ffn_params = 3 * H * inter;
  }

  const int64_t per_moe_total = int64_t{m.num_experts} * m.expert_params + m.shared_params +
                                m.router_params;
  const int64_t per_moe_active = int64_t{m.top_k} * m.expert_params + m.shared_params +
                                 m.router_params;
  const int64_t common = int64_t{m.num_layers} * m.attn_params +
                         int64_t{m.num_dense_layers()} * m.dense_ffn_params + m.embed_params() +
                         (m.tied_embeddings ? 0 : m.head_params());
  m.total_params = common + int64_t{m.num_moe_layers} * per_moe_total;
  m.active_params = common + int64_t{m.num_moe_layers} * per_moe_active;
  return m;
}

StatusOr<ModelSpec> LoadModelSpec(const std::string& name_or_path) {
  namespace fs = std::filesystem;
  std::string path;
  if (fs::is_directory(name_or_path)) {
    path = (fs::path(name_or_path) / "config.json").string();
  } else if (fs::is_regular_file(name_or_path)) {
    path = name_or_path;
  } else {
    MR_ASSIGN_OR_RETURN(std::string data, FindDataDir());
    path = (fs::path(data) / "configs" / (name_or_path + ".json")).string();
    if (!fs::is_regular_file(path))
      return Error("--model: '" + name_or_path +
                   "' is neither a config.json, a model directory, nor a bundled config "
                   "(deepseek-r1, kimi-k2, mistral-large-3, gpt-oss-120b, qwen3-235b-a22b, "
                   "mixtral-8x7b)");
  }
  MR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return Error(path + ": not valid JSON");
  return ParseModelSpec(j, name_or_path);
}

}  // namespace moerack::sim
