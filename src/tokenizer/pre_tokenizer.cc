// Pre-tokenization as HF `tokenizers` does it (normalizer.rs `split`,
// pre_tokenizers/{split,byte_level,digits,sequence}.rs), with PCRE2 regexes.
#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "core/check.h"

namespace moerack::tokenizer_internal {

using nlohmann::json;

namespace {

// What ByteLevel(use_regex = true) splits with: the GPT-2 regex.
constexpr char kGpt2Regex[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

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

struct Span {
  size_t begin;
  size_t end;
};

struct Segment {
  Span span;
  bool is_match;
};

}  // namespace

// ---------------------------------------------------------------------------
// UTF-8 and JSON helpers.

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

std::string Quoted(std::string_view s) {
  std::string quoted;
  quoted.reserve(s.size() + 2);
  quoted += '"';
  quoted += s;
  quoted += '"';
  return quoted;
}

Status ReadBool(const json& object, const char* key, bool fallback, const std::string& field,
                bool* out) {
  *out = fallback;
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return Status::Ok();
  if (!it->is_boolean()) return Error(field + "." + key + ": expected a boolean");
  *out = it->get<bool>();
  return Status::Ok();
}

Status ReadString(const json& object, const char* key, const std::string& field, std::string* out) {
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

// ---------------------------------------------------------------------------
// Regexes.

// A compiled PCRE2 pattern (UTF + UCP, so \p{L}, \s etc. are Unicode-aware).
// Immutable; each FindAll allocates its own match data, so sharing is safe.
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
      int rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK, match_data.get(),
                           nullptr);
      if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
        // JIT stack or another resource limit: retry with the interpreter, which
        // keeps its backtracking frames on the heap.
        rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                         match_data.get(), nullptr);
      }
      if (rc < 0) break;  // No (further) match: the rest is a gap.
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data.get());
      const size_t begin = ovector[0], end = ovector[1];
      if (end < begin || begin < start) break;  // Only \K can do this; no tokenizer uses it.
      if (end > begin) {
        matches->push_back({base + begin, base + end});
        start = end;
      } else {  // Empty matches are dropped (HF filters empty pieces); step one char.
        uint32_t cp;
        start = begin + std::max<size_t>(1, DecodeUtf8(text, begin, &cp));
      }
    }
  }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
};

namespace {

// Cuts `piece` into alternating gap / match segments covering it, as HF's
// Pattern::find_matches, with the flags flipped when `invert`.
std::vector<Segment> FindSegments(const Regex* regex, const std::string& literal, bool invert,
                                  std::string_view piece) {
  std::vector<Span> matches;
  if (regex != nullptr) {
    // Match each run of valid UTF-8; an invalid byte between runs joins a gap.
    size_t pos = 0;
    while (pos < piece.size()) {
      const size_t valid = ValidUtf8PrefixLength(piece.substr(pos));
      regex->FindAll(piece.substr(pos, valid), pos, &matches);
      pos += valid + 1;
    }
  } else if (!literal.empty()) {
    for (size_t pos = piece.find(literal); pos != std::string_view::npos;
         pos = piece.find(literal, pos + literal.size())) {
      matches.push_back({pos, pos + literal.size()});
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
  if (invert) {
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
      // The mirror image: a match joins the piece after it, unless a match.
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
      // Runs of consecutive matches (or gaps) become one piece.
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

}  // namespace

// ---------------------------------------------------------------------------
// PreTokenizer.

StatusOr<PreTokenizer> PreTokenizer::FromJson(const json& j, const std::string& field) {
  PreTokenizer pre_tokenizer;
  MR_RETURN_IF_ERROR(Parse(j, field, &pre_tokenizer.steps_));
  return pre_tokenizer;
}

StatusOr<PreTokenizer::Step> PreTokenizer::ParseSplit(const json& j, const std::string& field) {
  Step step;
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
  static constexpr std::pair<const char*, SplitBehavior> kBehaviors[] = {
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

Status PreTokenizer::Parse(const json& j, const std::string& field, std::vector<Step>* steps) {
  if (j.is_null()) return Status::Ok();
  MR_ASSIGN_OR_RETURN(const std::string type, ReadType(j, field));
  if (type == "Sequence") {
    const auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) {
      return Error(field + ".pretokenizers: expected an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      MR_RETURN_IF_ERROR(
          Parse((*it)[i], field + ".pretokenizers[" + std::to_string(i) + "]", steps));
    }
  } else if (type == "Split") {
    MR_ASSIGN_OR_RETURN(Step step, ParseSplit(j, field));
    steps->push_back(std::move(step));
  } else if (type == "ByteLevel") {
    // HF defaults: add_prefix_space = true, use_regex = true. The byte mapping
    // itself is done by the BPE model (tokenizer.cc).
    bool add_prefix_space, use_regex;
    MR_RETURN_IF_ERROR(ReadBool(j, "add_prefix_space", true, field, &add_prefix_space));
    MR_RETURN_IF_ERROR(ReadBool(j, "use_regex", true, field, &use_regex));
    if (add_prefix_space) steps->push_back({.kind = Step::Kind::kAddPrefixSpace});
    if (use_regex) steps->push_back({.regex = Regex::Compile(kGpt2Regex).value()});
  } else if (type == "Digits") {
    // HF splits on char::is_numeric (= \p{N}): each digit alone, or runs.
    bool individual_digits;
    MR_RETURN_IF_ERROR(ReadBool(j, "individual_digits", false, field, &individual_digits));
    const char* pattern = individual_digits ? R"(\p{N})" : R"(\p{N}+)";
    steps->push_back({.regex = Regex::Compile(pattern).value()});
  } else {
    return Error(field + ".type: unsupported pre-tokenizer " + Quoted(type) +
                 " (supported: Sequence, Split, ByteLevel, Digits)");
  }
  return Status::Ok();
}

void PreTokenizer::Apply(const Step& step, const std::string& piece,
                         std::vector<std::string>* out) {
  switch (step.kind) {
    case Step::Kind::kAddPrefixSpace:
      out->push_back(piece.starts_with(' ') ? piece : " " + piece);
      return;
    case Step::Kind::kSplit: {
      const std::vector<Segment> segments =
          FindSegments(step.regex.get(), step.literal, step.invert, piece);
      for (const Span& span : ApplyBehavior(step.behavior, segments)) {
        if (span.end > span.begin) out->push_back(piece.substr(span.begin, span.end - span.begin));
      }
      return;
    }
  }
}

std::vector<std::string> PreTokenizer::Split(std::string_view text) const {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.emplace_back(text);
  std::vector<std::string> next;
  for (const Step& step : steps_) {
    next.clear();
    for (const std::string& piece : pieces) Apply(step, piece, &next);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace moerack::tokenizer_internal
