// ModelSpec: what the cost model needs to know about a model, parsed straight
// from a Hugging Face config.json (DeepSeek-V3 family, Kimi K2, Mistral Large
// 3, gpt-oss, Qwen3-MoE, Mixtral, ...), whether or not the engine can run the
// architecture: parameter counts per part, experts, top-k, attention type and
// the KV bytes per token.
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace moerack::sim {

enum class AttentionKind { kGqa, kMla };

struct ModelSpec {
  std::string name;  // as given on the command line
  int64_t hidden = 0;
  int64_t vocab = 0;
  int num_layers = 0;
  int num_moe_layers = 0;  // the rest are dense
  bool tied_embeddings = false;

  // Attention.
  AttentionKind attention = AttentionKind::kGqa;
  int num_heads = 0;
  int num_kv_heads = 0;         // GQA; 1 for MLA (one latent shared by all heads)
  int64_t qk_head_dim = 0;      // per head, query/key (MLA: nope + rope)
  int64_t v_head_dim = 0;
  int64_t kv_lora_rank = 0;     // MLA latent width
  int64_t qk_rope_dim = 0;      // MLA decoupled rope key width
  int64_t sliding_window = 0;   // tokens; 0 = none
  int num_window_layers = 0;    // layers that use sliding_window (the rest see everything)
  int64_t attn_params = 0;      // projection weights per layer (q, k, v / latent, o)
  int64_t kv_expand_params = 0; // MLA kv_b: expands the latent per head (prefill)

  // Feed-forward.
  int64_t dense_ffn_params = 0;   // a dense layer's MLP
  int num_experts = 0;            // routed
  int top_k = 0;
  int64_t expert_params = 0;      // one routed expert
  int64_t shared_params = 0;      // shared experts of one MoE layer, together
  int64_t router_params = 0;      // per MoE layer

  // Derived.
  int64_t kv_elements_per_token_layer = 0;  // cached per token per layer
  int64_t total_params = 0;
  int64_t active_params = 0;  // per token: attention, dense, shared, top_k experts, embeddings, head

  int64_t embed_params() const { return vocab * hidden; }
  int64_t head_params() const { return vocab * hidden; }
  int num_dense_layers() const { return num_layers - num_moe_layers; }
  // Attention FLOPs per (query token, context token) pair in one layer, all
  // heads: scores plus weighted values. MLA decodes in the absorbed form
  // (against the 512+64 latent), prefills expanded (per-head 192 / 128).
  double AttentionFlopsPerPair(bool absorbed) const;
};

// Parses a config.json (text); `name` labels errors and the spec.
StatusOr<ModelSpec> ParseModelSpec(const nlohmann::json& config, const std::string& name);
// NAME of a bundled configs/NAME.json (deepseek-r1, kimi-k2, ...), a config.json
// path, or a model directory.
StatusOr<ModelSpec> LoadModelSpec(const std::string& name_or_path);

}  // namespace moerack::sim
