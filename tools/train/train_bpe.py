#!/usr/bin/python3
"""Trains a byte-level BPE tokenizer and writes a Hugging Face tokenizer.json.

usage: /usr/bin/python3 tools/train/train_bpe.py TRAIN_TXT OUT_TOKENIZER_JSON [--vocab-size 4096]

TRAIN_TXT: documents separated by an empty line (prepare_corpus.py's train.txt). Each document is cut by the
Qwen2 pre-tokenizer regex (bytelevel_bpe.py); the pieces are counted once, and the merges are learnt on that
word-frequency table with incremental pair counts: a merge only revisits the words that contain its pair.

Ids: 0..255 are the single bytes in byte order (id b = byte b, in the GPT-2 byte alphabet), then one id per
merge in the order learnt, then the special token <|endoftext|> (EOS and document separator) last, so that the
vocabulary has exactly --vocab-size ids. Each step merges the most frequent adjacent pair (ties: smallest
(left id, right id)); a merge whose result string already exists gets no new id. Stops early if no pair occurs
twice. Deterministic.
"""
import argparse
import collections
import heapq
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bytelevel_bpe as bl  # noqa: E402


def count_words(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    counts = collections.Counter()
    for doc in text.split("\n\n"):
        doc = doc.strip("\n")
        if doc:
            counts.update(bl.pre_tokenize(doc))
    return counts


def pairs_of(word):
    return zip(word, word[1:])


def train(word_counts, vocab_size, log=sys.stderr):
    num_merges_wanted = vocab_size - 256 - 1  # 256 bytes, 1 special token
    token_bytes = [bytes([b]) for b in range(256)]
    id_of = {t: i for i, t in enumerate(token_bytes)}
    items = sorted(word_counts.items())  # deterministic word order
    words = [list(piece.encode("utf-8")) for piece, _ in items]
    freqs = [n for _, n in items]

    pair_count = collections.Counter()
    where = collections.defaultdict(set)
    for w, (word, n) in enumerate(zip(words, freqs)):
        for p in pairs_of(word):
            pair_count[p] += n
            where[p].add(w)
    heap = [(-n, p) for p, n in pair_count.items()]
    heapq.heapify(heap)

    merges = []
    t0 = time.time()
    while len(token_bytes) - 256 < num_merges_wanted and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:
            continue  # stale entry
        if -neg < 2:
            print(f"stopping: no pair occurs twice ({len(merges)} merges)", file=log)
            break
        a, b = pair
        merged = token_bytes[a] + token_bytes[b]
        new_id = id_of.get(merged)
        if new_id is None:
            new_id = len(token_bytes)
            token_bytes.append(merged)
            id_of[merged] = new_id
        merges.append((a, b))
        changed = set()
        for w in sorted(where.pop(pair)):
            word, n = words[w], freqs[w]
            if len(word) < 2:
                continue
            new_word, i = [], 0
            while i < len(word):  # replace left to right, non-overlapping
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    new_word.append(new_id)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            if len(new_word) == len(word):
                continue
            for p in pairs_of(word):
                pair_count[p] -= n
                changed.add(p)
            for p in pairs_of(new_word):
                pair_count[p] += n
                where[p].add(w)
                changed.add(p)
            words[w] = new_word
        pair_count.pop(pair, None)
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            elif p in pair_count:
                del pair_count[p]
        if len(merges) % 500 == 0:
            print(f"{len(merges)} merges, last {merged!r} x{-neg}, {time.time() - t0:.1f}s", file=log)
    return token_bytes, merges


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("train_txt")
    ap.add_argument("out_json")
    ap.add_argument("--vocab-size", type=int, default=4096, help="total ids, incl. 256 bytes and <|endoftext|>")
    a = ap.parse_args()
    t0 = time.time()
    counts = count_words(a.train_txt)
    print(f"{len(counts)} distinct pre-tokens, {sum(counts.values())} in all ({time.time() - t0:.1f}s)",
          file=sys.stderr)
    token_bytes, merges = train(counts, a.vocab_size)
    to_str = lambda t: "".join(bl.BYTE_TO_CHAR[x] for x in t)
    vocab = {to_str(t): i for i, t in enumerate(token_bytes)}
    eos_id = len(token_bytes)
    j = bl.tokenizer_json(vocab, [(to_str(token_bytes[x]), to_str(token_bytes[y])) for x, y in merges], eos_id)
    os.makedirs(os.path.dirname(os.path.abspath(a.out_json)), exist_ok=True)
    with open(a.out_json, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {a.out_json}: {eos_id + 1} ids ({len(merges)} merges), {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
