// Internal to src/tokenizer (everyone else uses tokenizer.h): the normalizer stage
// of a HF tokenizer.json (normalizers/{unicode,utils}.rs), with ICU.
// Thread-safety: a Normalizer is immutable after FromJson; Normalize may be called
// concurrently (it uses ICU's shared normalizer instances only through const calls).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace moerack::tokenizer_internal {

// The value of "normalizer": null (the identity), NFC, NFD, NFKC, NFKD, Lowercase,
// or a Sequence of those, applied in order.
//
// Which Unicode this is: HF's normalization forms use tables of Unicode 9.0
// (its unicode-normalization-alignments crate), so characters assigned after 9.0
// pass through them untouched here too (ICU's FilteredNormalizer2 over
// [:age=9.0:]). Lowercase is Rust's char::to_lowercase per character (the full
// mapping, no context: a final capital sigma becomes σ, not ς), from ICU's
// current Unicode.
class Normalizer {
 public:
  // Parses the value of "normalizer". Errors name `field` and the bad part,
  // e.g. `normalizer.normalizers[1].type: unsupported normalizer "Replace"`.
  static StatusOr<Normalizer> FromJson(const nlohmann::json& j, const std::string& field);

  // True when Normalize never changes the text (null, or an empty Sequence).
  bool is_identity() const { return forms_.empty(); }

  // `text` normalized. Returns `text` itself when nothing changes (the identity,
  // or pure ASCII under the normalization forms: no ICU call); otherwise the
  // result is written to *storage and the view points into it. `text` may hold
  // any bytes: each maximal run of valid UTF-8 is normalized on its own and the
  // invalid bytes between runs are kept as they are.
  std::string_view Normalize(std::string_view text, std::string* storage) const;

 private:
  enum class Form { kNfc, kNfd, kNfkc, kNfkd, kLowercase };

  static Status Parse(const nlohmann::json& j, const std::string& field, std::vector<Form>* forms);
  // Appends `run` (valid UTF-8) with `form` applied to *out.
  static void Apply(Form form, std::string_view run, std::string* out);

  std::vector<Form> forms_;
};

}  // namespace moerack::tokenizer_internal
