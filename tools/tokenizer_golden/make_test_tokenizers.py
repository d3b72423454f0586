#!/usr/bin/env python3
"""Writes the hand-made test tokenizer.json files of tests/data/tokenizer_golden/tokenizers/.

One byte-level BPE vocabulary is learned from train_corpus.txt (a plain
most-frequent-pair learner, deterministic: ties go to the smallest pair), and
packaged three ways, each exercising a different part of HF's pipeline:

  deepseek-v3-style.json   DeepSeek-V3's pre-tokenizer (three Isolated Splits, then
                           ByteLevel without regex), an empty normalizer Sequence, a
                           TemplateProcessing post-processor that adds BOS (which
                           Encode must not add), non-special added tokens <think>,
                           </think>; merges as "a b" strings.
  o200k-digits-nfc.json    NFC normalizer; the gpt-4o / o200k Split followed by
                           Digits(individual_digits) and ByteLevel; ignore_merges
                           (as in Llama-3 files) with two vocab entries no merge
                           builds; an lstrip+rstrip special token; merges as
                           ["a", "b"] pairs.
  gpt2-style.json          null normalizer; ByteLevel(add_prefix_space, use_regex)
                           alone (the GPT-2 regex); non-special added tokens, one
                           with a space inside, one single_word.
  split-behaviors.json     no real model's: Splits with each of HF's behaviours
                           (String and Regex patterns, Removed drops text) and
                           Digits(individual_digits = false).

Every file has the special token <|endoftext|>, which strings.json uses.
Standard library only. Usage (from anywhere):
  python3 tools/tokenizer_golden/make_test_tokenizers.py
"""

import collections
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "..", "tests", "data", "tokenizer_golden", "tokenizers")
NUM_MERGES = 1000  # the last few hundred are frequency-1 merges: whole rare words

