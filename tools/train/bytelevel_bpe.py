"""Byte-level BPE as Hugging Face `tokenizers` does it for Qwen2/3, in plain Python (no `tokenizers` package).

Shared by train_bpe.py (which learns the merges), train.py (which encodes the corpus) and eval_ppl.py. Only the
tokenizer.json features train_bpe.py writes are read here (and moerack's C++ tokenizer implements them all):
  normalizer null; pre_tokenizer = Sequence[Split(Qwen2 regex, Isolated), ByteLevel(add_prefix_space false,
  use_regex false)]; model BPE over the GPT-2 byte alphabet (no unk, no byte fallback, no dropout); special
  added tokens split out of the text literally before everything else; decoder ByteLevel.

The Qwen2 regex uses \\p{L} and \\p{N}, which Python's `re` lacks: QWEN2_PATTERN is the same regex with those
classes spelt out as code-point ranges from unicodedata, and \\s as Unicode's White_Space set (what PCRE2 with
UCP and Oniguruma use). tokenizer.json gets the original string, QWEN2_REGEX.
"""
import json
import re
import sys
import unicodedata

EOS_TOKEN = "<|endoftext|>"

# The pre-tokenizer regex of Qwen2 / Qwen2.5 / Qwen3 tokenizer.json (llama-vocab.cpp, pre = "qwen2").
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    """GPT-2's byte -> printable character map: printable Latin-1 bytes map to themselves, the other 68 bytes
    to U+0100.. in increasing order (so space -> 'Ġ', newline -> 'Ċ')."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def _category_ranges(prefix):
    """Code-point ranges, as a regex class body, of the Unicode general categories starting with prefix."""
    ranges, start = [], None
    for cp in range(sys.maxunicode + 2):
        inside = cp <= sys.maxunicode and unicodedata.category(chr(cp)).startswith(prefix)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append((start, cp - 1))
            start = None
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


def _python_qwen2_pattern():
    letters, numbers = _category_ranges("L"), _category_ranges("N")
    # Unicode White_Space (PCRE2 \s with UCP); Python's own \s would add \x1c-\x1f.
    space = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    s, not_s = f"[{space}]", f"[^{space}]"
    return (rf"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n{letters}{numbers}]?[{letters}]+|[{numbers}]"
            rf"| ?[^{space}{letters}{numbers}]+[\r\n]*|{s}*[\r\n]+|{s}+(?!{not_s})|{s}+")


QWEN2_PATTERN = re.compile(_python_qwen2_pattern())


def pre_tokenize(text):
    """The pieces HF's Split(QWEN2_REGEX, behavior Isolated) cuts text into: matches and the gaps between."""
    pieces, end = [], 0
    for m in QWEN2_PATTERN.finditer(text):
        if m.start() > end:
            pieces.append(text[end:m.start()])
        if m.end() > m.start():
            pieces.append(m.group())
        end = m.end()
    if end < len(text):
        pieces.append(text[end:])
    return pieces


def to_byte_level(piece):
    return "".join(BYTE_TO_CHAR[b] for b in piece.encode("utf-8"))


def tokenizer_json(vocab, merges, eos_id):
    """A tokenizer.json dict. vocab: byte-level string -> id; merges: [(left, right)] in rank order."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": eos_id, "content": EOS_TOKEN, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
            byte_level]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


class Tokenizer:
    """Encoder / decoder for a tokenizer.json written by train_bpe.py."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        model = j["model"]
        if model.get("type") != "BPE":
            raise SystemExit(f"{path}: model.type {model.get('type')!r}, expected BPE")
        split = j["pre_tokenizer"]["pretokenizers"][0]
        if split["pattern"]["Regex"] != QWEN2_REGEX:
            raise SystemExit(f"{path}: pre-tokenizer regex is not the Qwen2 one")
        self.vocab = model["vocab"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.special = {t["content"]: t["id"] for t in j["added_tokens"]}
        self.id_to_bytes = {i: bytes(CHAR_TO_BYTE[c] for c in s) for s, i in self.vocab.items()}
        for content, i in self.special.items():
            self.id_to_bytes[i] = content.encode("utf-8")
        self.vocab_size = 1 + max(self.id_to_bytes)
        self.eos_id = self.special[EOS_TOKEN]
        self._cache = {}
        self._special_re = re.compile("|".join(re.escape(s) for s in sorted(self.special, key=len, reverse=True)))

    def _bpe(self, piece):
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        symbols = list(to_byte_level(piece))
        while len(symbols) > 1:
            # Lowest-ranked adjacent pair, leftmost on ties (HF merges one occurrence at a time).
            best, best_rank = -1, None
            for i in range(len(symbols) - 1):
                r = self.ranks.get((symbols[i], symbols[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best < 0:
                break
            symbols[best:best + 2] = [symbols[best] + symbols[best + 1]]
        ids = [self.vocab[s] for s in symbols]
        self._cache[piece] = ids
        return ids

    def encode(self, text, parse_special=True):
        out = []
        chunks = [text]
        if parse_special:
            chunks, pos = [], 0
            for m in self._special_re.finditer(text):
                chunks.append(text[pos:m.start()])
                chunks.append(m.group())
                pos = m.end()
            chunks.append(text[pos:])
        for chunk in chunks:
            if parse_special and chunk in self.special:
                out.append(self.special[chunk])
                continue
            for piece in pre_tokenize(chunk):
                out.extend(self._bpe(piece))
        return out

    def decode(self, ids):
        return b"".join(self.id_to_bytes.get(i, b"") for i in ids).decode("utf-8", errors="replace")
