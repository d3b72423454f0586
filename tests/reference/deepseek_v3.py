"""DeepSeek-V3 family for reference.py: DeepseekV3ForCausalLM (DeepSeek-V3 / R1), Kimi K2, Mistral Large 3.

Imported by reference.py, which owns the command line, the safetensors reader (including block FP8) and the
dump format. Everything is float64; the math below is the exact math, not a bf16 emulation.

Selection (config.json `architectures[0]`, falling back to `model_type`):
  DeepseekV3ForCausalLM, KimiK2ForCausalLM, or no architectures with model_type deepseek_v3 / kimi_k2
      -> variant "deepseek" (transformers' models/deepseek_v3/modeling_deepseek_v3.py). Kimi K2's real
         config.json says architectures ["DeepseekV3ForCausalLM"], model_type "kimi_k2"; it is the same math.
  MistralLarge3ForCausalLM -> variant "mistral" (vLLM: model_executor/models/deepseek_v2.py with the config
         written by transformers_utils/configs/mistral.py from Mistral's params.json; transformers has no
         MistralLarge3 class).

Conventions, each checked against the source named (transformers modeling_deepseek_v3.py,
configuration_deepseek_v3.py and modeling_rope_utils.py; DeepSeek's own inference/model.py and remote-code
modeling_deepseek.py where they agree; vLLM deepseek_v2.py, layers/fused_moe grouped_topk, configs/mistral.py):

  * Decoder layer: pre-norm, h += o_proj(MLA(input_layernorm(h))); h += FFN(post_attention_layernorm(h));
    model.norm then lm_head (embed_tokens.weight when tie_word_embeddings, default false). RMSNorm as in
    reference.py, eps = rms_norm_eps (default 1e-6).
  * MLA (DeepseekV3Attention), per token, H = num_attention_heads, dqk = qk_nope_head_dim + qk_rope_head_dim:
        q = q_b_proj(q_a_layernorm(q_a_proj(x)))       if q_lora_rank is set
        q = q_proj(x)                                   if q_lora_rank is null
        q -> [H, dqk] -> q_nope [nope] | q_pe [rope]
        kv_a = kv_a_proj_with_mqa(x) -> c_kv [kv_lora_rank] | k_pe [rope]   (k_pe is ONE head shared by all)
        kv = kv_b_proj(kv_a_layernorm(c_kv)) -> [H, nope + v_head_dim] -> k_nope | v
        q_pe, k_pe = RoPE(q_pe, k_pe, pos); q = [q_nope, q_pe]; k = [k_nope, k_pe]
        p = softmax(q.k * scaling + causal mask); o = sum p v -> [H * v_head_dim] -> o_proj
    q_a_proj, kv_a_proj_with_mqa and o_proj carry a bias iff attention_bias (default false); q_proj,
    q_b_proj and kv_b_proj never do. num_key_value_heads must equal num_attention_heads (or be null).
  * q_a_layernorm / kv_a_layernorm eps: transformers builds them as DeepseekV3RMSNorm(q_lora_rank) and
    DeepseekV3RMSNorm(kv_lora_rank), i.e. the class default eps = 1e-6, NOT config.rms_norm_eps (DeepSeek's
    remote-code modeling_deepseek.py, which Kimi K2 ships, and inference/model.py do the same). vLLM uses
    config.rms_norm_eps for them. Here: 1e-6 for variant "deepseek" (transformers), rms_norm_eps for
    variant "mistral" (vLLM is the only implementation). Identical when rms_norm_eps = 1e-6 (DeepSeek-V3/R1,
    Mistral Large 3); Kimi K2 configs with rms_norm_eps 1e-5 see the difference.
  * RoPE acts on the qk_rope_head_dim part only (config.head_dim is qk_rope_head_dim in DeepseekV3Config;
    Mistral's params.json carries head_dim = nope + rope, which is ignored). inv_freq[j] for j < rope/2.
    rope_interleave (default true, all DeepSeek/Kimi/Mistral checkpoints): rotation pairs are dims
    (2j, 2j+1) with frequency inv_freq[j] (DeepSeek's view_as_complex; transformers'
    apply_rotary_pos_emb_interleave de-interleaves to [x0,x2,..,x1,x3,..] and then applies rotate_half,
    which is the same rotation with the output left in de-interleaved order; dot products are unchanged):
        y[2j]   = x[2j] cos(pos inv_freq[j]) - x[2j+1] sin(pos inv_freq[j])
        y[2j+1] = x[2j] sin(pos inv_freq[j]) + x[2j+1] cos(pos inv_freq[j])
    rope_interleave false: NeoX pairs (j, j + rope/2) as in reference.py. cos and sin are multiplied by
    attention_factor (below), so the q_pe.k_pe part of a score is multiplied by attention_factor^2.
  * rope_scaling (or rope_parameters) null or rope_type "default": inv_freq[j] = theta^(-2j/d), factor 1.
    rope_type "yarn" (_compute_yarn_parameters, current transformers):
        d = qk_rope_head_dim, base = rope_theta, f = factor, L0 = original_max_position_embeddings
        find(r) = d ln(L0 / (2 pi r)) / (2 ln base)
        low = find(beta_fast), high = find(beta_slow)   (beta_fast default 32, beta_slow default 1)
        truncate (default true): low = floor(low), high = ceil(high); then low = max(low, 0), high = min(high, d-1)
        if low == high: high += 0.001
        ramp[j] = clamp((j - low) / (high - low), 0, 1)
        inv_freq[j] = base^(-2j/d) / f * ramp[j] + base^(-2j/d) * (1 - ramp[j])
        attention_factor = rope.attention_factor if given; else if mscale and mscale_all_dim (both nonzero):
            get_mscale(f, mscale) / get_mscale(f, mscale_all_dim); else get_mscale(f)
        get_mscale(s, m) = 1 if s <= 1 else 0.1 m ln(s) + 1
    (Some transformers releases overrode factor with max_position_embeddings / L0; the tiny configs keep
    max_position_embeddings = factor * L0 so that reading does not matter.)
  * Softmax scale: scaling = dqk^-0.5; variant "deepseek" (DeepseekV3Attention): if rope type is not default
    and rope.mscale_all_dim is nonzero, scaling *= get_mscale(f, mscale_all_dim)^2 (DeepSeek-V3: mscale =
    1 + 0.1 ln 40 = 1.3689, scaling *= 1.8739). Variant "mistral" (vLLM after PR #57563): the same, except
    that a rope dict with attention_factor == 1.0 (what the adapter writes for params.json
    yarn.apply_scale = false, as Mistral Large 3 has) or apply_yarn_scaling == false selects
    "deepseek_llama_scaling": YaRN frequencies but NO mscale^2 (and attention_factor 1 on cos/sin).
  * llama_4_scaling (variant "mistral" only; vLLM requires it for MistralLarge3): config key
    {"original_max_position_embeddings": n0, "beta": b} (or rope_parameters.llama_4_scaling_beta with
    rope_parameters.original_max_position_embeddings). After RoPE, the whole query of the token at
    position pos (q_nope and q_pe, every head) is multiplied by 1 + b ln(1 + floor(pos / n0)); keys are not.
  * Layer kind: MoE iff n_routed_experts is set and layer >= first_k_dense_replace and
    layer % moe_layer_freq == 0 (remote-code modeling_deepseek.py and vLLM; transformers' own class checks
    only layer >= first_k_dense_replace, the same for moe_layer_freq 1, which every real config has).
    Dense layers: mlp.{gate,up,down}_proj with intermediate_size. Layers >= num_hidden_layers (MTP,
    num_nextn_predict_layers) are never read.
  * MoE (DeepseekV3MoE): y = sum_i w_i expert_{idx_i}(x) + shared_experts(x); experts mlp.experts.E.*
    with moe_intermediate_size; shared expert mlp.shared_experts.* with moe_intermediate_size *
    n_shared_experts (absent when n_shared_experts is null or 0).
  * Router, variant "deepseek" (DeepseekV3TopkRouter; scoring_func must be "sigmoid" or absent and topk_method
    "noaux_tc" or absent, since transformers ignores both and always does this):
        logits = mlp.gate.weight x (float32 in transformers); s = sigmoid(logits)
        b = s + mlp.gate.e_score_correction_bias                     (selection only)
        group g (n_group groups of E/n_group consecutive experts): score = sum of the top-2 b in the group
        keep the topk_group best groups; b of experts outside them := 0.0 (transformers' masked_fill value;
            DeepSeek's inference/model.py, vLLM and llama.cpp use -inf: they differ only when fewer than
            top_k kept experts have b > 0; this script warns when that happens, --group-mask neg-inf
            switches to -inf)
        idx = top_k of b; w = s[idx] (bias-free)
        if norm_topk_prob: w = w / (sum(w) + 1e-20)
        w = w * routed_scaling_factor
  * Router, variant "mistral" (vLLM grouped_topk with scoring_func "softmax", no correction bias,
    renormalize = norm_topk_prob = true as the adapter forces):
        p = softmax(logits) over all experts; if n_group > 1: group score = max p in the group, keep the
        topk_group best groups, others := -inf; idx = top_k of p; w = p[idx];
        if norm_topk_prob: w = w / sum(w); w = w * routed_scaling_factor
    The config.json keys this expects (what vLLM's adapter writes from params.json):
        "architectures": ["MistralLarge3ForCausalLM"], "model_type": "deepseek_v3",
        "scoring_func": "softmax", "topk_method": null, "norm_topk_prob": true,
        "rope_parameters": {"rope_type": "yarn", "rope_theta", "factor", "original_max_position_embeddings",
                            "beta_fast", "beta_slow", "mscale_all_dim": 1, "attention_factor": 1.0},
        "llama_4_scaling": {"original_max_position_embeddings", "beta"}
    A checkpoint with mlp.gate.e_score_correction_bias is refused in this variant.
  * Expert order in the dumps (topk_idx / topk_w): descending selection score (b, resp. p), ties to the lower
    expert index. transformers uses torch.topk(sorted=False), whose order is unspecified.
"""
import math

