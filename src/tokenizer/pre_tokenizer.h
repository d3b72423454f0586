// Internal to src/tokenizer (everyone else uses tokenizer.h): the pre-tokenizer
// stage of a HF tokenizer.json (with PCRE2 regexes), plus the UTF-8 and
// JSON-field helpers the rest of src/tokenizer shares (normalizer.h is the stage
// before this one).
// Thread-safety: PreTokenizer is immutable after FromJson; Split may be called
// concurrently. The free functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace moerack::tokenizer_internal {

// Length (1..4) of the valid UTF-8 sequence starting at s[pos] and its code
// point in *cp; 0 if the bytes there are not one (truncated, overlong, surrogate,
// > U+10FFFF: what PCRE2 rejects too). Precondition: pos < s.size().
size_t DecodeUtf8(std::string_view s, size_t pos, uint32_t* cp);
void AppendUtf8(uint32_t cp, std::string* out);

// tokenizer.json field readers. `field` is the path of `object` in error
// messages (e.g. "model"); a missing or null key gives the fallback / "".
std::string Quoted(std::string_view s);
Status ReadBool(const nlohmann::json& object, const char* key, bool fallback,
                const std::string& field, bool* out);
Status ReadString(const nlohmann::json& object, const char* key, const std::string& field,
                  std::string* out);
// The required "type" of a tokenizer.json component object.
StatusOr<std::string> ReadType(const nlohmann::json& object, const std::string& field);

class Regex;  // A compiled PCRE2 pattern; pre_tokenizer.cc.

// HF's Split behaviours: what happens to the pieces a pattern matches.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// The pre_tokenizer stage: Sequence, Split (Regex or String pattern, any
// behaviour, invert), ByteLevel (add_prefix_space; use_regex = the GPT-2 regex),
// Digits (individual_digits), or null (the text is one piece).
class PreTokenizer {
 public:
  // Parses the value of "pre_tokenizer". Errors name `field` and the bad part.
  static StatusOr<PreTokenizer> FromJson(const nlohmann::json& j, const std::string& field);

  // The non-empty pieces `text` is cut into, in order. `text` may hold any
  // bytes; regexes never match invalid UTF-8, which stays in the gaps.
  std::vector<std::string> Split(std::string_view text) const;

 private:
  // One step of the flattened pipeline: a Split, or the prefix space of a
  // ByteLevel (whose GPT-2 regex, like Digits, becomes a Split step).
  struct Step {
    enum class Kind { kSplit, kAddPrefixSpace };
    Kind kind = Kind::kSplit;
    std::shared_ptr<const Regex> regex = nullptr;  // null: split on `literal`
    std::string literal = {};
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
  };

  static Status Parse(const nlohmann::json& j, const std::string& field, std::vector<Step>* steps);
  static StatusOr<Step> ParseSplit(const nlohmann::json& j, const std::string& field);
  static void Apply(const Step& step, const std::string& piece, std::vector<std::string>* out);

  std::vector<Step> steps_;
};

}  // namespace moerack::tokenizer_internal