# Pre-tokenizer regexes, as the models' own tokenizer.json files spell them
# (shared/reference/formats.md section 7). DeepSeek's third pattern holds raw CR/LF
# characters, not "\r\n" escapes, as its file does.
DEEPSEEK_SPLITS = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^"""
    + "\r\n"
    + r"""\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+["""
    + "\r\n"
    + r"""]*|\s*["""
    + "\r\n"
    + r"""]+|\s+(?!\S)|\s+""",
]
O200K_SPLIT = (
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
    r"""|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
    r"""|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Only for learning merges, and on purpose much coarser than any of the pre-tokenizers
# above (it cuts only at whitespace), so that merges cross the places where they cut
# (letter|digit, digit|digit, word|'s, word|punctuation, CJK|kana...): a pre-tokenizer
# that fails to cut there then gives different tokens, where with merges that never
# cross a cut a missing cut would go unseen.
TRAIN_SPLIT = re.compile(r""" ?\S+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """GPT-2's byte alphabet: byte -> visible character."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


def learn_bpe(text, num_merges):
    """Returns (vocab: token -> id, merges: [(left, right)]) of a byte-level BPE."""
    alphabet = bytes_to_unicode()
    vocab = {alphabet[b]: b for b in range(256)}
    words = collections.Counter(
        tuple(alphabet[b] for b in piece.encode("utf-8")) for piece in TRAIN_SPLIT.findall(text)
    )
    merges = []
    while len(merges) < num_merges:
        pairs = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merged = best[0] + best[1]
        merges.append(best)
        vocab.setdefault(merged, len(vocab))
        new_words = collections.Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    return vocab, merges


def added(token_id, content, special, lstrip=False, rstrip=False, single_word=False):
    return {
        "id": token_id,
        "content": content,
        "single_word": single_word,
        "lstrip": lstrip,
        "rstrip": rstrip,
        "normalized": not special,
        "special": special,
    }


def byte_level(add_prefix_space, use_regex):
    return {
        "type": "ByteLevel",
        "add_prefix_space": add_prefix_space,
        "trim_offsets": True,
        "use_regex": use_regex,
    }


def split(regex, behavior="Isolated", invert=False, kind="Regex"):
    return {"type": "Split", "pattern": {kind: regex}, "behavior": behavior, "invert": invert}


def bpe_model(vocab, merges, merges_as_pairs, ignore_merges):
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": ignore_merges,
        "vocab": vocab,
        "merges": [list(m) for m in merges] if merges_as_pairs else [f"{a} {b}" for a, b in merges],
    }


def tokenizer_json(added_tokens, normalizer, pre_tokenizer, post_processor, model):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": byte_level(True, True),
        "model": model,
    }


def main():
    with open(os.path.join(HERE, "train_corpus.txt"), encoding="utf-8") as f:
        vocab, merges = learn_bpe(f.read(), NUM_MERGES)
    n = len(vocab)
    files = {}

    bos, eos = "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"
    files["deepseek-v3-style.json"] = tokenizer_json(
        [
            added(n, bos, True),
            added(n + 1, eos, True),
            added(n + 2, "<|endoftext|>", True),
            added(n + 3, "<think>", False),
            added(n + 4, "</think>", False),
        ],
        {"type": "Sequence", "normalizers": []},
        {
            "type": "Sequence",
            "pretokenizers": [split(r) for r in DEEPSEEK_SPLITS] + [byte_level(False, False)],
        },
        {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [n], "tokens": [bos]}},
        },
        bpe_model(vocab, merges, merges_as_pairs=False, ignore_merges=False),
    )

    # Vocab entries that no merge builds, as Llama-3-style files have: with ignore_merges
    # a piece spelled exactly like one is that one token, where BPE would cut it.
    unmerged = {"supercalifragilisticexpialidocious": n, "a" * 40: n + 1}
    assert not set(unmerged) & set(vocab)
    files["o200k-digits-nfc.json"] = tokenizer_json(
        [
            added(n + 2, "<|endoftext|>", True),
            added(n + 3, "<|im_start|>", True),
            added(n + 4, "<|im_end|>", True),
            added(n + 5, "<|mask|>", True, lstrip=True, rstrip=True),
            added(n + 6, "<think>", False),
            added(n + 7, "</think>", False),
        ],
        {"type": "NFC"},
        {
            "type": "Sequence",
            "pretokenizers": [
                split(O200K_SPLIT),
                {"type": "Digits", "individual_digits": True},
                byte_level(False, False),
            ],
        },
        None,
        bpe_model({**vocab, **unmerged}, merges, merges_as_pairs=True, ignore_merges=True),
    )

    files["gpt2-style.json"] = tokenizer_json(
        [
            added(n, "<|endoftext|>", True),
            added(n + 1, "New York", False),
            added(n + 2, "ML", False, single_word=True),
        ],
        None,
        byte_level(True, True),
        None,
        bpe_model(vocab, merges, merges_as_pairs=False, ignore_merges=False),
    )

    files["split-behaviors.json"] = tokenizer_json(
        [added(n, "<|endoftext|>", True)],
        None,
        {
            "type": "Sequence",
            "pretokenizers": [
                split("-", "MergedWithPrevious", kind="String"),
                split(r"\s+", "MergedWithNext"),
                {"type": "Digits", "individual_digits": False},
                split("[,;]", "Removed"),
                split("[aeiou]", "Contiguous"),
                split(r"\p{Lu}", "MergedWithPrevious", invert=True),
                byte_level(False, False),
            ],
        },
        None,
        bpe_model(vocab, merges, merges_as_pairs=False, ignore_merges=False),
    )

    for name, content in files.items():
        with open(os.path.join(OUT_DIR, name), "w", encoding="utf-8") as f:
            json.dump(content, f, ensure_ascii=False, indent=1)
            f.write("\n")
    print(f"{len(merges)} merges, {n} vocab entries; wrote {', '.join(files)}")


if __name__ == "__main__":
    main()
