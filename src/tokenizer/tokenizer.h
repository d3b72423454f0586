// Tokenizer: byte-level BPE loaded from a Hugging Face `tokenizer.json` (the
// format of Qwen2/3, DeepSeek-V3, gpt-oss and Llama-3), plus a generator of such
// files for random test models. See shared/reference/formats.md §7.
//
// Encoding follows HF `tokenizers` (AddedVocabulary::extract_and_normalize):
//   1. added tokens with `normalized: false` are split out of the raw text
//      literally, leftmost-longest, honouring lstrip / rstrip / single_word (whose
//      word test is Rust regex's Unicode \w on the neighbouring characters; a
//      rejected match is skipped whole, as in HF); they map to their ids;
//   2. the normalizer runs on each stretch of text between them (null, NFC, NFD,
//      NFKC, NFKD, Lowercase, or a Sequence of those; ICU, on HF's Unicode 9.0
//      normalization tables; pure ASCII skips ICU);
//   3. added tokens with `normalized: true` are split out of the normalized text the
//      same way, matched by their normalized content;
//   4. the pre-tokenizer cuts the rest into pieces (Sequence, Split with a Regex or
//      String pattern and any HF behavior, ByteLevel, Digits, or null);
//   5. each piece's UTF-8 bytes are mapped to the GPT-2 byte alphabet and merged by
//      BPE, lowest merge rank first (leftmost on ties).
// Regexes are PCRE2 (UTF + UCP, JIT when available). The byte alphabet is always
// applied: `model.vocab` must be in byte-level form. Not supported: model types
// other than BPE, continuing_subword_prefix / end_of_word_suffix, BPE dropout
// (ignored), post-processors (ignored: Encode adds no BOS/EOS; chat templates
// and BOS are the caller's business), decoders other than ByteLevel.
//
// Thread-safety: a Tokenizer is immutable after construction. All methods are
// const and safe to call concurrently; copies are cheap and share state.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace moerack {

class Tokenizer {
 public:
  // Loads a tokenizer.json. Errors name the file and the offending field.
  static StatusOr<Tokenizer> FromFile(const std::string& path);
  // Builds from an already-parsed tokenizer.json. Errors name the field
  // (e.g. "model.merges[12]").
  static StatusOr<Tokenizer> FromJson(const nlohmann::json& j);

  // Token ids for `text` (any bytes; invalid UTF-8 is encoded byte by byte, and
  // the normalizer leaves it as it is).
  // parse_special: recognise special added tokens (`"special": true`) written
  // literally in the text. Non-special added tokens are always recognised, as in
  // HF and llama.cpp. With parse_special = false, "<|endoftext|>" in user text is
  // encoded as ordinary text, and special tokens are invisible to the added-token
  // search (HF's encode_special_tokens instead skips the text such a match covers,
  // which only differs when another added token overlaps a special one).
  // Bytes with no token (no single-byte vocab entry, no `<0xXX>` byte-fallback
  // token, no unk_token) are skipped.
  std::vector<int32_t> Encode(std::string_view text, bool parse_special = true) const;

  // Concatenated TokenBytes of `ids`: raw bytes, which are valid UTF-8 whenever
  // the ids came from Encode of valid UTF-8 (a prefix may end mid-character).
  // Added/special tokens decode to their content.
  std::string Decode(std::span<const int32_t> ids) const;

  // The raw bytes of one token (may be a partial UTF-8 sequence), for streaming
  // output. Empty for ids that name no token (holes, negative, >= vocab_size()).
  std::string TokenBytes(int32_t id) const;

  // 1 + the largest id over model.vocab and added_tokens.
  int32_t vocab_size() const;

  // The id of an added token with this content, or of the vocab token whose raw
  // bytes are `content` (also accepted: the byte-level spelling, e.g. "Ġthe").
  std::optional<int32_t> TokenId(std::string_view content) const;

  // The pieces the pre-tokenizer cuts `text` into (no added-token splitting,
  // before the byte-level mapping). For tests and debugging.
  std::vector<std::string> PreTokenize(std::string_view text) const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;  // never null
};

// A byte-level BPE tokenizer.json with exactly `vocab_size` ids, for random test
// models. Ids 0..255 are the GPT-2 byte symbols in byte order (id b is byte b),
// then deterministic merges (Ġ+letter, letter+letter, then longer words built by
// appending letters) fill ids 256..vocab_size-2, and id vocab_size-1 is the
// special added token `eos_token`. Pre-tokenizer: the Qwen2 Split regex followed
// by ByteLevel(use_regex=false); normalizer null; decoder ByteLevel.
// Preconditions (CHECKed): vocab_size >= 257, eos_token not empty.
nlohmann::json MakeByteLevelTokenizerJson(int32_t vocab_size, const std::string& eos_token);

}  // namespace moerack
