#!/usr/bin/python3
"""Builds the training corpus and the held-out split from public-domain SWORD modules.

usage: /usr/bin/python3 tools/train/prepare_corpus.py OUT_DIR [--heldout-every N]

Needs the Debian packages (all public domain, see each /usr/share/doc/<pkg>/copyright):
  sword-text-web     World English Bible (module engWEB2015eb)
  sword-comm-tdavid  C. H. Spurgeon, The Treasury of David (module TDavid)
  sword-comm-mhcc    Matthew Henry's Concise Commentary (module MHCC)
  libsword-utils     mod2imp, which dumps a module as "$$$key" lines followed by OSIS markup

Steps, all deterministic:
  1. mod2imp each module;
  2. group entries into documents: a WEB chapter (verses joined), a TDavid entry (one psalm). MHCC's dump is
     garbled (mod2imp prints "Error reading ulCompOffset" and each non-empty entry is a ~60 kB window of the
     compressed block, so every paragraph appears many times, some windows cut mid-paragraph): its paragraphs
     are recovered by their OSIS milestone ids (<div sID="genN" type="x-p"/> ... <div eID="genN" .../>, both
     ends present), each id kept once, in id order (= text order);
  3. strip the markup: footnotes (<note>) and their variant readings are dropped, paragraph / poetry-line /
     title boundaries become newlines, every other tag is removed, XML entities unescaped;
  4. normalise: Unicode NFC, control and zero-width characters dropped, runs of spaces and tabs to one space, lines stripped, empty lines dropped
     (paragraphs are separated by a single "\\n");
  5. TDavid psalms and the MHCC paragraph stream are cut at paragraph boundaries into ~8 kB documents, so that
     holding one out costs little;
  6. split: document i of a module is held out iff i % N == N // 2 (N = --heldout-every, default 130: ~0.75%,
     ~150 kB of held-out text out of ~20 MB).

Writes OUT_DIR/train.txt and OUT_DIR/heldout.txt: documents separated by one empty line ("\\n\\n"; no
document contains an empty line). train_bpe.py and train.py put <|endoftext|> between training documents;
the held-out file is evaluated as plain text. tests/data/heldout/heldout.txt is a copy of heldout.txt.
"""
import argparse
import html
import os
import re
import subprocess
import sys
import unicodedata

MODULES = [("web", "engWEB2015eb"), ("tdavid", "TDavid"), ("mhcc", "MHCC")]

NOTE_RE = re.compile(r"<note\b[^>]*/>|<note\b[^>]*>.*?</note>", re.S)
RDG_RE = re.compile(r"<rdg\b[^>]*>.*?</rdg>", re.S)
MILESTONE_DIV_RE = re.compile(r'<div\b[^>]*type="x-milestone"[^>]*/>')
BREAK_RE = re.compile(r"<(?:div|lb|l|lg|title|/title|item|/item|list|/list|p|/p|chapter)\b[^>]*>")
TAG_RE = re.compile(r"<[^>]*>")
SPACES_RE = re.compile(r"[ \t\u00a0]+")
# C0/C1 controls other than tab and newline, and format characters (a stray BOM): mojibake, dropped.
CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2060\ufeff]")


def mod2imp(module):
    out = subprocess.run(["mod2imp", module], check=True, capture_output=True)
    return out.stdout.decode("utf-8", errors="replace")


def entries(imp_text):
    """(key, content) pairs of a mod2imp dump, in order."""
    key, lines = None, []
    for line in imp_text.split("\n"):
        if line.startswith("$$$"):
            if key is not None:
                yield key, "\n".join(lines)
            key, lines = line[3:].strip(), []
        else:
            lines.append(line)
    if key is not None:
        yield key, "\n".join(lines)


def strip_markup(osis):
    s = NOTE_RE.sub("", osis)
    s = RDG_RE.sub("", s)
    s = MILESTONE_DIV_RE.sub("", s)
    s = BREAK_RE.sub("\n", s)
    s = TAG_RE.sub("", s)
    s = html.unescape(s)
    s = unicodedata.normalize("NFC", s)
    s = s.replace("\r", "\n")
    s = CONTROL_RE.sub("", s)
    out = []
    for line in s.split("\n"):
        line = SPACES_RE.sub(" ", line).strip()
        if line:
            out.append(line)
    return "\n".join(out)


VERSE_KEY_RE = re.compile(r"^(.*) (\d+):(\d+)$")


def web_documents(imp_text):
    """One document per (book, chapter); chapter 0 (introductions, the preface) is its own document."""
    docs, current, parts = [], None, []
    for key, content in entries(imp_text):
        m = VERSE_KEY_RE.match(key)
        if not m:
            continue  # module / testament headings
        chapter = (m.group(1), int(m.group(2)))
        if chapter != current:
            if parts:
                docs.append(" ".join(parts))
            current, parts = chapter, []
        parts.append(content)
    if parts:
        docs.append(" ".join(parts))
    return [strip_markup(d) for d in docs]


def entry_documents(imp_text):
    """One document per non-empty entry."""
    docs = (strip_markup(content) for _, content in entries(imp_text))
    return [d for d in docs if d]


PARAGRAPH_RE = re.compile(r'<div sID="gen(\d+)" type="x-p"/>(.*?)<div eID="gen\1" type="x-p"/>', re.S)


def paragraph_stream(imp_text):
    """All paragraphs of a (garbled, repetitive) dump, each milestone id once, in id order, joined by "\n"."""
    paragraphs = {}
    for _, content in entries(imp_text):
        for m in PARAGRAPH_RE.finditer(content):
            paragraphs.setdefault(int(m.group(1)), m.group(2))
    texts = (strip_markup(paragraphs[i]) for i in sorted(paragraphs))
    return "\n".join(t for t in texts if t)


def cut(doc, target_bytes):
    """Cuts a document at paragraph boundaries into pieces of about target_bytes."""
    pieces, cur, size = [], [], 0
    for para in doc.split("\n"):
        cur.append(para)
        size += len(para.encode("utf-8")) + 1
        if size >= target_bytes:
            pieces.append("\n".join(cur))
            cur, size = [], 0
    if cur:
        pieces.append("\n".join(cur))
    return pieces


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--heldout-every", type=int, default=130,
                    help="hold out document i of each module iff i %% N == N // 2")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    train, heldout = [], []
    for name, module in MODULES:
        text = mod2imp(module)
        if name == "web":
            docs = web_documents(text)
        elif name == "tdavid":
            docs = [piece for d in entry_documents(text) for piece in cut(d, 8000)]
        else:
            docs = cut(paragraph_stream(text), 8000)
        docs = [d for d in docs if d]
        n = a.heldout_every
        held = [d for i, d in enumerate(docs) if i % n == n // 2]
        kept = [d for i, d in enumerate(docs) if i % n != n // 2]
        train += kept
        heldout += held
        size = lambda ds: sum(len(d.encode("utf-8")) + 2 for d in ds)
        print(f"{module}: {len(docs)} documents, train {size(kept) / 1e6:.2f} MB, "
              f"held out {len(held)} ({size(held) / 1e3:.1f} kB)", file=sys.stderr)
    for fname, docs in (("train.txt", train), ("heldout.txt", heldout)):
        path = os.path.join(a.out_dir, fname)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n\n".join(docs) + "\n")
        print(f"wrote {path}: {len(docs)} documents, {os.path.getsize(path) / 1e6:.3f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
