#!/usr/bin/python3
"""Independent float64 reference forward pass for moerack's golden logits.

usage: /usr/bin/python3 tests/reference/reference.py MODEL_DIR --tokens 1,2,3 --out FILE.npy [--dump DIR]

Reads a Hugging Face checkpoint (config.json + model.safetensors, or shards listed in
model.safetensors.index.json; tensors in BF16, F16, F32, F64 or block-FP8 E4M3), runs ONE causal forward pass over the
given token ids at positions 0..n-1 (batch 1, no padding, no KV cache) and writes the logits of every
position as a float32 .npy of shape [n_tokens, vocab_size]. Everything is computed in float64.

With --dump DIR it also writes, per layer L (zero padded to 3 digits), so that a C++ test can point at
the first layer that disagrees:
  embed.npy                    [T, H]  float32, token embeddings (input of layer 0)
  layerLLL.hidden.npy          [T, H]  float32, residual stream after layer L
  layerLLL.topk_idx.npy        [T, k]  int32, selected experts (MoE layers only), in torch.topk order
                                       (DeepSeek-V3 family: descending selection score, ties to lower id)
  layerLLL.topk_w.npy          [T, k]  float32, their routing weights (after renormalisation if any)
  final_norm.npy               [T, H]  float32, model.norm output (input of lm_head)

Dependencies: Debian's python3-torch (1.13) and python3-numpy only. No transformers, no safetensors
package: the safetensors format is parsed here by hand.

Supported architectures (config.json `architectures[0]`, falling back to `model_type`):
  Qwen3MoeForCausalLM / qwen3_moe  and  MixtralForCausalLM / mixtral (conventions below), and the DeepSeek-V3
  family: DeepseekV3ForCausalLM / deepseek_v3 (DeepSeek-V3, R1), KimiK2ForCausalLM / kimi_k2 (Kimi K2 ships
  architectures DeepseekV3ForCausalLM with model_type kimi_k2), MistralLarge3ForCausalLM: MLA attention, YaRN,
  sigmoid/noaux_tc or softmax routing, shared experts, llama-4 query scaling; its conventions and their sources
  are listed in deepseek_v3.py (same directory), which this script imports.

Weights: BF16, F16, F32, F64, and F8_E4M3 with a sibling scale, dequantized on read (DeepSeek block FP8:
`x.weight` F8_E4M3 [N, K] + `x.weight_scale_inv` F32 [ceil(N/128), ceil(K/128)], w = fp8 * scale_inv[block];
block size from quantization_config.weight_block_size; see SafeTensorsDir). E4M3: bias 7, subnormals, no
infinities, 0x7f/0xff NaN (refused), max 448.

Every convention below was checked against Hugging Face transformers' modeling code
(src/transformers/models/qwen3_moe/modeling_qwen3_moe.py, configuration_qwen3_moe.py,
src/transformers/models/mixtral/modeling_mixtral.py, modular_mixtral.py, configuration_mixtral.py,
src/transformers/masking_utils.py). Where transformers works in bf16/fp32, this script uses float64:
it is the exact math, not a bit-exact emulation of a bf16 run.

Common to both (transformers):
  * Decoder layer (pre-norm):  h = h + o_proj(Attn(input_layernorm(h)));
                               h = h + FFN(post_attention_layernorm(h)).
    After the last layer: model.norm, then lm_head (Qwen3-MoE: embed_tokens.weight when
    tie_word_embeddings, which defaults to false; Mixtral the same, default false).
  * RMSNorm (Qwen3MoeRMSNorm / MixtralRMSNorm):
        x32 = x.to(float32); x32 = x32 * rsqrt(mean(x32^2, -1) + eps); return weight * x32.to(input_dtype)
    i.e. the normalisation is done in fp32, cast back to the activation dtype, THEN multiplied by the
    weight (no "+1" offset on the weight). eps = config.rms_norm_eps (defaults: Qwen3-MoE 1e-6,
    Mixtral 1e-5). Here: all float64.
  * RoPE (compute_default_rope_parameters + apply_rotary_pos_emb): NeoX / half-split layout,
        inv_freq[j] = 1 / theta^(2j/d), j = 0..d/2-1, d = head_dim (partial_rotary_factor 1)
        freqs = pos * inv_freq; emb = cat(freqs, freqs); cos = cos(emb), sin = sin(emb)
        q' = q*cos + rotate_half(q)*sin, rotate_half(x) = cat(-x[d/2:], x[:d/2])
    so pairs are (i, i + d/2). transformers computes inv_freq/cos/sin in fp32 (autocast disabled) and
    casts cos/sin to the activation dtype; here float64. theta = config.rope_theta (or
    rope_parameters.rope_theta in newer configs); defaults Qwen3-MoE 10000.0, Mixtral 1e6. Positions are
    0..T-1 (cache_position). rope scaling (yarn etc.) is refused here.
  * Attention (eager_attention_forward): GQA with repeat_kv (query head h uses kv head
    h // (n_heads / n_kv_heads)), scores = q.k^T * head_dim^-0.5, + mask, softmax (fp32 in transformers),
    times v, heads concatenated in order, then o_proj.
  * Causal mask (masking_utils.causal_mask_function): key k visible from query q iff k <= q.
    Sliding window (masking_utils.sliding_window_overlay, AND-ed with causal): k > q - W, i.e.
    q - k < W: a query sees itself and the W-1 keys before it (W keys in all).
  * SwiGLU: down(silu(gate(x)) * up(x)), silu(z) = z * sigmoid(z) (hidden_act must be "silu").
  * Router: router_logits = gate(x) (a Linear, no bias, in the model dtype);
        p = softmax(router_logits, dim=-1, dtype=float32) over ALL experts;
        (w, idx) = torch.topk(p, k);  renormalise w /= sum(w) (Mixtral: always;
        Qwen3-MoE: only if norm_topk_prob, default false);  w cast back to the activation dtype;
        out = sum_i w_i * expert_idx_i(x).  No shared expert, no router bias, no capacity/dropping.
    With random float weights exact ties in p are practically impossible; torch.topk decides them.

Qwen3MoeForCausalLM specifics (modeling_qwen3_moe.py, configuration_qwen3_moe.py):
  * head_dim = config.head_dim, else hidden_size // num_attention_heads.
  * q = q_norm(q_proj(x).view(T, n_heads, head_dim)), k = k_norm(k_proj(x).view(T, n_kv, head_dim)):
    per-head RMSNorm over head_dim (weights [head_dim], eps = rms_norm_eps), applied BEFORE RoPE.
    v has no norm. q/k/v/o_proj carry a bias iff attention_bias (default false).
  * Sparse-layer rule (Qwen3MoeDecoderLayer.__init__):
        layer_idx NOT in mlp_only_layers  AND  num_experts > 0  AND  (layer_idx + 1) % decoder_sparse_step == 0
        -> Qwen3MoeSparseMoeBlock: router mlp.gate.weight [E, H],
           experts mlp.experts.{e}.{gate,up,down}_proj.weight with moe_intermediate_size;
        otherwise -> dense Qwen3MoeMLP mlp.{gate,up,down}_proj.weight with intermediate_size.
    Defaults: mlp_only_layers [] (None -> []), decoder_sparse_step 1, so with defaults every layer is MoE.
  * Sliding window: the config keeps sliding_window only when use_sliding_window is true (default false).
    How it is applied to layers has changed across transformers versions (all layers vs. layers
    >= max_window_layers), and no released Qwen3-MoE checkpoint enables it, so it is refused here.

MixtralForCausalLM specifics (modeling_mixtral.py, configuration_mixtral.py):
  * head_dim = config.head_dim or hidden_size // num_attention_heads; no q/k norm; no attention bias.
  * Every layer is MoE: block_sparse_moe.gate.weight [E, H]; experts block_sparse_moe.experts.{e}.w1
    (gate), .w3 (up), .w2 (down), intermediate_size; E = num_local_experts, k = num_experts_per_tok.
  * Top-k weights ALWAYS renormalised (MixtralSparseMoeBlock: routing_weights /= sum); this equals a
    softmax over the k selected logits.
  * sliding_window (default None) applies to every layer when set: create_sliding_window_causal_mask,
    q - k < W as above. num_key_value_heads None -> num_attention_heads.
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch

import deepseek_v3  # same directory: the DeepSeek-V3 family (DeepSeek-V3/R1, Kimi K2, Mistral Large 3)

F64 = torch.float64


# --------------------------------------------------------------------------------------------------
# safetensors, by hand
# --------------------------------------------------------------------------------------------------

def e4m3_table():
    """float64 value of every F8_E4M3 ("e4m3fn") byte: 1 sign, 4 exponent (bias 7), 3 mantissa bits.

    E = 1..15: (-1)^s 2^(E-7) (1 + M/8); E = 0: subnormal (-1)^s 2^-6 M/8; no infinities; S.1111.111
    (0x7f, 0xff) is NaN, so the largest finite value is S.1111.110 = 448.
    """
    t = np.empty(256, dtype=np.float64)
    for byte in range(256):
        s, e, m = byte >> 7, (byte >> 3) & 0xF, byte & 7
        if e == 15 and m == 7:
            v = float("nan")
        elif e == 0:
            v = m / 8 * 2.0 ** -6
        else:
            v = (1 + m / 8) * 2.0 ** (e - 7)
        t[byte] = -v if s else v
    return t


class SafeTensorsDir:
    """Lazy reader over a checkpoint directory: one model.safetensors or shards from the index.

    Layout per file: u64 little-endian header length N, N bytes of JSON header, then the data section;
    data_offsets [begin, end) are relative to the start of the data section. Row-major, little-endian.

    F8_E4M3 tensors are dequantized on read with their sibling scale, which is a MULTIPLIER despite its
    name: DeepSeek block FP8 stores `<name>_scale_inv` (e.g. `x.weight_scale_inv`), compressed-tensors FP8
    (Mistral) stores `x.weight_scale`. A scale of shape [] or [1] is per tensor; a 2-D scale
    [ceil(N/bn), ceil(K/bn)] is per (bn x bk) block, with [bn, bk] = quantization_config.weight_block_size
    (default [128, 128]): w[n, k] = fp8[n, k] * scale[n // bn, k // bk], the last block row/column partial.
    """

    _NP = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32, "F64": np.float64, "F8_E4M3": np.uint8}
    _E4M3 = e4m3_table()

    def __init__(self, model_dir, block=(128, 128)):
        self.block = tuple(block)
        idx = os.path.join(model_dir, "model.safetensors.index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        elif os.path.exists(os.path.join(model_dir, "model.safetensors")):
            files = ["model.safetensors"]
        else:
            files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
            if not files:
                raise SystemExit(f"{model_dir}: no model.safetensors, no index, no *.safetensors")
        self.tensors = {}
        for fn in files:
            path = os.path.join(model_dir, fn)
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > 100_000_000:
                    raise SystemExit(f"{path}: header length {n} too large")
                header = json.loads(f.read(n).decode("utf-8"))
            size = os.path.getsize(path)
            data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n, shape=(size - 8 - n,))
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if name in self.tensors:
                    raise SystemExit(f"{path}: tensor {name} appears twice")
                if info["dtype"] not in self._NP:
                    raise SystemExit(f"{path}: {name}: dtype {info['dtype']} not supported")
                self.tensors[name] = (data, info, path)

    def __contains__(self, name):
        return name in self.tensors

    def shape(self, name):
        return tuple(self._info(name)[1]["shape"])

    def _info(self, name):
        if name not in self.tensors:
            raise SystemExit(f"tensor {name} not found in checkpoint")
        return self.tensors[name]

    def _raw(self, name, row_begin=None, row_end=None):
        """(numpy array as stored, dtype string), optionally rows [row_begin, row_end) only."""
        data, info, path = self._info(name)
        dt, shape = info["dtype"], list(info["shape"])
        begin, end = info["data_offsets"]
        npdt = np.dtype(self._NP[dt]).newbyteorder("<")
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * npdt.itemsize:
            raise SystemExit(f"{path}: {name}: {end - begin} bytes for shape {shape} {dt}")
        if row_begin is not None:
            row = count // shape[0] if shape[0] else 0
            begin += row_begin * row * npdt.itemsize
            end = begin + (row_end - row_begin) * row * npdt.itemsize
            shape[0] = row_end - row_begin
        # copy() also fixes alignment: the data section need not be aligned for the dtype
        return np.frombuffer(data[begin:end].tobytes(), dtype=npdt).reshape(shape), dt

    def get(self, name, row_begin=None, row_end=None):
        """float64 torch tensor; optionally only rows [row_begin, row_end) of the first dimension."""
        raw, dt = self._raw(name, row_begin, row_end)
        if dt == "BF16":  # bf16 = upper 16 bits of an IEEE f32
            arr = (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        elif dt == "F8_E4M3":
            arr = self._dequant_fp8(name, row_begin, row_end)
        else:
            arr = raw.astype(np.float64)
        return torch.from_numpy(arr)

    def _dequant_fp8(self, name, row_begin, row_end):
        raw, _ = self._raw(name)
        w = self._E4M3[raw]
        scale_name = next((n for n in (name + "_scale_inv", name + "_scale") if n in self.tensors), None)
        if scale_name is None:
            raise SystemExit(f"{name}: F8_E4M3 without {name}_scale_inv or {name}_scale")
        scale = self.get(scale_name).numpy()
        if scale.size == 1:
            w = w * float(scale.reshape(-1)[0])
        else:
            if w.ndim != 2 or scale.ndim != 2:
                raise SystemExit(f"{name}: block scales need a 2-D weight and a 2-D {scale_name}")
            (n, k), (bn, bk) = w.shape, self.block
            want = (-(-n // bn), -(-k // bk))
            if scale.shape != want:
                raise SystemExit(f"{scale_name}: shape {scale.shape}, expected {want} for {name} {w.shape} "
                                 f"with weight_block_size {[bn, bk]}")
            w = w * np.repeat(np.repeat(scale, bn, axis=0)[:n], bk, axis=1)[:, :k]
        if np.isnan(w).any():
            raise SystemExit(f"{name}: F8_E4M3 NaN (0x7f/0xff) in the weights")
        return w if row_begin is None else w[row_begin:row_end]


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------

class Spec:
    """Normalised configuration plus the architecture's weight names."""

    def __init__(self, cfg):
        archs = cfg.get("architectures") or []
        arch = archs[0] if archs else None
        mt = cfg.get("model_type")
        if arch == "Qwen3MoeForCausalLM" or (arch is None and mt == "qwen3_moe"):
            self.arch = "qwen3_moe"
        elif arch == "MixtralForCausalLM" or (arch is None and mt == "mixtral"):
            self.arch = "mixtral"
        elif arch is not None and mt in ("qwen3_moe", "mixtral"):
            self.arch = mt
        else:
            raise SystemExit(f"unsupported architecture {arch!r} / model_type {mt!r}")
        q = self.arch == "qwen3_moe"

        def get(key, default):
            v = cfg.get(key)
            return default if v is None else v

        # defaults are the config classes' defaults in transformers
        self.vocab = get("vocab_size", 151936 if q else 32000)
        self.hidden = get("hidden_size", 2048 if q else 4096)
        self.layers = get("num_hidden_layers", 24 if q else 32)
        self.heads = get("num_attention_heads", 32)
        self.kv_heads = get("num_key_value_heads", self.heads)
        self.head_dim = cfg.get("head_dim") or self.hidden // self.heads
        self.eps = float(get("rms_norm_eps", 1e-6 if q else 1e-5))
        self.tie = bool(get("tie_word_embeddings", False))
        act = get("hidden_act", "silu")
        if act != "silu":
            raise SystemExit(f"hidden_act {act!r} not supported (silu only)")
        if self.heads % self.kv_heads:
            raise SystemExit(f"num_attention_heads {self.heads} not a multiple of kv heads {self.kv_heads}")

        rp = cfg.get("rope_parameters") or {}
        rs = cfg.get("rope_scaling") or {}
        for d in (rp, rs):
            typ = d.get("rope_type", d.get("type", "default"))
            if typ != "default":
                raise SystemExit(f"rope type {typ!r} not supported by this reference")
        if float(get("partial_rotary_factor", 1.0)) != 1.0:
            raise SystemExit("partial_rotary_factor != 1 not supported")
        theta = cfg.get("rope_theta")
        if theta is None:
            theta = rp.get("rope_theta", 10000.0 if q else 1e6)
        self.rope_theta = float(theta)

        if q:
            self.attention_bias = bool(get("attention_bias", False))
            self.qk_norm = True
            if get("use_sliding_window", False):
                raise SystemExit("use_sliding_window=true for qwen3_moe is not supported (see header comment)")
            self.sliding_window = None
            self.experts = get("num_experts", 128)
            self.top_k = get("num_experts_per_tok", 8)
            self.norm_topk = bool(get("norm_topk_prob", False))
            self.moe_inter = get("moe_intermediate_size", 768)
            self.dense_inter = get("intermediate_size", 6144)
            self.mlp_only = list(get("mlp_only_layers", []))
            self.sparse_step = get("decoder_sparse_step", 1)
        else:
            self.attention_bias = False
            self.qk_norm = False
            self.sliding_window = cfg.get("sliding_window")  # None -> full causal
            self.experts = get("num_local_experts", 8)
            self.top_k = get("num_experts_per_tok", 2)
            self.norm_topk = True
            self.moe_inter = get("intermediate_size", 14336)
            self.dense_inter = None
            self.mlp_only = []
            self.sparse_step = 1

    def is_sparse(self, layer):
        # Qwen3MoeDecoderLayer: (layer_idx not in mlp_only_layers) and
        #   (num_experts > 0 and (layer_idx + 1) % decoder_sparse_step == 0). Mixtral: always sparse.
        if self.arch == "mixtral":
            return True
        return (layer not in self.mlp_only) and self.experts > 0 and (layer + 1) % self.sparse_step == 0

    def moe_names(self, layer):
        """(router name, fn(e) -> (gate, up, down) names)."""
        if self.arch == "mixtral":
            b = f"model.layers.{layer}.block_sparse_moe."
            return b + "gate.weight", lambda e: tuple(f"{b}experts.{e}.{w}.weight" for w in ("w1", "w3", "w2"))
        b = f"model.layers.{layer}.mlp."
        return b + "gate.weight", lambda e: tuple(f"{b}experts.{e}.{w}_proj.weight" for w in ("gate", "up", "down"))

    def describe(self):
        n_sparse = sum(self.is_sparse(i) for i in range(self.layers))
        return (f"{self.arch}: H={self.hidden} L={self.layers} heads={self.heads}/{self.kv_heads} "
                f"head_dim={self.head_dim} E={self.experts} k={self.top_k} norm_topk={self.norm_topk} "
                f"moe_layers={n_sparse} theta={self.rope_theta} eps={self.eps} tie={self.tie} "
                f"window={self.sliding_window} vocab={self.vocab}")


# --------------------------------------------------------------------------------------------------
# math (float64 throughout)
# --------------------------------------------------------------------------------------------------

def rms_norm(x, w, eps):
    # HF: normalise in fp32, cast back, multiply by weight (no +1). Here all float64.
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def silu(z):
    return z * torch.sigmoid(z)


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


def rope_cos_sin(n_tokens, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=F64) / head_dim))
    pos = torch.arange(n_tokens, dtype=F64)
    freqs = pos[:, None] * inv_freq[None, :]          # [T, d/2]
    emb = torch.cat((freqs, freqs), dim=-1)           # [T, d]
    return emb.cos(), emb.sin()


