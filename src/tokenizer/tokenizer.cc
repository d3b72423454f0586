// Byte-level BPE: tokenizer.json loading, added-token splitting, pre-tokenizers
// (PCRE2 regexes) and the BPE merge loop. Behaviours mirror HF `tokenizers`
// (normalizer.rs `split`, pre_tokenizers/, models/bpe/word.rs).
#include "tokenizer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <functional>
#include <queue>
#include <unordered_map>
#include <utility>
#include <variant>

#include "core/check.h"
#include "core/mapped_file.h"

namespace moerack {
namespace {

using nlohmann::json;

// The Qwen2 pre-tokenizer regex (formats.md §7), used by MakeByteLevelTokenizerJson.
constexpr char kQwen2Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// What ByteLevel(use_regex = true) splits with: the GPT-2 regex.
constexpr char kGpt2Regex[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Ids this large would make the id -> bytes table absurd; real vocabs are < 1M.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// ---------------------------------------------------------------------------
// UTF-8.

// Length of the valid UTF-8 sequence starting at s[pos] (1..4), or 0 if the
// bytes there are not one (overlong forms, surrogates and > U+10FFFF are
// invalid, as PCRE2 requires). Stores the code point in *cp.
size_t DecodeUtf8(std::string_view s, size_t pos, uint32_t* cp) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t b0 = byte(pos);
  size_t len;
  uint32_t min_cp;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, *cp = b0 & 0x1F, min_cp = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, *cp = b0 & 0x0F, min_cp = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, *cp = b0 & 0x07, min_cp = 0x10000;
  } else {
    return 0;
  }
  if (pos + len > s.size()) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (byte(pos + i) & 0x3F);
  }
  if (*cp < min_cp || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
  return len;
}

size_t ValidUtf8PrefixLength(std::string_view s) {
  size_t pos = 0;
  uint32_t cp;
  while (pos < s.size()) {
    const size_t len = DecodeUtf8(s, pos, &cp);
    if (len == 0) break;
    pos += len;
  }
  return pos;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The Unicode White_Space property (Rust's char::is_whitespace, which HF uses
// for lstrip / rstrip).
bool IsWhitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Byte length of the whitespace character starting at `pos`, or 0.
size_t WhitespaceLengthAt(std::string_view s, size_t pos) {
  uint32_t cp;
  const size_t len = pos < s.size() ? DecodeUtf8(s, pos, &cp) : 0;
  return len > 0 && IsWhitespace(cp) ? len : 0;
}

// Byte length of the whitespace character ending at `pos`, or 0.
size_t WhitespaceLengthBefore(std::string_view s, size_t pos) {
  for (size_t len = 1; len <= 4 && len <= pos; ++len) {
    if (WhitespaceLengthAt(s, pos - len) == len) return len;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// The GPT-2 byte alphabet (bytes_to_unicode): printable bytes map to themselves,
// the other 68 to U+0100.. in byte order, so that every byte is a visible char.

struct ByteAlphabet {
  std::array<std::string, 256> symbol;  // byte -> UTF-8 of its code point
  std::array<int16_t, 0x200> byte_of;   // code point -> byte, or -1

  static const ByteAlphabet& Get() {
    static const ByteAlphabet alphabet;
    return alphabet;
  }

 private:
  ByteAlphabet() {
    byte_of.fill(-1);
    uint32_t next_extra = 0x100;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? b : next_extra++;
      AppendUtf8(cp, &symbol[b]);
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};

std::string ToByteLevel(std::string_view bytes) {
  const ByteAlphabet& alphabet = ByteAlphabet::Get();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += alphabet.symbol[static_cast<uint8_t>(c)];
  return out;
}

// The bytes a byte-level token string stands for. A token with characters outside
// the alphabet is taken literally, as HF's ByteLevel decoder does.
std::string FromByteLevel(std::string_view token) {
  const ByteAlphabet& alphabet = ByteAlphabet::Get();
  std::string out;
  size_t pos = 0;
  uint32_t cp;
  while (pos < token.size()) {
    const size_t len = DecodeUtf8(token, pos, &cp);
    if (len == 0 || cp >= alphabet.byte_of.size() || alphabet.byte_of[cp] < 0) {
      return std::string(token);
    }
    out.push_back(static_cast<char>(alphabet.byte_of[cp]));
    pos += len;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Regexes.

struct Span {
  size_t begin;
  size_t end;
};

// A compiled PCRE2 pattern (UTF + UCP, so \p{L}, \s etc. are Unicode-aware).
// Immutable; matching allocates its own match data, so sharing is thread-safe.
class Regex {
 public:
  static StatusOr<std::shared_ptr<const Regex>> Compile(const std::string& pattern) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      return Error("invalid regex at offset " + std::to_string(error_offset) + ": " +
                   reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // On failure pcre2_match interprets.
    return std::shared_ptr<const Regex>(new Regex(code));
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the non-empty, non-overlapping matches in `text` (valid UTF-8), left
  // to right, as offsets plus `base`.
  void FindAll(std::string_view text, size_t base, std::vector<Span>* matches) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match_data(
        pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
    CHECK(match_data != nullptr) << "out of memory";
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t start = 0;
    while (start < text.size()) {
      int rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                           match_data.get(), nullptr);
      if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
        // JIT stack or other resource limit: retry with the interpreter, which
        // keeps its backtracking frames on the heap.
        rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                         match_data.get(), nullptr);
      }
      if (rc < 0) break;  // No (further) match; the rest is a gap.
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data.get());
      const size_t begin = ovector[0], end = ovector[1];
      if (end < begin || begin < start) break;  // \K games; not in any tokenizer regex.
      if (end > begin) {
        matches->push_back({base + begin, base + end});
        start = end;
      } else {
        uint32_t cp;
        start = begin + std::max<size_t>(1, DecodeUtf8(text, begin, &cp));
      }
    }
  }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
};

// ---------------------------------------------------------------------------
// Pre-tokenizer steps. A ByteLevel pre-tokenizer becomes an optional prefix-space
// step plus an optional GPT-2 regex Split; Digits becomes a \p{N} Split.

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct SplitStep {
  std::shared_ptr<const Regex> regex;  // null: split on `literal`
  std::string literal;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

struct PrefixSpaceStep {};  // Prepend ' ' to each piece that does not start with one.

using PreTokenizerStep = std::variant<SplitStep, PrefixSpaceStep>;

struct Segment {
  Span span;
  bool is_match;
};

// Cuts `piece` into alternating gap / match segments covering it, as HF's
// Pattern::find_matches. Invalid UTF-8 bytes are never matched by a regex.
std::vector<Segment> FindSegments(const SplitStep& step, std::string_view piece) {
  std::vector<Span> matches;
  if (step.regex != nullptr) {
    size_t pos = 0;
    while (pos < piece.size()) {
      const size_t valid = ValidUtf8PrefixLength(piece.substr(pos));
      step.regex->FindAll(piece.substr(pos, valid), pos, &matches);
      pos += valid + 1;  // Skip the invalid byte, if any.
    }
  } else if (!step.literal.empty()) {
    for (size_t pos = piece.find(step.literal); pos != std::string_view::npos;
         pos = piece.find(step.literal, pos + step.literal.size())) {
      matches.push_back({pos, pos + step.literal.size()});
    }
  }
  std::vector<Segment> segments;
  size_t previous_end = 0;
  for (const Span& match : matches) {
    if (match.begin > previous_end) segments.push_back({{previous_end, match.begin}, false});
    segments.push_back({match, true});
    previous_end = match.end;
  }
  if (previous_end < piece.size()) segments.push_back({{previous_end, piece.size()}, false});
  if (step.invert) {
    for (Segment& segment : segments) segment.is_match = !segment.is_match;
  }
  return segments;
}

// The spans to keep, per HF's SplitDelimiterBehavior (normalizer.rs `split`).
std::vector<Span> ApplyBehavior(SplitBehavior behavior, const std::vector<Segment>& segments) {
  std::vector<Span> spans;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Segment& s : segments) spans.push_back(s.span);
      break;
    case SplitBehavior::kRemoved:
      for (const Segment& s : segments) {
        if (!s.is_match) spans.push_back(s.span);
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      // A match joins the piece before it, unless that piece was a match too.
      for (const Segment& s : segments) {
        if (s.is_match && !previous_match && !spans.empty()) {
          spans.back().end = s.span.end;
        } else {
          spans.push_back(s.span);
        }
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      // Mirror image: a match joins the piece after it, unless that was a match.
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous_match && !spans.empty()) {
          spans.back().begin = it->span.begin;
        } else {
          spans.push_back(it->span);
        }
        previous_match = it->is_match;
      }
      std::reverse(spans.begin(), spans.end());
      break;
    case SplitBehavior::kContiguous:
      // Runs of consecutive matches (and of gaps) become one piece.
      for (const Segment& s : segments) {
        if (s.is_match == previous_match && !spans.empty()) {
          spans.back().end = s.span.end;
        } else {
          spans.push_back(s.span);
        }
        previous_match = s.is_match;
      }
      break;
  }
  return spans;
}

void ApplyStep(const PreTokenizerStep& step, const std::string& piece,
               std::vector<std::string>* out) {
  if (std::holds_alternative<PrefixSpaceStep>(step)) {
    out->push_back(piece.starts_with(' ') ? piece : " " + piece);
    return;
  }
  const SplitStep& split = std::get<SplitStep>(step);
  for (const Span& span : ApplyBehavior(split.behavior, FindSegments(split, piece))) {
    if (span.end > span.begin) out->push_back(piece.substr(span.begin, span.end - span.begin));
  }
}

// ---------------------------------------------------------------------------
// JSON field access with errors that name the field.

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Reads an optional bool: missing or null gives `fallback`.
Status ReadBool(const json& object, const char* key, bool fallback, const std::string& field,
                bool* out) {
  *out = fallback;
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return Status::Ok();
  if (!it->is_boolean()) return Error(field + "." + key + ": expected a boolean");
  *out = it->get<bool>();
  return Status::Ok();
}

// Reads an optional string: missing or null gives "".
Status ReadString(const json& object, const char* key, const std::string& field,
                  std::string* out) {
  out->clear();
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return Error(field + "." + key + ": expected a string");
  *out = it->get<std::string>();
  return Status::Ok();
}

StatusOr<std::string> ReadType(const json& object, const std::string& field) {
  if (!object.is_object()) return Error(field + ": expected an object or null");
  std::string type;
  MR_RETURN_IF_ERROR(ReadString(object, "type", field, &type));
  if (type.empty()) return Error(field + ".type: missing");
  return type;
}

StatusOr<int32_t> ReadId(const json& value, const std::string& field) {
  if (!value.is_number_integer()) return Error(field + ": id must be an integer");
  const int64_t id = value.get<int64_t>();
  if (id < 0 || id > kMaxTokenId) {
    return Error(field + ": id " + std::to_string(id) + " out of range [0, " +
                 std::to_string(kMaxTokenId) + "]");
  }
  return static_cast<int32_t>(id);
}

Status CheckNormalizer(const json& j, const std::string& field) {
  if (j.is_null()) return Status::Ok();
  MR_ASSIGN_OR_RETURN(const std::string type, ReadType(j, field));
  if (type == "NFC") return Status::Ok();  // Identity here: no ICU (see tokenizer.h).
  if (type == "Sequence") {
    const auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) return Error(field + ".normalizers: expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      MR_RETURN_IF_ERROR(CheckNormalizer((*it)[i], field + ".normalizers[" + std::to_string(i) + "]"));
    }
    return Status::Ok();
  }
  return Error(field + ".type: unsupported normalizer " + Quoted(type) +
               " (supported: null, NFC, Sequence)");
}

Status CheckDecoder(const json& j) {
  if (j.is_null()) return Status::Ok();
  MR_ASSIGN_OR_RETURN(const std::string type, ReadType(j, "decoder"));
  if (type != "ByteLevel") {
    return Error("decoder.type: unsupported decoder " + Quoted(type) + " (supported: ByteLevel)");
  }
  return Status::Ok();
}

StatusOr<SplitStep> ParseSplit(const json& j, const std::string& field) {
  SplitStep step;
  const auto pattern = j.find("pattern");
  if (pattern == j.end() || !pattern->is_object() || pattern->size() != 1 ||
      !pattern->begin()->is_string()) {
    return Error(field + ".pattern: expected {\"Regex\": ...} or {\"String\": ...}");
  }
  const std::string kind = pattern->begin().key();
  const std::string text = pattern->begin()->get<std::string>();
  if (kind == "Regex") {
    auto regex = Regex::Compile(text);
    if (!regex.ok()) return regex.status().WithContext(field + ".pattern.Regex");
    step.regex = std::move(regex).value();
  } else if (kind == "String") {
    step.literal = text;
  } else {
    return Error(field + ".pattern: unsupported pattern kind " + Quoted(kind));
  }
  std::string behavior;
  MR_RETURN_IF_ERROR(ReadString(j, "behavior", field, &behavior));
  static const std::pair<const char*, SplitBehavior> kBehaviors[] = {
      {"Removed", SplitBehavior::kRemoved},
      {"Isolated", SplitBehavior::kIsolated},
      {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
      {"MergedWithNext", SplitBehavior::kMergedWithNext},
      {"Contiguous", SplitBehavior::kContiguous}};
  const auto* found = std::find_if(std::begin(kBehaviors), std::end(kBehaviors),
                                   [&](const auto& entry) { return behavior == entry.first; });
  if (found == std::end(kBehaviors)) {
    return Error(field + ".behavior: unsupported split behavior " + Quoted(behavior));
  }
  step.behavior = found->second;
  MR_RETURN_IF_ERROR(ReadBool(j, "invert", false, field, &step.invert));
  return step;
}

Status ParsePreTokenizer(const json& j, const std::string& field,
                         std::vector<PreTokenizerStep>* steps) {
  if (j.is_null()) return Status::Ok();
  MR_ASSIGN_OR_RETURN(const std::string type, ReadType(j, field));
  if (type == "Sequence") {
    const auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) {
      return Error(field + ".pretokenizers: expected an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      MR_RETURN_IF_ERROR(
          ParsePreTokenizer((*it)[i], field + ".pretokenizers[" + std::to_string(i) + "]", steps));
    }
  } else if (type == "Split") {
    MR_ASSIGN_OR_RETURN(SplitStep step, ParseSplit(j, field));
    steps->push_back(std::move(step));
  } else if (type == "ByteLevel") {
    // HF defaults: add_prefix_space = true, use_regex = true.
    bool add_prefix_space, use_regex;
    MR_RETURN_IF_ERROR(ReadBool(j, "add_prefix_space", true, field, &add_prefix_space));
    MR_RETURN_IF_ERROR(ReadBool(j, "use_regex", true, field, &use_regex));
    if (add_prefix_space) steps->push_back(PrefixSpaceStep{});
    if (use_regex) {
      SplitStep step;
      step.regex = Regex::Compile(kGpt2Regex).value();
      steps->push_back(std::move(step));
    }
  } else if (type == "Digits") {
    // HF splits on char::is_numeric (= \p{N}), each digit alone or in runs.
    bool individual_digits;
    MR_RETURN_IF_ERROR(ReadBool(j, "individual_digits", false, field, &individual_digits));
    SplitStep step;
    step.regex = Regex::Compile(individual_digits ? R"(\p{N})" : R"(\p{N}+)").value();
    steps->push_back(std::move(step));
  } else {
    return Error(field + ".type: unsupported pre-tokenizer " + Quoted(type) +
                 " (supported: Sequence, Split, ByteLevel, Digits)");
  }
  return Status::Ok();
}

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

StatusOr<AddedToken> ParseAddedToken(const json& j, const std::string& field) {
  if (!j.is_object()) return Error(field + ": expected an object");
  AddedToken token;
  const auto id = j.find("id");
  if (id == j.end()) return Error(field + ".id: missing");
  MR_ASSIGN_OR_RETURN(token.id, ReadId(*id, field + ".id"));
  MR_RETURN_IF_ERROR(ReadString(j, "content", field, &token.content));
  if (token.content.empty()) return Error(field + ".content: missing or empty");
  MR_RETURN_IF_ERROR(ReadBool(j, "special", false, field, &token.special));
  MR_RETURN_IF_ERROR(ReadBool(j, "lstrip", false, field, &token.lstrip));
  MR_RETURN_IF_ERROR(ReadBool(j, "rstrip", false, field, &token.rstrip));
  MR_RETURN_IF_ERROR(ReadBool(j, "single_word", false, field, &token.single_word));
  return token;
}

// Approximates HF's word-character test for single_word tokens: ASCII letters,
// digits and '_', and any non-ASCII byte.
bool IsWordByte(char c) {
  const auto b = static_cast<uint8_t>(c);
  return b >= 0x80 || std::isalnum(b) || b == '_';
}

uint64_t PairKey(int32_t left, int32_t right) {
  return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
}

}  // namespace

// ---------------------------------------------------------------------------

struct Tokenizer::Impl {
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };

  std::unordered_map<std::string, int32_t> vocab;  // byte-level spelling -> id
  std::unordered_map<uint64_t, Merge> merges;      // PairKey(left id, right id) -> merge
  std::array<int32_t, 256> byte_ids;              // BPE start symbol per byte; -1: skip
  bool ignore_merges = false;
  std::vector<PreTokenizerStep> pre_tokenizer;
  std::vector<AddedToken> added_tokens;
  // Indices into added_tokens by first byte of content, longest content first.
  std::array<std::vector<size_t>, 256> added_by_first_byte;
  std::unordered_map<std::string, int32_t> added_ids;  // content -> id
  std::vector<std::string> id_bytes;                   // id -> raw bytes; "" for holes

  Status Load(const json& j);
  Status LoadModel(const json& model);
  const AddedToken* FindAddedTokenAt(std::string_view text, size_t pos, bool parse_special) const;
  void Encode(std::string_view text, bool parse_special, std::vector<int32_t>* ids) const;
  std::vector<std::string> PreTokenize(std::string_view text) const;
  void EncodePiece(std::string_view piece, std::vector<int32_t>* ids) const;
};

Status Tokenizer::Impl::LoadModel(const json& model) {
  std::string type;
  MR_RETURN_IF_ERROR(ReadString(model, "type", "model", &type));
  if (!type.empty() && type != "BPE") {
    return Error("model.type: unsupported model type " + Quoted(type) + " (supported: BPE)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    std::string value;
    MR_RETURN_IF_ERROR(ReadString(model, key, "model", &value));
    if (!value.empty()) return Error(std::string("model.") + key + ": not supported");
  }
  bool byte_fallback;
  std::string unk_token;
  MR_RETURN_IF_ERROR(ReadBool(model, "ignore_merges", false, "model", &ignore_merges));
  MR_RETURN_IF_ERROR(ReadBool(model, "byte_fallback", false, "model", &byte_fallback));
  MR_RETURN_IF_ERROR(ReadString(model, "unk_token", "model", &unk_token));

  const auto vocab_json = model.find("vocab");
  if (vocab_json == model.end() || !vocab_json->is_object()) {
    return Error("model.vocab: expected an object of token -> id");
  }
  for (const auto& [token, id_json] : vocab_json->items()) {
    MR_ASSIGN_OR_RETURN(const int32_t id, ReadId(id_json, "model.vocab[" + Quoted(token) + "]"));
    vocab.emplace(token, id);
    if (id_bytes.size() <= static_cast<size_t>(id)) id_bytes.resize(id + 1);
    id_bytes[id] = FromByteLevel(token);
    // "<0xXX>" byte-fallback tokens stand for their byte.
    if (byte_fallback && token.size() == 6 && token.starts_with("<0x") && token.ends_with(">")) {
      const std::string hex = token.substr(3, 2);
      if (hex.find_first_not_of("0123456789ABCDEF") == std::string::npos) {
        id_bytes[id] = std::string(1, static_cast<char>(std::stoi(hex, nullptr, 16)));
      }
    }
  }

  const auto merges_json = model.find("merges");
  if (merges_json != model.end() && !merges_json->is_array()) {
    return Error("model.merges: expected an array");
  }
  const size_t num_merges = merges_json == model.end() ? 0 : merges_json->size();
  for (size_t rank = 0; rank < num_merges; ++rank) {
    const std::string field = "model.merges[" + std::to_string(rank) + "]";
    const json& entry = (*merges_json)[rank];
    std::string left, right;
    if (entry.is_string()) {  // "a b"; byte-level tokens never contain ' '.
      const std::string text = entry.get<std::string>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        return Error(field + ": expected \"left right\", got " + Quoted(text));
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      return Error(field + ": expected \"left right\" or [\"left\", \"right\"]");
    }
    int32_t ids[3];
    const std::string parts[3] = {left, right, left + right};
    for (int i = 0; i < 3; ++i) {
      const auto it = vocab.find(parts[i]);
      if (parts[i].empty() || it == vocab.end()) {
        return Error(field + ": token " + Quoted(parts[i]) + " is not in model.vocab");
      }
      ids[i] = it->second;
    }
    merges.emplace(PairKey(ids[0], ids[1]), Merge{static_cast<int32_t>(rank), ids[2]});
  }

  // Start symbols: the byte's alphabet char, else its "<0xXX>" token, else unk.
  const auto unk = unk_token.empty() ? vocab.end() : vocab.find(unk_token);
  for (int b = 0; b < 256; ++b) {
    auto it = vocab.find(ByteAlphabet::Get().symbol[b]);
    if (it == vocab.end() && byte_fallback) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      it = vocab.find(name);
    }
    if (it == vocab.end()) it = unk;
    byte_ids[b] = it == vocab.end() ? -1 : it->second;
  }
  return Status::Ok();
}

Status Tokenizer::Impl::Load(const json& j) {
  if (!j.is_object()) return Error("expected a JSON object at the top level");
  const auto model = j.find("model");
  if (model == j.end() || !model->is_object()) return Error("model: missing or not an object");
  MR_RETURN_IF_ERROR(LoadModel(*model));
  MR_RETURN_IF_ERROR(CheckNormalizer(j.value("normalizer", json()), "normalizer"));
  MR_RETURN_IF_ERROR(ParsePreTokenizer(j.value("pre_tokenizer", json()), "pre_tokenizer",
                                       &pre_tokenizer));
  MR_RETURN_IF_ERROR(CheckDecoder(j.value("decoder", json())));

  const json added = j.value("added_tokens", json::array());
  if (!added.is_array()) return Error("added_tokens: expected an array");
  for (size_t i = 0; i < added.size(); ++i) {
    MR_ASSIGN_OR_RETURN(AddedToken token,
                        ParseAddedToken(added[i], "added_tokens[" + std::to_string(i) + "]"));
    if (id_bytes.size() <= static_cast<size_t>(token.id)) id_bytes.resize(token.id + 1);
    id_bytes[token.id] = token.content;
    added_ids[token.content] = token.id;
    added_tokens.push_back(std::move(token));
  }
  // Longest first, so that the first hit at a position is the longest match.
  std::stable_sort(added_tokens.begin(), added_tokens.end(), [](const auto& a, const auto& b) {
    return a.content.size() > b.content.size();
  });
  for (size_t i = 0; i < added_tokens.size(); ++i) {
    added_by_first_byte[static_cast<uint8_t>(added_tokens[i].content[0])].push_back(i);
  }
  return Status::Ok();
}

const AddedToken* Tokenizer::Impl::FindAddedTokenAt(std::string_view text, size_t pos,
                                                    bool parse_special) const {
  for (size_t index : added_by_first_byte[static_cast<uint8_t>(text[pos])]) {
    const AddedToken& token = added_tokens[index];
    if (token.special && !parse_special) continue;
    if (!text.substr(pos).starts_with(token.content)) continue;
    const size_t end = pos + token.content.size();
    if (token.single_word && ((pos > 0 && IsWordByte(text[pos - 1])) ||
                              (end < text.size() && IsWordByte(text[end])))) {
      continue;
    }
    return &token;
  }
  return nullptr;
}

void Tokenizer::Impl::Encode(std::string_view text, bool parse_special,
                             std::vector<int32_t>* ids) const {
  const auto encode_plain = [&](std::string_view plain) {
    for (const std::string& piece : PreTokenize(plain)) EncodePiece(piece, ids);
  };
  size_t plain_begin = 0;  // Start of the text not yet encoded.
  size_t pos = 0;
  while (pos < text.size()) {
    const AddedToken* token = added_tokens.empty() ? nullptr
                                                   : FindAddedTokenAt(text, pos, parse_special);
    if (token == nullptr) {
      ++pos;
      continue;
    }
    // lstrip / rstrip: the token swallows the whitespace beside it.
    size_t begin = pos, end = pos + token->content.size();
    for (size_t len; token->lstrip && (len = WhitespaceLengthBefore(text, begin)) > 0 &&
                     begin - len >= plain_begin;) {
      begin -= len;
    }
    while (token->rstrip && WhitespaceLengthAt(text, end) > 0) end += WhitespaceLengthAt(text, end);
    encode_plain(text.substr(plain_begin, begin - plain_begin));
    ids->push_back(token->id);
    pos = plain_begin = end;
  }
  encode_plain(text.substr(plain_begin));
}

std::vector<std::string> Tokenizer::Impl::PreTokenize(std::string_view text) const {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.emplace_back(text);
  std::vector<std::string> next;
  for (const PreTokenizerStep& step : pre_tokenizer) {
    next.clear();
    for (const std::string& piece : pieces) ApplyStep(step, piece, &next);
    pieces.swap(next);
  }
  return pieces;
}

// BPE over one piece: start from one symbol per byte and repeatedly apply the
// lowest-ranked merge among adjacent pairs (leftmost on ties). Symbols form a
// linked list; a min-heap holds candidate pairs, and a popped candidate is
// stale (skipped) unless both symbols still hold the ids it was made from.
// Merged tokens are strictly longer, so an id never returns to a position.
void Tokenizer::Impl::EncodePiece(std::string_view piece, std::vector<int32_t>* ids) const {
  if (ignore_merges) {
    const auto it = vocab.find(ToByteLevel(piece));
    if (it != vocab.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev;  // -1: none
    int32_t next;  // -1: none
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  for (char c : piece) {
    const int32_t id = byte_ids[static_cast<uint8_t>(c)];
    if (id < 0) continue;
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t right;
    int32_t left_id;
    int32_t right_id;
    int32_t merged_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto push_pair = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const auto it = merges.find(PairKey(symbols[left].id, symbols[right].id));
    if (it == merges.end()) return;
    queue.push({it->second.rank, left, right, symbols[left].id, symbols[right].id,
                it->second.merged_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    if (left.id != c.left_id || left.next != c.right || right.id != c.right_id) continue;
    left.id = c.merged_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = -1;
    push_pair(left.prev);
    push_pair(c.left);
  }
  // Symbol 0 is never merged away (merges keep the left symbol).
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

// ---------------------------------------------------------------------------

StatusOr<Tokenizer> Tokenizer::FromFile(const std::string& path) {
  MR_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return Error(path + ": invalid JSON: " + e.what());
  }
  StatusOr<Tokenizer> tokenizer = FromJson(j);
  if (!tokenizer.ok()) return tokenizer.status().WithContext(path);
  return tokenizer;
}

StatusOr<Tokenizer> Tokenizer::FromJson(const json& j) {
  auto impl = std::make_shared<Impl>();
  Status status;
  try {
    status = impl->Load(j);
  } catch (const json::exception& e) {  // A type mismatch the field checks missed.
    status = Error(std::string("malformed tokenizer.json: ") + e.what());
  }
  MR_RETURN_IF_ERROR(status);
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> ids;
  impl_->Encode(text, parse_special, &ids);
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids) const {
  std::string text;
  for (int32_t id : ids) {
    if (id >= 0 && id < vocab_size()) text += impl_->id_bytes[id];
  }
  return text;
}

std::string Tokenizer::TokenBytes(int32_t id) const {
  return id >= 0 && id < vocab_size() ? impl_->id_bytes[id] : std::string();
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_bytes.size()); }

std::optional<int32_t> Tokenizer::TokenId(std::string_view content) const {
  const std::string key(content);
  if (const auto it = impl_->added_ids.find(key); it != impl_->added_ids.end()) return it->second;
  if (const auto it = impl_->vocab.find(ToByteLevel(content)); it != impl_->vocab.end()) {
    return it->second;
  }
  if (const auto it = impl_->vocab.find(key); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

std::vector<std::string> Tokenizer::PreTokenize(std::string_view text) const {
  return impl_->PreTokenize(text);
}

// ---------------------------------------------------------------------------

json MakeByteLevelTokenizerJson(int32_t vocab_size, const std::string& eos_token) {
  CHECK_GE(vocab_size, 257);
  const ByteAlphabet& alphabet = ByteAlphabet::Get();
  json vocab = json::object();
  json merges = json::array();
  for (int b = 0; b < 256; ++b) vocab[alphabet.symbol[b]] = b;

  const int32_t eos_id = vocab_size - 1;
  int32_t next_id = 256;
  std::vector<std::string> merged;  // Merged tokens in creation order.
  const auto add_merge = [&](const std::string& left, const std::string& right) {
    const std::string token = left + right;
    if (next_id >= eos_id || vocab.contains(token)) return;
    vocab[token] = next_id++;
    merges.push_back(left + " " + right);
    merged.push_back(token);
  };
  std::vector<std::string> lower, upper;
  for (char c = 'a'; c <= 'z'; ++c) lower.emplace_back(1, c);
  for (char c = 'A'; c <= 'Z'; ++c) upper.emplace_back(1, c);
  const std::string& space = alphabet.symbol[' '];  // "Ġ"
  for (const auto* letters : {&lower, &upper}) {
    for (const std::string& letter : *letters) add_merge(space, letter);
  }
  for (const std::string& a : lower) {
    for (const std::string& b : lower) add_merge(a, b);
  }
  // Longer words: extend every merged token by a letter, breadth first. Each
  // extension is new, so this fills any vocab size.
  for (size_t i = 0; next_id < eos_id && i < merged.size(); ++i) {
    for (const std::string& letter : lower) add_merge(merged[i], letter);
  }
  CHECK_EQ(next_id, eos_id);

  json pre_tokenizer = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", kQwen2Regex}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"},
         {"add_prefix_space", false},
         {"trim_offsets", false},
         {"use_regex", false}}}}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens",
           {{{"id", eos_id},
             {"content", eos_token},
             {"single_word", false},
             {"lstrip", false},
             {"rstrip", false},
             {"normalized", false},
             {"special", true}}}},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre_tokenizer},
          {"post_processor", nullptr},
          {"decoder",
           {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", vocab},
            {"merges", merges}}}};
}

}  // namespace moerack
