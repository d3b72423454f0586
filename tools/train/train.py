#!/usr/bin/python3
"""Trains a small Qwen3-MoE language model on CPU and exports it in the Hugging Face layout.

usage:
  OMP_WAIT_POLICY=PASSIVE nohup nice -n 19 /usr/bin/python3 tools/train/train.py \\
      --data /tmp/corpus --tokenizer /tmp/corpus/tokenizer.json --out models/moe-tiny-web --minutes 50 \\
      [--ckpt-dir /tmp/train-ckpt] [--resume] > /tmp/train-ckpt/stdout.txt 2>&1 &
  /usr/bin/python3 tools/train/train.py --export-only --ckpt-dir /tmp/train-ckpt --out models/moe-tiny-web ...

--data holds prepare_corpus.py's train.txt and heldout.txt. The training stream is every training document's
tokens followed by <|endoftext|>; each step takes --batch random windows of --ctx + 1 tokens from it (the
offsets of step s come from a generator seeded with (--seed, s), so a resumed run sees the same batches).
Loss = cross entropy + --aux-coef * load-balancing loss (mean over layers, 1 when balanced; qwen3_moe.py).
AdamW (betas 0.9/0.95, weight decay on matrices only), gradient clipping at 1, fp32. Learning rate: linear
warmup over --warmup steps, then a cosine from --lr to --lr * --min-lr-ratio over the training time budget
(--minutes of training wall-clock, summed over resumes, evaluations excluded), so the schedule ends when
the budget does whatever the machine's speed; --max-steps instead makes it step-based.

Every --ckpt-minutes: held-out perplexity (qwen3_moe.evaluate: non-overlapping --ctx windows) and a checkpoint
(CKPT_DIR/ckpt.pt, written atomically; --resume continues from it). Log: CKPT_DIR/train.log. At the end: a
final checkpoint, the export to --out (config.json, model.safetensors in BF16, tokenizer.json,
tokenizer_config.json, generation_config.json), the perplexity of the exported BF16 weights and
CKPT_DIR/final.json with the numbers for the model's README.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bytelevel_bpe as bl  # noqa: E402
import qwen3_moe as qm  # noqa: E402


def log(msg, path=None):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def tokenize_corpus(tok, data_dir, cache_dir):
    """(train stream, held-out tokens) as uint16 arrays; the train stream is cached in cache_dir."""
    with open(os.path.join(data_dir, "heldout.txt"), encoding="utf-8", newline="") as f:
        heldout = np.array(tok.encode(f.read(), parse_special=False), dtype=np.uint16)
    tok_path = os.path.join(data_dir, "train.txt")
    cache = os.path.join(cache_dir, "train_tokens.npy")
    stamp = f"{os.path.getsize(tok_path)}-{os.path.getmtime(tok_path)}-{tok.vocab_size}-{len(tok.ranks)}"
    if os.path.exists(cache) and os.path.exists(cache + ".stamp") and open(cache + ".stamp").read() == stamp:
        return np.load(cache), heldout
    with open(tok_path, encoding="utf-8", newline="") as f:
        docs = [d.strip("\n") for d in f.read().split("\n\n")]
    stream = []
    for d in docs:
        if d:
            stream.extend(tok.encode(d, parse_special=False))
            stream.append(tok.eos_id)
    stream = np.array(stream, dtype=np.uint16)
    np.save(cache, stream)
    with open(cache + ".stamp", "w") as f:
        f.write(stamp)
    return stream, heldout


def batch_at(stream, step, seed, batch, ctx):
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(stream) - ctx - 1, size=batch)
    rows = np.stack([stream[s:s + ctx + 1] for s in starts]).astype(np.int64)
    t = torch.from_numpy(rows)
    return t[:, :-1], t[:, 1:]


def lr_at(a, step, progress):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(1.0, max(0.0, progress))
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def export(model, tok_json_path, out_dir, tok):
    os.makedirs(out_dir, exist_ok=True)
    c = dict(model.config)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    qm.write_safetensors_bf16(os.path.join(out_dir, "model.safetensors"), qm.hf_tensors(model))
    shutil.copyfile(tok_json_path, os.path.join(out_dir, "tokenizer.json"))
    eos = bl.EOS_TOKEN
    tok_cfg = {
        "add_bos_token": False, "add_prefix_space": False,
        "added_tokens_decoder": {str(tok.eos_id): {"content": eos, "lstrip": False, "normalized": False,
                                                   "rstrip": False, "single_word": False, "special": True}},
        "bos_token": None, "eos_token": eos, "pad_token": eos, "unk_token": None,
        "clean_up_tokenization_spaces": False, "errors": "replace", "split_special_tokens": False,
        "model_max_length": c["max_position_embeddings"], "tokenizer_class": "PreTrainedTokenizerFast",
    }
    gen_cfg = {"bos_token_id": tok.eos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.eos_id,
               "do_sample": True, "temperature": 0.8, "top_k": 40, "top_p": 0.95}
    for name, obj in (("tokenizer_config.json", tok_cfg), ("generation_config.json", gen_cfg)):
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="directory with train.txt and heldout.txt")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json from train_bpe.py")
    ap.add_argument("--out", required=True, help="export directory (Hugging Face layout)")
    ap.add_argument("--ckpt-dir", default="/tmp/train-ckpt")
    ap.add_argument("--resume", action="store_true", help="continue from CKPT_DIR/ckpt.pt")
    ap.add_argument("--export-only", action="store_true", help="export CKPT_DIR/ckpt.pt to --out and exit")
    ap.add_argument("--minutes", type=float, default=50.0, help="training wall-clock budget")
    ap.add_argument("--max-steps", type=int, default=0, help="if > 0: stop after this many steps (step-based LR)")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--aux-coef", type=float, default=0.01)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--moe-inter", type=int, default=256)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    os.makedirs(a.ckpt_dir, exist_ok=True)
    log_path = os.path.join(a.ckpt_dir, "train.log")
    ckpt_path = os.path.join(a.ckpt_dir, "ckpt.pt")
    tok = bl.Tokenizer(a.tokenizer)
    token_bytes = np.array([len(tok.id_to_bytes.get(i, b"")) for i in range(tok.vocab_size)])

    state = torch.load(ckpt_path) if (a.resume or a.export_only) else None
    config = state["config"] if state else qm.make_config(
        tok.vocab_size, tok.eos_id, hidden=a.hidden, layers=a.layers, heads=a.heads, kv_heads=a.kv_heads,
        head_dim=a.head_dim, experts=a.experts, top_k=a.top_k, moe_inter=a.moe_inter, max_pos=a.ctx,
        aux_coef=a.aux_coef)
    model = qm.Qwen3Moe(config)
    if state:
        model.load_state_dict(state["model"])
    else:
        model.init_weights(seed=a.seed)
    if a.export_only:
        export(model, a.tokenizer, a.out, tok)
        log(f"exported {ckpt_path} (step {state['step']}) to {a.out}", log_path)
        return

    t_start = time.time()
    stream, heldout = tokenize_corpus(tok, a.data, a.ckpt_dir)
    total, active = model.num_params()
    log(f"{'resuming' if state else 'starting'}: {' '.join(sys.argv[1:])}", log_path)
    log(f"train stream {len(stream)} tokens, held-out {len(heldout)} tokens (tokenized in "
        f"{time.time() - t_start:.0f}s); params {total} total, {active} active per token; "
        f"threads {torch.get_num_threads()}", log_path)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    step, tokens_seen, train_s = 0, 0, 0.0
    history = []
    if state:
        opt.load_state_dict(state["opt"])
        step, tokens_seen, train_s = state["step"], state["tokens_seen"], state["train_s"]
        history = state.get("history", [])
    budget_s = a.minutes * 60

    def save():
        tmp = ckpt_path + ".tmp"
        torch.save({"config": config, "model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "tokens_seen": tokens_seen, "train_s": train_s, "history": history, "args": vars(a)}, tmp)
        os.replace(tmp, ckpt_path)

    def validate(tag):
        t0 = time.time()
        r = qm.evaluate(model, heldout, a.ctx, token_bytes)
        model.train()
        history.append({"step": step, "tokens_seen": tokens_seen, "train_s": round(train_s, 1),
                        "val_ppl": r["perplexity"], "val_bpb": r["bits_per_byte"]})
        log(f"{tag} step {step} tokens {tokens_seen} train {train_s / 60:.1f} min: held-out ppl "
            f"{r['perplexity']:.2f} bpb {r['bits_per_byte']:.4f} ({r['scored_tokens']} tokens, "
            f"{time.time() - t0:.0f}s)", log_path)
        return r

    model.train()
    last_ckpt = time.time()
    window = []
    while True:
        done = step >= a.max_steps if a.max_steps > 0 else train_s >= budget_s
        if done:
            break
        t0 = time.time()
        progress = step / a.max_steps if a.max_steps > 0 else train_s / budget_s
        lr = lr_at(a, step, progress)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch_at(stream, step, a.seed, a.batch, a.ctx)
        logits, balance, counts = model(x)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss = ce + a.aux_coef * balance
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += x.numel()
        train_s += time.time() - t0
        window.append((ce.item(), balance.item()))
        if step % 20 == 0 or step == 1:
            ce_avg = sum(w[0] for w in window) / len(window)
            bal_avg = sum(w[1] for w in window) / len(window)
            share = counts.float() / counts.sum(-1, keepdim=True)  # per layer
            log(f"step {step} tokens {tokens_seen} ce {ce_avg:.4f} (ppl {math.exp(ce_avg):.1f}) balance "
                f"{bal_avg:.4f} max-expert-share {share.max().item():.3f} lr {lr:.2e} gnorm {gnorm:.2f} "
                f"{x.numel() / (time.time() - t0):.0f} tok/s train {train_s / 60:.1f} min", log_path)
            window = []
        if time.time() - last_ckpt >= a.ckpt_minutes * 60:
            validate("checkpoint")
            save()
            last_ckpt = time.time()

    final = validate("final")
    save()
    export(model, a.tokenizer, a.out, tok)
    exported = qm.evaluate(qm.load_hf(a.out), heldout, a.ctx, token_bytes)
    log(f"exported to {a.out}; BF16 export held-out ppl {exported['perplexity']:.3f} bpb "
        f"{exported['bits_per_byte']:.4f}", log_path)
    summary = {"step": step, "tokens_seen": tokens_seen, "train_minutes": round(train_s / 60, 2),
               "wall_minutes_this_run": round((time.time() - t_start) / 60, 2), "params_total": total,
               "params_active": active, "fp32_heldout": final, "bf16_heldout": exported, "history": history,
               "args": vars(a), "train_stream_tokens": int(len(stream))}
    with open(os.path.join(a.ckpt_dir, "final.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log("done", log_path)


if __name__ == "__main__":
    main()
