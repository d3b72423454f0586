// Golden tests against Hugging Face's own tokenizer. For every (tokenizer.json, golden)
// pair listed in tests/data/tokenizer_golden/manifest.json, moerack's Encode must give
// exactly the ids that HF `tokenizers` gave for each string of strings.json
// (add_special_tokens = false, added tokens recognised in the text), and Decode of those
// ids must give back the text, or what HF's decode gave where a golden case records it
// ("decoded": a normalizer, an lstrip/rstrip token, a Removed split or ByteLevel's prefix
// space changed the text).
// The goldens are made offline by tools/tokenizer_golden (README.md there); adding a
// tokenizer is one line in manifest.json plus `npm run regen` in that folder.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/mapped_file.h"
#include "tokenizer/tokenizer.h"

namespace moerack {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

constexpr char kManifest[] = "tests/data/tokenizer_golden/manifest.json";

// Cases where moerack is known to disagree with HF, pending a fix in src/tokenizer/.
// Such a case is skipped (and listed in the output); once moerack agrees, the test
// fails until its entry is removed, so that the list never goes stale. `text` is
// compared as a C string, so an entry cannot name a text with a NUL in it.
struct KnownDisagreement {
  const char* golden;  // the golden's name (file stem), e.g. "o200k-digits-nfc"
  const char* text;    // the case's text, exactly
  const char* reason;  // the cause in src/tokenizer/
};
// Empty: moerack agrees with HF on every case. An entry looks like
//   {"o200k-digits-nfc", "cafe\u0301 decomposed", "NFC normalizer treated as the identity"},
constexpr std::initializer_list<KnownDisagreement> kKnownDisagreements = {};

const KnownDisagreement* FindKnownDisagreement(const std::string& golden, const std::string& text) {
  for (const KnownDisagreement& known : kKnownDisagreements) {
    if (golden == known.golden && text == known.text) return &known;
  }
  return nullptr;
}

std::string Path(const std::string& relative) {
  return std::string(MOERACK_SOURCE_DIR) + "/" + relative;
}

// `text` as a C string literal body: non-ASCII and control bytes as \xNN.
std::string Escaped(std::string_view text) {
  std::string out;
  for (char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (b >= 0x20 && b < 0x7F) {
      out += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02X", b);
      out += hex;
    }
  }
  return out;
}

std::string IdsString(const Ids& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i > 0 ? "," : "") + std::to_string(ids[i]);
  return out + "]";
}

StatusOr<json> ReadJson(const std::string& relative) {
  MR_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(Path(relative)));
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    return Error(relative + ": invalid JSON: " + e.what());
  }
}

struct GoldenPair {
  std::string name;       // the golden's file stem; the test's name
  std::string tokenizer;  // tokenizer.json, relative to the repository root
  std::string golden;     // golden file, relative to the repository root
  std::string strings;    // strings.json the golden was made from
  std::string error;      // not empty: the manifest could not be read; the test fails with it
};

// The pairs of the manifest. Runs while tests are registered, so it reports a bad
// manifest as one pair whose test fails, rather than crashing.
std::vector<GoldenPair> ReadManifest() {
  StatusOr<json> manifest = ReadJson(kManifest);
  const auto failed = [](std::string message) {
    GoldenPair pair;
    pair.name = "manifest";
    pair.error = std::move(message);
    return std::vector<GoldenPair>{pair};
  };
  if (!manifest.ok()) return failed(manifest.status().message());
  std::vector<GoldenPair> pairs;
  try {
    for (const json& entry : manifest->at("pairs")) {
      GoldenPair pair;
      pair.tokenizer = entry.at("tokenizer").get<std::string>();
      pair.golden = entry.at("golden").get<std::string>();
      pair.strings = manifest->at("strings").get<std::string>();
      const size_t slash = pair.golden.find_last_of('/');
      pair.name = pair.golden.substr(slash + 1, pair.golden.rfind(".json") - slash - 1);
      pairs.push_back(std::move(pair));
    }
  } catch (const json::exception& e) {
    return failed(std::string(kManifest) + ": " + e.what());
  }
  return pairs;
}

// For gtest's messages about a parameter.
void PrintTo(const GoldenPair& pair, std::ostream* os) { *os << pair.golden; }

class HfGoldenTest : public testing::TestWithParam<GoldenPair> {};

TEST_P(HfGoldenTest, EncodeAndDecodeMatchHf) {
  const GoldenPair& pair = GetParam();
  ASSERT_TRUE(pair.error.empty()) << pair.error;
  const StatusOr<Tokenizer> tokenizer = Tokenizer::FromFile(Path(pair.tokenizer));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().message();
  const StatusOr<json> golden = ReadJson(pair.golden);
  ASSERT_TRUE(golden.ok()) << golden.status().message();
  const json& cases = golden->at("cases");
  ASSERT_FALSE(cases.empty()) << pair.golden;

  int num_checked = 0;
  std::vector<const KnownDisagreement*> skipped;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string text = cases[i].at("text").get<std::string>();
    const Ids expected = cases[i].at("ids").get<Ids>();
    const std::string expected_decoded = cases[i].value("decoded", text);
    SCOPED_TRACE(pair.golden + " case " + std::to_string(i) + ": \"" + Escaped(text) + "\"");

    const Ids ids = tokenizer->Encode(text);
    if (const KnownDisagreement* known = FindKnownDisagreement(pair.name, text)) {
      EXPECT_NE(ids, expected) << "moerack now agrees with HF here: remove this case from "
                                  "kKnownDisagreements";
      skipped.push_back(known);
      continue;
    }
    EXPECT_EQ(ids, expected) << "HF " << IdsString(expected) << "\nmoerack " << IdsString(ids);
    EXPECT_EQ(tokenizer->Decode(expected), expected_decoded);
    ++num_checked;
  }
  std::cout << "[ HfGolden ] " << pair.name << ": " << num_checked << " cases checked, "
            << skipped.size() << " skipped as known disagreements\n";
  for (const KnownDisagreement* known : skipped) {
    std::cout << "[ HfGolden ]   known disagreement, skipped: \"" << Escaped(known->text)
              << "\": " << known->reason << "\n";
  }
}

// The golden must have been made from the current strings.json: one case per string,
// in order. Otherwise it is stale: rerun `npm run regen` in tools/tokenizer_golden.
TEST_P(HfGoldenTest, GoldenCoversStrings) {
  const GoldenPair& pair = GetParam();
  ASSERT_TRUE(pair.error.empty()) << pair.error;
  const StatusOr<json> golden = ReadJson(pair.golden);
  ASSERT_TRUE(golden.ok()) << golden.status().message();
  const StatusOr<json> strings = ReadJson(pair.strings);
  ASSERT_TRUE(strings.ok()) << strings.status().message();
  std::vector<std::string> texts;
  for (const json& c : golden->at("cases")) texts.push_back(c.at("text").get<std::string>());
  EXPECT_EQ(texts, strings->at("strings").get<std::vector<std::string>>())
      << pair.golden << " is stale: regenerate it (tools/tokenizer_golden/README.md)";
}

std::string PairName(const testing::TestParamInfo<GoldenPair>& info) {
  std::string name = info.param.name;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(HfGolden, HfGoldenTest, testing::ValuesIn(ReadManifest()), PairName);

}  // namespace
}  // namespace moerack