import torch

F64 = torch.float64
ARCHS = {"DeepseekV3ForCausalLM": "deepseek", "KimiK2ForCausalLM": "deepseek",
         "MistralLarge3ForCausalLM": "mistral"}
MODEL_TYPES = {"deepseek_v3": "deepseek", "kimi_k2": "deepseek"}


def detect(cfg):
    """Variant name for a config, or None when this module does not handle it."""
    archs = cfg.get("architectures") or []
    if archs:
        return ARCHS.get(archs[0])
    return MODEL_TYPES.get(cfg.get("model_type"))


def get_mscale(scale, m=1.0):
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0


class DeepseekSpec:
    """Normalised DeepSeek-V3-family configuration (defaults are DeepseekV3Config's)."""

    def __init__(self, cfg):
        self.variant = detect(cfg)
        if self.variant is None:
            raise SystemExit("not a DeepSeek-V3 family config")
        self.arch = (cfg.get("architectures") or [cfg.get("model_type")])[0]
        mistral = self.variant == "mistral"

        def get(key, default):
            v = cfg.get(key)
            return default if v is None else v

        self.vocab = get("vocab_size", 129280)
        self.hidden = get("hidden_size", 7168)
        self.dense_inter = get("intermediate_size", 18432)
        self.moe_inter = get("moe_intermediate_size", 2048)
        self.layers = get("num_hidden_layers", 61)
        self.heads = get("num_attention_heads", 128)
        kv_heads = get("num_key_value_heads", self.heads)
        if kv_heads != self.heads:
            raise SystemExit(f"num_key_value_heads {kv_heads} != num_attention_heads {self.heads}: not MLA")
        self.n_shared = get("n_shared_experts", 1)
        self.experts = cfg.get("n_routed_experts", 256)  # explicit null -> no MoE layers at all
        self.scale = float(get("routed_scaling_factor", 2.5))
        self.kv_rank = get("kv_lora_rank", 512)
        self.q_rank = cfg.get("q_lora_rank", 1536)  # explicit null -> plain q_proj
        self.rope_dim = get("qk_rope_head_dim", 64)
        self.v_dim = get("v_head_dim", 128)
        self.nope_dim = get("qk_nope_head_dim", 128)
        self.qk_dim = self.nope_dim + self.rope_dim
        if mistral and cfg.get("head_dim") not in (None, self.qk_dim):
            raise SystemExit(f"head_dim {cfg.get('head_dim')} != qk_nope_head_dim + qk_rope_head_dim {self.qk_dim}")
        self.n_group = get("n_group", 8)
        self.topk_group = get("topk_group", 4)
        self.top_k = get("num_experts_per_tok", 8)
        self.first_dense = get("first_k_dense_replace", 3)
        self.moe_freq = get("moe_layer_freq", 1)
        self.norm_topk = bool(get("norm_topk_prob", True))
        self.eps = float(get("rms_norm_eps", 1e-6))
        self.lora_eps = self.eps if mistral else 1e-6
        self.tie = bool(get("tie_word_embeddings", False))
        self.attention_bias = bool(get("attention_bias", False))
        self.interleave = bool(get("rope_interleave", True))
        self.group_mask_fill = 0.0  # transformers; reference.py --group-mask neg-inf sets -inf
        if get("hidden_act", "silu") != "silu":
            raise SystemExit(f"hidden_act {cfg.get('hidden_act')!r} not supported (silu only)")

        scoring, topk_method = cfg.get("scoring_func"), cfg.get("topk_method")
        if mistral:
            if scoring != "softmax" or topk_method is not None:
                raise SystemExit(f"MistralLarge3ForCausalLM expects scoring_func 'softmax' and topk_method null, "
                                 f"got {scoring!r} / {topk_method!r}")
        elif scoring not in (None, "sigmoid") or topk_method not in (None, "noaux_tc"):
            raise SystemExit(f"{self.arch}: scoring_func {scoring!r} / topk_method {topk_method!r}: transformers "
                             f"always routes sigmoid + noaux_tc; refusing to guess")
        if self.experts:
            if self.experts % self.n_group:
                raise SystemExit(f"n_routed_experts {self.experts} not a multiple of n_group {self.n_group}")
            if not mistral and self.experts // self.n_group < 2:
                raise SystemExit("noaux_tc needs at least 2 experts per group (top-2 group score)")
            if not 1 <= self.topk_group <= self.n_group:
                raise SystemExit(f"topk_group {self.topk_group} outside [1, n_group={self.n_group}]")
            if self.top_k > self.topk_group * (self.experts // self.n_group):
                raise SystemExit("num_experts_per_tok exceeds the experts of the kept groups")

        self._rope(cfg, mistral)
        l4 = cfg.get("llama_4_scaling")
        if l4 is None and mistral and self.rope.get("llama_4_scaling_beta") is not None:
            l4 = {"beta": self.rope["llama_4_scaling_beta"],
                  "original_max_position_embeddings": self.rope["original_max_position_embeddings"]}
        if l4 is not None and not mistral:
            raise SystemExit(f"{self.arch}: llama_4_scaling is only applied by MistralLarge3ForCausalLM; refusing")
        if mistral and l4 is None:
            raise SystemExit("MistralLarge3ForCausalLM needs llama_4_scaling (vLLM asserts it)")
        self.l4_beta = float(l4["beta"]) if l4 else None
        self.l4_orig = int(l4["original_max_position_embeddings"]) if l4 else None

    def _rope(self, cfg, mistral):
        rp = cfg.get("rope_parameters") or {}
        rs = cfg.get("rope_scaling") or {}
        rope = dict(rp)
        rope.update(rs)  # rope_scaling (older configs) wins over rope_parameters
        self.rope = rope
        typ = rope.get("rope_type", rope.get("type", "default")) or "default"
        theta = cfg.get("rope_theta")
        if theta is None:
            theta = rope.get("rope_theta", 10000.0)
        self.rope_theta = float(theta)
        self.rope_type = typ
        d = self.rope_dim
        base = torch.tensor(self.rope_theta, dtype=F64) ** (-torch.arange(0, d, 2, dtype=F64) / d)
        self.attention_factor = 1.0
        self.mscale2 = 1.0
        if typ == "default":
            self.inv_freq = base
            return
        if typ != "yarn":
            raise SystemExit(f"rope type {typ!r} not supported (default and yarn only)")
        f = float(rope["factor"])
        l0 = rope.get("original_max_position_embeddings")
        if l0 is None:
            raise SystemExit("yarn rope needs original_max_position_embeddings")
        beta_fast = rope.get("beta_fast") or 32
        beta_slow = rope.get("beta_slow") or 1

        def find(r):
            return d * math.log(l0 / (r * 2 * math.pi)) / (2 * math.log(self.rope_theta))

        low, high = find(beta_fast), find(beta_slow)
        if rope.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, d - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(d // 2, dtype=F64) - low) / (high - low)).clamp(0, 1)
        self.inv_freq = base / f * ramp + base * (1 - ramp)
        self.yarn_low_high = (low, high)

        af = rope.get("attention_factor")
        ms, ms_all = rope.get("mscale"), rope.get("mscale_all_dim")
        if af is None:
            af = get_mscale(f, ms) / get_mscale(f, ms_all) if (ms and ms_all) else get_mscale(f)
        self.attention_factor = float(af)
        no_mscale = mistral and (rope.get("attention_factor") == 1.0 or rope.get("apply_yarn_scaling") is False)
        if ms_all and not no_mscale:
            self.mscale2 = get_mscale(f, ms_all) ** 2

    def is_moe(self, layer):
        return bool(self.experts) and layer >= self.first_dense and layer % self.moe_freq == 0

    def describe(self):
        n_moe = sum(self.is_moe(i) for i in range(self.layers))
        rope = f"{self.rope_type} af={self.attention_factor:.6g} mscale2={self.mscale2:.6g}"
        if self.rope_type == "yarn":
            rope += f" low/high={self.yarn_low_high}"
        return (f"{self.arch} ({self.variant}): H={self.hidden} L={self.layers} heads={self.heads} "
                f"q_rank={self.q_rank} kv_rank={self.kv_rank} nope/rope/v={self.nope_dim}/{self.rope_dim}/"
                f"{self.v_dim} E={self.experts} k={self.top_k} groups={self.topk_group}/{self.n_group} "
                f"shared={self.n_shared} scale={self.scale} norm_topk={self.norm_topk} moe_layers={n_moe} "
                f"rope=[{rope}] interleave={self.interleave} l4={self.l4_beta}/{self.l4_orig} "
                f"eps={self.eps}/{self.lora_eps} tie={self.tie} vocab={self.vocab}")


# --------------------------------------------------------------------------------------------------
# math (float64)
# --------------------------------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def swiglu(x, g, u, d):
    a = linear(x, g)
    return linear(a * torch.sigmoid(a) * linear(x, u), d)


def apply_rope(x, cos, sin, interleave):
    """x [T, ..., d]; cos/sin [T, d/2] (already times attention_factor)."""
    shape = [x.shape[0]] + [1] * (x.dim() - 2) + [cos.shape[1]]
    c, s = cos.view(shape), sin.view(shape)
    if interleave:
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)
    h = x.shape[-1] // 2
    x0, x1 = x[..., :h], x[..., h:]
    return torch.cat((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1)


def mla(spec, st, layer, x, cos, sin, q_scale, mask):
    T, H = x.shape[0], spec.heads
    b = f"model.layers.{layer}.self_attn."
    bias = (lambda n: st.get(b + n + ".bias")) if spec.attention_bias else (lambda n: None)
    if spec.q_rank is None:
        q = linear(x, st.get(b + "q_proj.weight"))
    else:
        qa = linear(x, st.get(b + "q_a_proj.weight"), bias("q_a_proj"))
        q = linear(rms_norm(qa, st.get(b + "q_a_layernorm.weight"), spec.lora_eps), st.get(b + "q_b_proj.weight"))
    q = q.view(T, H, spec.qk_dim)
    q_nope, q_pe = q[..., :spec.nope_dim], q[..., spec.nope_dim:]
    kv_a = linear(x, st.get(b + "kv_a_proj_with_mqa.weight"), bias("kv_a_proj_with_mqa"))
    c_kv, k_pe = kv_a[:, :spec.kv_rank], kv_a[:, spec.kv_rank:]
    kv = linear(rms_norm(c_kv, st.get(b + "kv_a_layernorm.weight"), spec.lora_eps), st.get(b + "kv_b_proj.weight"))
    kv = kv.view(T, H, spec.nope_dim + spec.v_dim)
    k_nope, v = kv[..., :spec.nope_dim], kv[..., spec.nope_dim:]
    q_pe = apply_rope(q_pe, cos, sin, spec.interleave)
    k_pe = apply_rope(k_pe, cos, sin, spec.interleave)                     # [T, rope], one shared head
    q = torch.cat((q_nope, q_pe), dim=-1)
    if q_scale is not None:
        q = q * q_scale[:, None, None]                                      # llama-4 scaling, after RoPE
    k = torch.cat((k_nope, k_pe[:, None, :].expand(T, H, spec.rope_dim)), dim=-1)
    scaling = spec.qk_dim ** -0.5 * spec.mscale2
    scores = torch.einsum("qhd,khd->hqk", q, k) * scaling
    p = torch.softmax(scores.masked_fill(~mask[None], float("-inf")), dim=-1)
    out = torch.einsum("hqk,khd->qhd", p, v).reshape(T, H * spec.v_dim)
    return linear(out, st.get(b + "o_proj.weight"), bias("o_proj"))


def _ranked_topk(scores, k):
    """Indices of the k largest per row, descending, ties to the lower index (stable sort)."""
    order = torch.sort(-scores, dim=-1, stable=True)[1]
    return order[:, :k]


def route(spec, logits, bias):
    """(idx [T,k], w [T,k], n_ambiguous). n_ambiguous: tokens where the group-mask fill value decides."""
    T, E = logits.shape
    G, per = spec.n_group, E // spec.n_group
    if spec.variant == "mistral":
        s = torch.softmax(logits, dim=-1)
        choice = s
        group_score = s.view(T, G, per).max(dim=-1).values
    else:
        s = torch.sigmoid(logits)
        choice = s + bias[None, :]
        group_score = choice.view(T, G, per).topk(2, dim=-1)[0].sum(dim=-1)
    n_amb = 0
    if G > 1:
        keep_g = _ranked_topk(group_score, spec.topk_group)
        keep = torch.zeros(T, G, dtype=torch.bool)
        keep.scatter_(1, keep_g, True)
        keep = keep[:, :, None].expand(T, G, per).reshape(T, E)
        fill = -math.inf if spec.variant == "mistral" else spec.group_mask_fill
        masked = choice.masked_fill(~keep, fill)
        if spec.variant != "mistral":
            alt = choice.masked_fill(~keep, 0.0 if fill != 0.0 else -math.inf)
            a = _ranked_topk(masked, spec.top_k).sort(dim=-1)[0]
            b2 = _ranked_topk(alt, spec.top_k).sort(dim=-1)[0]
            n_amb = int((a != b2).any(dim=-1).sum())
        choice = masked
    idx = _ranked_topk(choice, spec.top_k)
    w = s.gather(1, idx)
    if spec.norm_topk:
        w = w / (w.sum(dim=-1, keepdim=True) + (0.0 if spec.variant == "mistral" else 1e-20))
    return idx, w * spec.scale, n_amb


def moe(spec, st, layer, x):
    b = f"model.layers.{layer}.mlp."
    logits = linear(x, st.get(b + "gate.weight"))
    if logits.shape[1] != spec.experts:
        raise SystemExit(f"{b}gate.weight: {logits.shape[1]} experts, config says {spec.experts}")
    bias_name = b + "gate.e_score_correction_bias"
    if spec.variant == "mistral":
        if bias_name in st:
            raise SystemExit(f"{bias_name} present, but MistralLarge3 (softmax routing) has no correction bias")
        bias = None
    else:
        if bias_name not in st:
            raise SystemExit(f"{bias_name} missing (noaux_tc routing needs it)")
        bias = st.get(bias_name)
    idx, w, n_amb = route(spec, logits, bias)
    out = torch.zeros_like(x)
    for e in torch.unique(idx).tolist():
        tok, slot = torch.where(idx == e)
        g, u, d = (st.get(f"{b}experts.{e}.{n}_proj.weight") for n in ("gate", "up", "down"))
        out.index_add_(0, tok, swiglu(x[tok], g, u, d) * w[tok, slot, None])
    if spec.n_shared:
        out = out + swiglu(x, *(st.get(f"{b}shared_experts.{n}_proj.weight") for n in ("gate", "up", "down")))
    return out, idx, w, n_amb


def forward(spec, st, tokens, save, log):
    """Logits [T, vocab] float64. save(name, array) writes a dump file; log(msg) prints a warning."""
    T = len(tokens)
    emb_name = "model.embed_tokens.weight"
    if st.shape(emb_name) != (spec.vocab, spec.hidden):
        raise SystemExit(f"{emb_name}: shape {st.shape(emb_name)}, expected {(spec.vocab, spec.hidden)}")
    h = torch.stack([st.get(emb_name, t, t + 1)[0] for t in tokens])
    save("embed.npy", h)
    pos = torch.arange(T, dtype=F64)
    ang = pos[:, None] * spec.inv_freq[None, :]
    cos, sin = ang.cos() * spec.attention_factor, ang.sin() * spec.attention_factor
    q_scale = None
    if spec.l4_beta is not None:
        q_scale = 1 + spec.l4_beta * torch.log(1 + torch.floor(pos / spec.l4_orig))
    mask = torch.arange(T)[None, :] <= torch.arange(T)[:, None]
    for layer in range(spec.layers):
        b = f"model.layers.{layer}."
        x = rms_norm(h, st.get(b + "input_layernorm.weight"), spec.eps)
        h = h + mla(spec, st, layer, x, cos, sin, q_scale, mask)
        x = rms_norm(h, st.get(b + "post_attention_layernorm.weight"), spec.eps)
        if spec.is_moe(layer):
            y, idx, w, n_amb = moe(spec, st, layer, x)
            if n_amb:
                log(f"layer {layer}: {n_amb} token(s) route differently with a -inf group mask than with "
                    f"transformers' 0.0 (fewer than top_k kept experts have a positive biased score)")
            save(f"layer{layer:03d}.topk_idx.npy", idx.int())
            save(f"layer{layer:03d}.topk_w.npy", w)
        else:
            y = swiglu(x, *(st.get(f"{b}mlp.{n}_proj.weight") for n in ("gate", "up", "down")))
        h = h + y
        save(f"layer{layer:03d}.hidden.npy", h)
    h = rms_norm(h, st.get("model.norm.weight"), spec.eps)
    save("final_norm.npy", h)
    head = emb_name if spec.tie else "lm_head.weight"
    if st.shape(head) != (spec.vocab, spec.hidden):
        raise SystemExit(f"{head}: shape {st.shape(head)}, expected {(spec.vocab, spec.hidden)}")
    logits = torch.empty(T, spec.vocab, dtype=F64)
    for r in range(0, spec.vocab, 16384):
        r1 = min(r + 16384, spec.vocab)
        logits[:, r:r1] = h @ st.get(head, r, r1).T
    return logits
