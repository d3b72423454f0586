"""Qwen3-MoE decoder in plain PyTorch (1.13), its Hugging Face export and held-out perplexity.

Shared by train.py and eval_ppl.py. The math is transformers' modeling_qwen3_moe.py (the conventions are listed
and cross-checked in tests/reference/reference.py):
  h = h + o_proj(Attn(input_layernorm(h)));  h = h + MoE(post_attention_layernorm(h));  logits = norm(h) E^T
  Attn: q/k per-head RMSNorm over head_dim BEFORE NeoX (half-split) RoPE, GQA (q head i uses kv head
        i // (heads / kv_heads)), causal softmax(q k^T / sqrt(head_dim)) v.
  MoE:  p = softmax(router(x)) over all experts; top-k of p, renormalised (norm_topk_prob true);
        out = sum_i w_i * down(silu(gate(x)) * up(x)) of the chosen experts. No shared expert.
  RMSNorm: w * x / sqrt(mean(x^2) + eps), no +1 offset. Tied embeddings: lm_head = embed_tokens.
Training adds the Switch-Transformer load-balancing loss per MoE layer, E * sum_e f_e P_e with f_e the share of
the N*k routing slots that went to expert e and P_e the mean router probability of e (transformers'
load_balancing_loss_func; 1 * k when perfectly balanced, here reported divided by k so that balanced = 1).

Experts are stored stacked (gate and up fused: [E, 2I, H]; down [E, H, I]) for speed and written per expert on export, with the HF
names model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def make_config(vocab_size, eos_id, hidden=256, layers=4, heads=4, kv_heads=2, head_dim=64, experts=8, top_k=2,
                moe_inter=256, max_pos=256, rope_theta=10000.0, eps=1e-6, aux_coef=0.01):
    """The config.json of a Qwen3MoeForCausalLM with every field transformers' Qwen3MoeConfig reads."""
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "num_experts": experts,
        "num_experts_per_tok": top_k,
        "moe_intermediate_size": moe_inter,
        "intermediate_size": 4 * moe_inter,  # dense MLP size: unused, every layer is MoE
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "hidden_act": "silu",
        "rms_norm_eps": eps,
        "rope_theta": rope_theta,
        "rope_scaling": None,
        "max_position_embeddings": max_pos,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": layers,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "router_aux_loss_coef": aux_coef,
        "output_router_logits": False,
        "use_cache": True,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "bfloat16",
    }


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        h = c["hidden_size"]
        self.q_proj = nn.Linear(h, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, h, bias=False)
        self.q_norm = RMSNorm(self.head_dim, c["rms_norm_eps"])
        self.k_norm = RMSNorm(self.head_dim, c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin  # cos, sin: [T, head_dim]
        k = k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) * self.head_dim ** -0.5
        scores = scores.masked_fill(mask, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v  # [B, heads, T, head_dim]
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.heads * self.head_dim))


class SparseMoe(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, i, e = c["hidden_size"], c["moe_intermediate_size"], c["num_experts"]
        self.num_experts, self.top_k, self.norm_topk = e, c["num_experts_per_tok"], c["norm_topk_prob"]
        self.gate = nn.Linear(h, e, bias=False)
        self.inter = i
        self.w_gate_up = nn.Parameter(torch.empty(e, 2 * i, h))  # rows [0, i): gate_proj, [i, 2i): up_proj
        self.w_down = nn.Parameter(torch.empty(e, h, i))

    def forward(self, x):
        """x [N, H] -> (out [N, H], balance loss (scalar, 1 when balanced), tokens per expert [E])."""
        n = x.shape[0]
        probs = torch.softmax(self.gate(x), dim=-1)
        w, idx = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk:
            w = w / w.sum(dim=-1, keepdim=True)
        flat = idx.reshape(-1)
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=self.num_experts)
        tokens = order // self.top_k
        weights = w.reshape(-1)[order]
        out = torch.zeros_like(x)
        start = 0
        for e, count in enumerate(counts.tolist()):
            if count == 0:
                continue
            tok = tokens[start:start + count]
            xe = x[tok]
            gu = xe @ self.w_gate_up[e].t()
            he = F.silu(gu[:, :self.inter]) * gu[:, self.inter:]
            out.index_add_(0, tok, (he @ self.w_down[e].t()) * weights[start:start + count, None])
            start += count
        share = counts.to(x.dtype) / (n * self.top_k)  # f_e
        balance = self.num_experts * (share * probs.mean(0)).sum()
        return out, balance, counts


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = SparseMoe(c)

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        B, T, H = h.shape
        y, balance, counts = self.mlp(self.post_attention_layernorm(h).reshape(B * T, H))
        return h + y.view(B, T, H), balance, counts


