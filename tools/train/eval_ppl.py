#!/usr/bin/python3
"""Held-out perplexity of an exported checkpoint, by the definition moerack's `eval` uses.

usage: /usr/bin/python3 tools/train/eval_ppl.py MODEL_DIR TEXT [--ctx N] [--threads N] [--float64] [--json]

Loads MODEL_DIR (config.json, model.safetensors in BF16/F16/F32, tokenizer.json written by train_bpe.py) with
qwen3_moe.py, encodes TEXT whole (special tokens written literally in it are recognised, as `moerack eval`
does; no BOS is added), cuts the ids into non-overlapping windows of --ctx tokens (default: the config's
max_position_embeddings; a last window of one token scores nothing) and scores every token after the first
of each window from the positions before it. Perplexity = exp(total NLL / scored tokens); bits per byte =
total NLL / ln 2 / UTF-8 bytes of the scored tokens. The weights are used as stored (BF16 values exactly),
computing in float32, or float64 with --float64.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bytelevel_bpe as bl  # noqa: E402
import qwen3_moe as qm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("text")
    ap.add_argument("--ctx", type=int, default=0, help="window length (default: max_position_embeddings)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--float64", action="store_true", help="compute in float64 instead of float32")
    ap.add_argument("--json", action="store_true", help="one JSON line instead of text")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    tok = bl.Tokenizer(os.path.join(a.model_dir, "tokenizer.json"))
    model = qm.load_hf(a.model_dir)
    if a.float64:
        model = model.double()
    ctx = a.ctx or model.config["max_position_embeddings"]
    if ctx < 2 or ctx > model.config["max_position_embeddings"]:
        raise SystemExit(f"--ctx {ctx}: must be in [2, max_position_embeddings = "
                         f"{model.config['max_position_embeddings']}]")
    with open(a.text, encoding="utf-8", newline="") as f:
        ids = np.array(tok.encode(f.read()), dtype=np.int64)
    token_bytes = np.array([len(tok.id_to_bytes.get(i, b"")) for i in range(tok.vocab_size)])
    r = qm.evaluate(model, ids, ctx, token_bytes)
    r.update({"model": a.model_dir, "text": a.text, "ctx": ctx, "tokens": int(len(ids)),
              "dtype": "float64" if a.float64 else "float32", "seconds": round(time.time() - t0, 1)})
    if a.json:
        print(json.dumps(r))
    else:
        print(f"{a.text}: {len(ids)} tokens, {r['windows']} windows of {ctx}, {r['scored_tokens']} scored "
              f"({r['scored_bytes']} bytes)\nperplexity {r['perplexity']:.4f}  bits/byte {r['bits_per_byte']:.5f}  "
              f"NLL {r['nll_nats']:.3f} nats  ({r['dtype']}, {r['seconds']}s)")


if __name__ == "__main__":
    main()