def attention_mask(n_tokens, window):
    q = torch.arange(n_tokens)[:, None]
    k = torch.arange(n_tokens)[None, :]
    allowed = k <= q                                   # causal_mask_function
    if window is not None:
        allowed &= k > q - window                      # sliding_window_overlay: q - k < window
    return allowed


def attention(spec, st, layer, x, cos, sin, mask):
    T = x.shape[0]
    b = f"model.layers.{layer}.self_attn."
    bias = (lambda n: st.get(b + n + ".bias")) if spec.attention_bias else (lambda n: None)
    q = linear(x, st.get(b + "q_proj.weight"), bias("q_proj")).view(T, spec.heads, spec.head_dim)
    k = linear(x, st.get(b + "k_proj.weight"), bias("k_proj")).view(T, spec.kv_heads, spec.head_dim)
    v = linear(x, st.get(b + "v_proj.weight"), bias("v_proj")).view(T, spec.kv_heads, spec.head_dim)
    if spec.qk_norm:  # per-head RMSNorm over head_dim, before RoPE
        q = rms_norm(q, st.get(b + "q_norm.weight"), spec.eps)
        k = rms_norm(k, st.get(b + "k_norm.weight"), spec.eps)
    c, s = cos[:, None, :], sin[:, None, :]
    q = q * c + rotate_half(q) * s
    k = k * c + rotate_half(k) * s
    group = spec.heads // spec.kv_heads
    k = k.repeat_interleave(group, dim=1)              # repeat_kv: q head h -> kv head h // group
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) * spec.head_dim ** -0.5
    scores = scores.masked_fill(~mask[None], float("-inf"))
    p = torch.softmax(scores, dim=-1)
    out = torch.einsum("hqk,khd->qhd", p, v).reshape(T, spec.heads * spec.head_dim)
    return linear(out, st.get(b + "o_proj.weight"), bias("o_proj"))


