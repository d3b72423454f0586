// Normalizers as HF `tokenizers` applies them (normalizers/{unicode,utils}.rs,
// NormalizedString::{nfc,nfd,nfkc,nfkd,lowercase}), with ICU doing the Unicode work.
#include "tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/casemap.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uniset.h>
#include <unicode/utypes.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <iterator>
#include <memory>
#include <utility>

#include "core/check.h"
#include "tokenizer/pre_tokenizer.h"

namespace moerack::tokenizer_internal {

using nlohmann::json;

namespace {

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; });
}

// ICU's four normalization forms restricted to the characters of Unicode 9.0,
// the tables HF's normalizers are built from (normalizer.h). The others pass
// through unchanged and, having no decomposition and combining class 0 in those
// tables, act as boundaries: exactly what FilteredNormalizer2 does with them.
// Built once; ICU's getters and FilteredNormalizer2 are safe to share for const use.
struct Unicode9Forms {
  icu::UnicodeSet unicode9;
  std::unique_ptr<const icu::Normalizer2> nfc, nfd, nfkc, nfkd;

  static const Unicode9Forms& Get() {
    static const Unicode9Forms* const forms = new Unicode9Forms();
    return *forms;
  }

 private:
  Unicode9Forms() {
    UErrorCode status = U_ZERO_ERROR;
    unicode9.applyPattern(icu::UnicodeString(u"[:age=9.0:]"), status);  // Age <= 9.0.
    CHECK(U_SUCCESS(status)) << "ICU: cannot build the Unicode 9.0 set: " << u_errorName(status);
    unicode9.freeze();
    const auto filtered = [&](const icu::Normalizer2* form, const char* name) {
      CHECK(U_SUCCESS(status) && form != nullptr)
          << "ICU: no " << name << " normalizer: " << u_errorName(status);
      return std::make_unique<const icu::FilteredNormalizer2>(*form, unicode9);
    };
    nfc = filtered(icu::Normalizer2::getNFCInstance(status), "NFC");
    nfd = filtered(icu::Normalizer2::getNFDInstance(status), "NFD");
    nfkc = filtered(icu::Normalizer2::getNFKCInstance(status), "NFKC");
    nfkd = filtered(icu::Normalizer2::getNFKDInstance(status), "NFKD");
  }
};

}  // namespace

StatusOr<Normalizer> Normalizer::FromJson(const json& j, const std::string& field) {
  Normalizer normalizer;
  MR_RETURN_IF_ERROR(Parse(j, field, &normalizer.forms_));
  return normalizer;
}

Status Normalizer::Parse(const json& j, const std::string& field, std::vector<Form>* forms) {
  if (j.is_null()) return Status::Ok();
  MR_ASSIGN_OR_RETURN(const std::string type, ReadType(j, field));
  if (type == "Sequence") {
    const auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) return Error(field + ".normalizers: expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      MR_RETURN_IF_ERROR(Parse((*it)[i], field + ".normalizers[" + std::to_string(i) + "]", forms));
    }
    return Status::Ok();
  }
  static constexpr std::pair<const char*, Form> kForms[] = {{"NFC", Form::kNfc},
                                                            {"NFD", Form::kNfd},
                                                            {"NFKC", Form::kNfkc},
                                                            {"NFKD", Form::kNfkd},
                                                            {"Lowercase", Form::kLowercase}};
  const auto* found = std::find_if(std::begin(kForms), std::end(kForms),
                                   [&](const auto& entry) { return type == entry.first; });
  if (found == std::end(kForms)) {
    return Error(field + ".type: unsupported normalizer " + Quoted(type) +
                 " (supported: null, NFC, NFD, NFKC, NFKD, Lowercase, Sequence)");
  }
  forms->push_back(found->second);
  return Status::Ok();
}

void Normalizer::Apply(Form form, std::string_view run, std::string* out) {
  if (run.empty()) return;
  CHECK_LE(run.size(), size_t{INT32_MAX}) << "text too long for ICU";
  UErrorCode status = U_ZERO_ERROR;
  icu::StringByteSink<std::string> sink(out);  // Appends to *out.
  const icu::StringPiece piece(run.data(), static_cast<int32_t>(run.size()));
  const Unicode9Forms& forms = Unicode9Forms::Get();
  switch (form) {
    case Form::kNfc:
      forms.nfc->normalizeUTF8(0, piece, sink, nullptr, status);
      break;
    case Form::kNfd:
      forms.nfd->normalizeUTF8(0, piece, sink, nullptr, status);
      break;
    case Form::kNfkc:
      forms.nfkc->normalizeUTF8(0, piece, sink, nullptr, status);
      break;
    case Form::kNfkd:
      forms.nfkd->normalizeUTF8(0, piece, sink, nullptr, status);
      break;
    case Form::kLowercase:
      // One character at a time, as HF does (NormalizedString::lowercase maps
      // each char with char::to_lowercase): ICU's whole-string lowercasing would
      // apply context rules such as the final sigma.
      for (size_t pos = 0; pos < run.size();) {
        const auto byte = static_cast<uint8_t>(run[pos]);
        if (byte < 0x80) {
          out->push_back(static_cast<char>(byte >= 'A' && byte <= 'Z' ? byte + ('a' - 'A') : byte));
          ++pos;
          continue;
        }
        uint32_t cp;
        const size_t len = DecodeUtf8(run, pos, &cp);
        CHECK_GT(len, 0u) << "Apply needs valid UTF-8";
        icu::CaseMap::utf8ToLower("", 0,
                                  icu::StringPiece(run.data() + pos, static_cast<int32_t>(len)),
                                  sink, nullptr, status);
        pos += len;
      }
      break;
  }
  CHECK(U_SUCCESS(status)) << "ICU normalization failed: " << u_errorName(status);
}

std::string_view Normalizer::Normalize(std::string_view text, std::string* storage) const {
  std::string_view current = text;
  std::string next;
  for (const Form form : forms_) {
    // Pure ASCII is already in every normalization form (and stays ASCII).
    if (form != Form::kLowercase && IsAscii(current)) continue;
    next.clear();
    next.reserve(current.size() + current.size() / 8);
    // Maximal runs of valid UTF-8 go through Apply; an invalid byte is kept as it is.
    size_t run_begin = 0, pos = 0;
    while (pos < current.size()) {
      uint32_t cp;
      const size_t len = DecodeUtf8(current, pos, &cp);
      if (len > 0) {
        pos += len;
        continue;
      }
      Apply(form, current.substr(run_begin, pos - run_begin), &next);
      next.push_back(current[pos]);
      run_begin = ++pos;
    }
    Apply(form, current.substr(run_begin), &next);
    storage->swap(next);
    current = *storage;
  }
  return current;
}

}  // namespace moerack::tokenizer_internal