class Qwen3Moe(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        d, theta = c["head_dim"], float(c["rope_theta"])
        inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        freqs = torch.arange(c["max_position_embeddings"], dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def init_weights(self, std=0.02, seed=0):
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                nn.init.ones_(p)
            else:
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def forward(self, ids):
        """ids [B, T] -> (logits [B, T, V], mean balance loss over layers, tokens per expert [L, E])."""
        T = ids.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        mask = torch.ones(T, T, dtype=torch.bool, device=ids.device).triu(1)  # True = key after query
        h = self.embed_tokens(ids)
        balances, counts = [], []
        for layer in self.layers:
            h, balance, c = layer(h, cos, sin, mask)
            balances.append(balance)
            counts.append(c)
        logits = self.norm(h) @ self.embed_tokens.weight.t()
        return logits, torch.stack(balances).mean(), torch.stack(counts)

    def num_params(self):
        c = self.config
        total = sum(p.numel() for p in self.parameters())
        expert = 3 * c["hidden_size"] * c["moe_intermediate_size"]
        inactive = c["num_hidden_layers"] * (c["num_experts"] - c["num_experts_per_tok"]) * expert
        return total, total - inactive


# --------------------------------------------------------------------------------------------------
# Hugging Face names, safetensors by hand
# --------------------------------------------------------------------------------------------------

def hf_tensors(model):
    """(name, float32 tensor) in the Hugging Face Qwen3MoeForCausalLM layout (no lm_head: tied)."""
    out = [("model.embed_tokens.weight", model.embed_tokens.weight)]
    for i, layer in enumerate(model.layers):
        b = f"model.layers.{i}."
        a = layer.self_attn
        out += [(b + "input_layernorm.weight", layer.input_layernorm.weight),
                (b + "post_attention_layernorm.weight", layer.post_attention_layernorm.weight),
                (b + "self_attn.q_proj.weight", a.q_proj.weight), (b + "self_attn.k_proj.weight", a.k_proj.weight),
                (b + "self_attn.v_proj.weight", a.v_proj.weight), (b + "self_attn.o_proj.weight", a.o_proj.weight),
                (b + "self_attn.q_norm.weight", a.q_norm.weight), (b + "self_attn.k_norm.weight", a.k_norm.weight),
                (b + "mlp.gate.weight", layer.mlp.gate.weight)]
        for e in range(layer.mlp.num_experts):
            i_ = layer.mlp.inter
            out += [(f"{b}mlp.experts.{e}.gate_proj.weight", layer.mlp.w_gate_up[e, :i_]),
                    (f"{b}mlp.experts.{e}.up_proj.weight", layer.mlp.w_gate_up[e, i_:]),
                    (f"{b}mlp.experts.{e}.down_proj.weight", layer.mlp.w_down[e])]
    out.append(("model.norm.weight", model.norm.weight))
    return [(n, t.detach().float().contiguous()) for n, t in out]


def write_safetensors_bf16(path, named_tensors):
    """safetensors: u64 LE header length, JSON header (space-padded to a multiple of 8), then the tensors
    back to back in header order, every byte of the data section covered. BF16 = round-to-nearest-even."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in named_tensors:
        raw = t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def read_safetensors(path):
    """name -> float32 tensor (BF16, F16, F32)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = {"BF16": "<u2", "F16": "<f2", "F32": "<f4"}[info["dtype"]]
        arr = np.frombuffer(data[b:e], dtype=dt).reshape(info["shape"])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(arr.astype(np.float32))
    return out


def load_hf(model_dir):
    """A Qwen3Moe with the weights of an exported (or any matching HF) checkpoint directory."""
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    model = Qwen3Moe(c)
    t = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    with torch.no_grad():
        model.embed_tokens.weight.copy_(t["model.embed_tokens.weight"])
        model.norm.weight.copy_(t["model.norm.weight"])
        for i, layer in enumerate(model.layers):
            b = f"model.layers.{i}."
            a = layer.self_attn
            for mod, name in ((layer.input_layernorm, "input_layernorm"),
                              (layer.post_attention_layernorm, "post_attention_layernorm"),
                              (a.q_proj, "self_attn.q_proj"), (a.k_proj, "self_attn.k_proj"),
                              (a.v_proj, "self_attn.v_proj"), (a.o_proj, "self_attn.o_proj"),
                              (a.q_norm, "self_attn.q_norm"), (a.k_norm, "self_attn.k_norm"),
                              (layer.mlp.gate, "mlp.gate")):
                mod.weight.copy_(t[b + name + ".weight"])
            for e in range(layer.mlp.num_experts):
                i_ = layer.mlp.inter
                layer.mlp.w_gate_up[e, :i_].copy_(t[f"{b}mlp.experts.{e}.gate_proj.weight"])
                layer.mlp.w_gate_up[e, i_:].copy_(t[f"{b}mlp.experts.{e}.up_proj.weight"])
                layer.mlp.w_down[e].copy_(t[f"{b}mlp.experts.{e}.down_proj.weight"])
    return model


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, tokens, ctx, token_bytes, batch_windows=16):
    """Perplexity over non-overlapping windows of ctx tokens (the last one may be shorter; one of a single token
    scores nothing); every token after the first of each window is scored from the positions before it, the
    definition of moerack's `eval`. token_bytes[i]: UTF-8 length of token i. Returns a dict."""
    model.eval()
    windows = [tokens[s:s + ctx] for s in range(0, len(tokens), ctx)]
    windows = [w for w in windows if len(w) >= 2]
    nll, count, nbytes = 0.0, 0, 0
    for i in range(0, len(windows), batch_windows):
        group = windows[i:i + batch_windows]
        for length in sorted(set(len(w) for w in group)):  # equal lengths batch together
            batch = torch.tensor(np.array([w for w in group if len(w) == length], dtype=np.int64))
            logits, _, _ = model(batch)
            logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
            target = batch[:, 1:]
            nll -= logp.gather(-1, target[..., None]).sum().item()
            count += target.numel()
            nbytes += int(token_bytes[target.numpy()].sum())
    return {"windows": len(windows), "scored_tokens": count, "scored_bytes": nbytes, "nll_nats": nll,
            "perplexity": math.exp(nll / count), "bits_per_byte": nll / math.log(2) / nbytes}