def swiglu(x, gate_w, up_w, down_w):
    return linear(silu(linear(x, gate_w)) * linear(x, up_w), down_w)


def moe(spec, st, layer, x):
    router, expert_names = spec.moe_names(layer)
    logits = linear(x, st.get(router))                 # [T, E]
    if logits.shape[1] != spec.experts:
        raise SystemExit(f"{router}: {logits.shape[1]} experts, config says {spec.experts}")
    p = torch.softmax(logits, dim=-1)                  # over all experts
    w, idx = torch.topk(p, spec.top_k, dim=-1)         # [T, k], descending
    if spec.norm_topk:
        w = w / w.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(x)
    for e in torch.unique(idx).tolist():               # only the experts that are hit are loaded
        tok, slot = torch.where(idx == e)
        g, u, d = (st.get(n) for n in expert_names(e))
        out.index_add_(0, tok, swiglu(x[tok], g, u, d) * w[tok, slot, None])
    return out, idx, w


def dense_mlp(st, layer, x):
    b = f"model.layers.{layer}.mlp."
    return swiglu(x, st.get(b + "gate_proj.weight"), st.get(b + "up_proj.weight"), st.get(b + "down_proj.weight"))


def forward(spec, st, tokens, dump=None):
    T = len(tokens)
    for t in tokens:
        if not 0 <= t < spec.vocab:
            raise SystemExit(f"token id {t} outside [0, {spec.vocab})")
    emb_name = "model.embed_tokens.weight"
    if st.shape(emb_name) != (spec.vocab, spec.hidden):
        raise SystemExit(f"{emb_name}: shape {st.shape(emb_name)}, expected {(spec.vocab, spec.hidden)}")
    h = torch.stack([st.get(emb_name, t, t + 1)[0] for t in tokens])
    save = (lambda n, a: np.save(os.path.join(dump, n), a)) if dump else (lambda n, a: None)
    save("embed.npy", h.numpy().astype(np.float32))
    cos, sin = rope_cos_sin(T, spec.head_dim, spec.rope_theta)
    mask = attention_mask(T, spec.sliding_window)
    for layer in range(spec.layers):
        b = f"model.layers.{layer}."
        x = rms_norm(h, st.get(b + "input_layernorm.weight"), spec.eps)
        h = h + attention(spec, st, layer, x, cos, sin, mask)
        x = rms_norm(h, st.get(b + "post_attention_layernorm.weight"), spec.eps)
        if spec.is_sparse(layer):
            y, idx, w = moe(spec, st, layer, x)
            save(f"layer{layer:03d}.topk_idx.npy", idx.numpy().astype(np.int32))
            save(f"layer{layer:03d}.topk_w.npy", w.numpy().astype(np.float32))
        else:
            y = dense_mlp(st, layer, x)
        h = h + y
        save(f"layer{layer:03d}.hidden.npy", h.numpy().astype(np.float32))
    h = rms_norm(h, st.get("model.norm.weight"), spec.eps)
    save("final_norm.npy", h.numpy().astype(np.float32))
    head = emb_name if spec.tie else "lm_head.weight"
    if st.shape(head) != (spec.vocab, spec.hidden):
        raise SystemExit(f"{head}: shape {st.shape(head)}, expected {(spec.vocab, spec.hidden)}")
    logits = torch.empty(T, spec.vocab, dtype=F64)
    chunk = 16384  # rows of the output matrix at a time, to bound memory on big vocabularies
    for r in range(0, spec.vocab, chunk):
        r1 = min(r + chunk, spec.vocab)
        logits[:, r:r1] = h @ st.get(head, r, r1).T
    return logits


def main():
    ap = argparse.ArgumentParser(description="float64 reference logits (Qwen3-MoE, Mixtral, DeepSeek-V3 family)")
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids, e.g. 1,2,3")
    ap.add_argument("--out", required=True, help="output .npy, float32 [n_tokens, vocab]")
    ap.add_argument("--dump", default=None, help="directory for per-layer activations and router choices")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--group-mask", choices=("zero", "neg-inf"), default="zero",
                    help="DeepSeek-V3 noaux_tc: value given to experts of dropped groups before the top-k "
                         "(zero = transformers, neg-inf = DeepSeek inference/vLLM/llama.cpp)")
    ap.add_argument("--lora-eps", choices=("hf", "config"), default="hf",
                    help="DeepSeek-V3 family: eps of q_a_layernorm/kv_a_layernorm (hf = 1e-6 as transformers and "
                         "DeepSeek's code; config = rms_norm_eps as vLLM and llama.cpp; MistralLarge3 always config)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tokens = [int(t) for t in a.tokens.split(",") if t.strip()]
    if not tokens:
        raise SystemExit("--tokens is empty")
    with open(os.path.join(a.model_dir, "config.json")) as f:
        cfg = json.load(f)
    block = (cfg.get("quantization_config") or {}).get("weight_block_size") or (128, 128)
    st = SafeTensorsDir(a.model_dir, block)
    if a.dump:
        os.makedirs(a.dump, exist_ok=True)
    t0 = time.time()
    with torch.no_grad():
        if deepseek_v3.detect(cfg):
            spec = deepseek_v3.DeepseekSpec(cfg)
            spec.group_mask_fill = 0.0 if a.group_mask == "zero" else float("-inf")
            if a.lora_eps == "config":
                spec.lora_eps = spec.eps
            for t in tokens:
                if not 0 <= t < spec.vocab:
                    raise SystemExit(f"token id {t} outside [0, {spec.vocab})")
            save = ((lambda n, x: np.save(os.path.join(a.dump, n), x.numpy().astype(
                np.int32 if x.dtype == torch.int32 else np.float32))) if a.dump else (lambda n, x: None))
            logits = deepseek_v3.forward(spec, st, tokens, save, lambda m: print("warning: " + m, file=sys.stderr))
        else:
            spec = Spec(cfg)
            logits = forward(spec, st, tokens, a.dump)
    np.save(a.out, logits.numpy().astype(np.float32))
    print(f"{spec.describe()}\nwrote {a.out} {tuple(logits.shape)} in {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
