#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace moerack {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;
using Pieces = std::vector<std::string>;

constexpr char kQwen2Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kDeepSeekV3Regex1[] = R"(\p{N}{1,3})";
constexpr char kDeepSeekV3Regex2[] = R"([一-龥぀-ゟ゠-ヿ]+)";
constexpr char kDeepSeekV3Regex3[] =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kGpt4oRegex[] =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A hand-written tokenizer.json. Merge ranks: 0 "h e", 1 "l l", 2 "he ll",
// 3 "hell o", 4 "e l", 5 "Ġ h". Ids 12..19 are holes.
constexpr char kTinyJson[] = R"json({
  "version": "1.0",
  "added_tokens": [
    {"id": 20, "content": "<sep>", "special": false, "lstrip": false, "rstrip": false},
    {"id": 21, "content": "[SEP]", "special": false, "lstrip": true, "rstrip": true},
    {"id": 22, "content": "<|end|>", "special": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                    "use_regex": true},
  "post_processor": null,
  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
              "use_regex": true},
  "model": {
    "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
    "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
    "ignore_merges": false,
    "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "he": 5, "ll": 6, "hell": 7,
              "hello": 8, "Ġh": 9, "el": 10, "ello": 11},
    "merges": ["h e", "l l", "he ll", "hell o", "e l", "Ġ h"]
  }
})json";

json TinyJson() { return json::parse(kTinyJson); }

Tokenizer Load(const json& j) {
  StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(j);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status().message();
  return std::move(tokenizer).value();
}

// The error message FromJson gives for `j` ("" if it loads).
std::string LoadError(const json& j) {
  StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(j);
  return tokenizer.ok() ? "" : tokenizer.status().message();
}

json SplitRegex(const std::string& regex) {
  return {{"type", "Split"},
          {"pattern", {{"Regex", regex}}},
          {"behavior", "Isolated"},
          {"invert", false}};
}

// A tokenizer with only the 256 byte tokens and the given pre-tokenizer.
Tokenizer WithPreTokenizer(const json& pre_tokenizer) {
  json j = MakeByteLevelTokenizerJson(257, "<eos>");
  j["pre_tokenizer"] = pre_tokenizer;
  return Load(j);
}

std::string RandomAscii(std::mt19937& rng, size_t length) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz ABCXYZ 0123456789 .,!?'\"-\n\t  ";
  std::uniform_int_distribution<size_t> pick(0, sizeof(kChars) - 2);
  std::string s;
  for (size_t i = 0; i < length; ++i) s += kChars[pick(rng)];
  return s;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Random valid UTF-8 drawn from ASCII, Latin-1, Greek, CJK, kana, emoji and
// combining marks.
std::string RandomUtf8(std::mt19937& rng, size_t num_chars) {
  static constexpr std::pair<uint32_t, uint32_t> kRanges[] = {
      {0x20, 0x7E},     {0x0A, 0x0A},     {0xA0, 0xFF},       {0x391, 0x3C9},  {0x300, 0x36F},
      {0x4E00, 0x4FFF}, {0x3040, 0x30FF}, {0x1F600, 0x1F64F}, {0x2000, 0x206F}};
  std::uniform_int_distribution<size_t> pick_range(0, std::size(kRanges) - 1);
  std::string s;
  for (size_t i = 0; i < num_chars; ++i) {
    const auto [lo, hi] = kRanges[pick_range(rng)];
    AppendUtf8(std::uniform_int_distribution<uint32_t>(lo, hi)(rng), &s);
  }
  return s;
}

// ---------------------------------------------------------------------------
// Hand-built tokenizer: known merges give known ids.

TEST(TokenizerTest, TinyMergesGiveKnownIds) {
  const Tokenizer t = Load(TinyJson());
  EXPECT_EQ(t.Encode("hello"), Ids({8}));
  EXPECT_EQ(t.Encode("hell"), Ids({7}));
  EXPECT_EQ(t.Encode("hel"), Ids({5, 2}));   // "h e" (rank 0) beats "e l" (rank 4).
  EXPECT_EQ(t.Encode("elo"), Ids({10, 3}));  // "e l" applies when nothing better does.
  EXPECT_EQ(t.Encode("lll"), Ids({6, 2}));   // Equal ranks: leftmost first.
  // " hello": "Ġ h" (rank 5) loses to "h e" (rank 0), so Ġ stays alone.
  EXPECT_EQ(t.Encode(" hello"), Ids({4, 8}));
  EXPECT_EQ(t.Encode("hello hello"), Ids({8, 4, 8}));
  EXPECT_EQ(t.Encode(""), Ids({}));
}

TEST(TokenizerTest, MergeRankOrderMatters) {
  json j = TinyJson();
  j["model"]["merges"] = {"Ġ h", "h e", "l l", "he ll", "hell o", "e l"};
  const Tokenizer t = Load(j);
  EXPECT_EQ(t.Encode(" hello"), Ids({9, 1, 6, 3}));  // Now "Ġ h" goes first.
  EXPECT_EQ(t.Encode("hello"), Ids({8}));
}

TEST(TokenizerTest, PairFormMergesMatchStringForm) {
  json j = TinyJson();
  json pairs = json::array();
  for (const auto& merge : j["model"]["merges"]) {
    const std::string s = merge.get<std::string>();
    const size_t space = s.find(' ');
    pairs.push_back({s.substr(0, space), s.substr(space + 1)});
  }
  j["model"]["merges"] = pairs;
  const Tokenizer t = Load(j);
  EXPECT_EQ(t.Encode("hello hel lll elo"), Ids({8, 4, 5, 2, 4, 6, 2, 4, 10, 3}));
  EXPECT_EQ(Load(TinyJson()).Encode("hello hel lll elo"), t.Encode("hello hel lll elo"));
}

TEST(TokenizerTest, IgnoreMergesEmitsWholePieces) {
  json j = TinyJson();
  EXPECT_EQ(Load(j).Encode("ello"), Ids({1, 6, 3}));  // "ello" is unreachable by merges.
  j["model"]["ignore_merges"] = true;
  const Tokenizer t = Load(j);
  EXPECT_EQ(t.Encode("ello"), Ids({11}));
  EXPECT_EQ(t.Encode("elo"), Ids({10, 3}));  // Not in vocab: merged as usual.
}

TEST(TokenizerTest, DecodeAndTokenLookups) {
  const Tokenizer t = Load(TinyJson());
  EXPECT_EQ(t.vocab_size(), 23);
  const Ids ids = {8, 4, 8, 22, 9};
  EXPECT_EQ(t.Decode(ids), "hello hello<|end|> h");
  EXPECT_EQ(t.TokenBytes(4), " ");
  EXPECT_EQ(t.TokenBytes(20), "<sep>");
  EXPECT_EQ(t.TokenBytes(15), "");  // A hole.
  EXPECT_EQ(t.TokenBytes(-1), "");
  EXPECT_EQ(t.TokenBytes(23), "");
  EXPECT_EQ(t.TokenId("hello"), 8);
  EXPECT_EQ(t.TokenId(" h"), 9);
  EXPECT_EQ(t.TokenId("Ġh"), 9);
  EXPECT_EQ(t.TokenId("<|end|>"), 22);
  EXPECT_EQ(t.TokenId("zz"), std::nullopt);
}

TEST(TokenizerTest, BytesWithoutTokensAreSkippedOrFallBack) {
  json j = TinyJson();
  EXPECT_EQ(Load(j).Encode("hex"), Ids({5}));  // No token for 'x'.
  j["model"]["byte_fallback"] = true;
  j["model"]["vocab"]["<0x78>"] = 30;
  const Tokenizer t = Load(j);
  EXPECT_EQ(t.Encode("hex"), Ids({5, 30}));
  EXPECT_EQ(t.Decode(t.Encode("hex")), "hex");
}

// ---------------------------------------------------------------------------
// Added and special tokens.

TEST(TokenizerTest, AddedTokensAreSplitOut) {
  const Tokenizer t = Load(TinyJson());
  EXPECT_EQ(t.Encode("hello<sep>hello"), Ids({8, 20, 8}));
  EXPECT_EQ(t.Encode("hello <sep> hello"), Ids({8, 4, 20, 4, 8}));
  // [SEP] has lstrip and rstrip: it swallows the spaces (and only those).
  EXPECT_EQ(t.Encode("hello [SEP] hello"), Ids({8, 21, 8}));
  EXPECT_EQ(t.Encode("hello  [SEP]hello"), Ids({8, 21, 8}));
  EXPECT_EQ(t.Encode("<sep><|end|><sep>"), Ids({20, 22, 20}));
}

TEST(TokenizerTest, SpecialTokensOnlyWhenParsingSpecial) {
  const Tokenizer t = Load(TinyJson());
  EXPECT_EQ(t.Encode("hello<|end|>"), Ids({8, 22}));
  // As text, "<|end|>" has only 'e' in the vocab.
  EXPECT_EQ(t.Encode("hello<|end|>", /*parse_special=*/false), Ids({8, 1}));
  // Non-special added tokens are still recognised.
  EXPECT_EQ(t.Encode("hello<sep>", /*parse_special=*/false), Ids({8, 20}));
}

TEST(TokenizerTest, LongestAddedTokenWins) {
  json j = TinyJson();
  j["added_tokens"].push_back({{"id", 24}, {"content", "<se"}, {"special", false}});
  j["added_tokens"].push_back({{"id", 25}, {"content", "<sep>h"}, {"special", true}});
  const Tokenizer t = Load(j);
  EXPECT_EQ(t.Encode("<sep>hello"), Ids({25, 1, 6, 3}));
  EXPECT_EQ(t.Encode("<sep>hello", false), Ids({20, 8}));
  EXPECT_EQ(t.Encode("<seq"), Ids({24}));  // 'q' has no token.
}

// Tokens with only the 256 byte tokens (id b is byte b, no merges), `normalizer`
// and these added tokens (non-special, normalized: false unless given).
Tokenizer BytesWith(const json& normalizer, const std::vector<json>& added_tokens = {}) {
  json j = MakeByteLevelTokenizerJson(257, "<eos>");
  j["normalizer"] = normalizer;
  for (json token : added_tokens) {
    for (const char* flag : {"special", "normalized", "single_word", "lstrip", "rstrip"}) {
      if (!token.contains(flag)) token[flag] = false;
    }
    j["added_tokens"].push_back(token);
  }
  return Load(j);
}

Ids BytesOf(std::string_view text) {
  Ids ids;
  for (char c : text) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

// Single_word follows HF: the characters beside the match must not be Rust
// regex's Unicode \w (Alphabetic, M, Nd, Pc, Join_Control). HF-verified.
TEST(TokenizerTest, SingleWordTestsUnicodeWordCharacters) {
  const Tokenizer t = BytesWith(nullptr, {{{"id", 300}, {"content", "ML"}, {"single_word", true}}});
  const auto matches = [&](std::string_view text) {
    const Ids ids = t.Encode(text);
    return std::find(ids.begin(), ids.end(), 300) != ids.end();
  };
  // Not word characters: symbols, punctuation, spaces (NBSP too), emoji, No digits.
  for (const char* text : {"ML", "\u2764ML\u2764", "\u2014ML\u2014", "\u00a0ML\u00a0",
                           "\U0001F600ML", "\u00b2ML", "(ML)."}) {
    EXPECT_TRUE(matches(text)) << text;
  }
  EXPECT_TRUE(
      matches("\xff"
              "ML\xc3"));  // Invalid UTF-8 (moerack only): not a word character.
  // Word characters: letters of any script, combining marks, Nd digits of any
  // script, '_' and other Pc, ZWJ, letter numbers (Nl), modifier letters (Lm).
  for (const char* text : {"\u00e9ML", "ML\u00e9", "ML\u0301", "\u0663ML", "_ML", "ML\u203f",
                           "\u200dML", "\u2160ML", "\u02b0ML", "\u65e5ML", "aML", "ML9"}) {
    EXPECT_FALSE(matches(text)) << text;
  }
}

// A rejected single_word match is dropped whole, as in HF's find_matches: the
// search resumes after it, so no shorter or overlapping token is tried inside it.
TEST(TokenizerTest, RejectedSingleWordMatchIsSkippedWhole) {
  const Tokenizer t = BytesWith(nullptr, {{{"id", 300}, {"content", "qzq"}, {"single_word", true}},
                                          {{"id", 301}, {"content", "zq"}},
                                          {{"id", 302}, {"content", "qz"}}});
  EXPECT_EQ(t.Encode("qzq"), Ids({300}));
  EXPECT_EQ(t.Encode("a qzq b"), Ids({'a', ' ', 300, ' ', 'b'}));
  EXPECT_EQ(t.Encode("xqzq"), BytesOf("xqzq"));  // Not "x", "q", 301.
  EXPECT_EQ(t.Encode("qzqc"), BytesOf("qzqc"));  // Not 302, "q", "c".
  EXPECT_EQ(t.Encode("qz zq"), Ids({302, ' ', 301}));
}

// ---------------------------------------------------------------------------
// Normalizers (expected texts checked against HF tokenizers 0.23.2).

// What `t` turns `text` into, through Encode and Decode.
std::string Normalized(const Tokenizer& t, std::string_view text) {
  return t.Decode(t.Encode(text));
}

TEST(TokenizerTest, NfcComposes) {
  const Tokenizer t = BytesWith({{"type", "NFC"}});
  EXPECT_EQ(Normalized(t, "cafe\u0301"), "caf\u00e9");
  EXPECT_EQ(Normalized(t, "A\u030angstr\u00f6m"), "\u00c5ngstr\u00f6m");
  EXPECT_EQ(Normalized(t, "\u212b"), "\u00c5");  // ANGSTROM SIGN: a singleton decomposition.
  EXPECT_EQ(Normalized(t, "\u1100\u1161\u11a8"), "\uac01");    // Hangul jamo compose.
  EXPECT_EQ(Normalized(t, "q\u0307\u0323"), "q\u0323\u0307");  // Canonical reordering.
  // Pure ASCII is NFC already; it takes the fast path, without ICU.
  EXPECT_EQ(Normalized(t, "plain ASCII, 123!"), "plain ASCII, 123!");
  // HF's tables are Unicode 9.0: the Unicode 13 composition U+11935 U+11930 ->
  // U+11938 does not happen there, so not here either.
  EXPECT_EQ(Normalized(t, "\U00011935\U00011930"), "\U00011935\U00011930");
}

TEST(TokenizerTest, NormalizerKeepsInvalidUtf8) {
  const Tokenizer t = BytesWith({{"type", "NFC"}});
  // The mark after the invalid byte has nothing to compose with; the rest does.
  EXPECT_EQ(Normalized(t, "e\xff\u0301 a\u0301"), "e\xff\u0301 \u00e1");
  const Tokenizer lower = BytesWith({{"type", "Lowercase"}});
  EXPECT_EQ(Normalized(lower, "\xc3\xc3\x89\xe2\x82"), "\xc3\xc3\xa9\xe2\x82");  // \xc3\x89 = É
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 50; ++i) {
    std::string text;
    for (int k = 0; k < 40; ++k) text += static_cast<char>(byte(rng));
    EXPECT_FALSE(t.Encode(text).empty());
    EXPECT_FALSE(lower.Encode(text).empty());
  }
}

TEST(TokenizerTest, OtherNormalizers) {
  EXPECT_EQ(Normalized(BytesWith({{"type", "NFD"}}), "caf\u00e9 \u212b"), "cafe\u0301 A\u030a");
  EXPECT_EQ(Normalized(BytesWith({{"type", "NFKC"}}), "\ufb01 \u2460 \u00b2 \uff21 \u1e9b\u0323"),
            "fi 1 2 A \u1e69");
  EXPECT_EQ(Normalized(BytesWith({{"type", "NFKD"}}), "\ufb01 \u00e9"), "fi e\u0301");
  // Per character, as HF: no final sigma; full mappings (U+0130 -> i + U+0307).
  EXPECT_EQ(Normalized(BytesWith({{"type", "Lowercase"}}), "\u039f\u0394\u039f\u03a3 \u0130 ABC"),
            "\u03bf\u03b4\u03bf\u03c3 i\u0307 abc");
  const json sequence = {
      {"type", "Sequence"},
      {"normalizers",
       json::array({json{{"type", "NFD"}}, json{{"type", "Lowercase"}}, json{{"type", "NFC"}}})}};
  EXPECT_EQ(Normalized(BytesWith(sequence), "\u00c9COLE"), "\u00e9cole");
}

// HF's order: tokens with normalized: false match the raw text; the text between
// them is normalized; tokens with normalized: true match that, by their own
// normalized content.
TEST(TokenizerTest, AddedTokensMatchRawOrNormalizedText) {
  const Tokenizer t = BytesWith(
      {{"type", "NFD"}}, {{{"id", 300}, {"content", "\u00c5"}},
                          {{"id", 301}, {"content", "\u00e9t\u00e9"}, {"normalized", true}}});
  EXPECT_EQ(t.Encode("\u00c5"), Ids({300}));
  EXPECT_EQ(t.Encode("A\u030a"), BytesOf("A\u030a"));  // Not the raw content.
  EXPECT_EQ(t.Encode("\u00e9t\u00e9"), Ids({301}));
  EXPECT_EQ(t.Encode("e\u0301te\u0301"), Ids({301}));
  EXPECT_EQ(t.Encode("\u00c5\u00e9t\u00e9 \u00e9"), Ids({300, 301, ' ', 'e', 0xcc, 0x81}));
}

// ---------------------------------------------------------------------------
// The generated tokenizer.

TEST(TokenizerTest, GeneratedTokenizerLayout) {
  const json j = MakeByteLevelTokenizerJson(1000, "<|endoftext|>");
  EXPECT_EQ(j["model"]["merges"].size(), 1000u - 257u);
  const Tokenizer t = Load(j);
  EXPECT_EQ(t.vocab_size(), 1000);
  EXPECT_EQ(t.TokenId("<|endoftext|>"), 999);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(t.TokenBytes(b), std::string(1, static_cast<char>(b)));
  EXPECT_EQ(t.TokenBytes(256), " a");  // First merge: Ġ + a.
  // Ġ+a..z, Ġ+A..Z, then letter pairs: "aa" is id 256 + 52.
  EXPECT_EQ(t.TokenId("aa"), 308);
  EXPECT_EQ(t.Encode("ab"), Ids({309}));
  EXPECT_EQ(t.Encode(" the"), Ids({*t.TokenId(" t"), *t.TokenId("he")}));

  const Tokenizer bytes_only = Load(MakeByteLevelTokenizerJson(257, "<eos>"));
  EXPECT_EQ(bytes_only.Encode("ab c"), Ids({97, 98, 32, 99}));
  EXPECT_EQ(bytes_only.TokenId("<eos>"), 256);
}

TEST(TokenizerTest, GeneratedTokenizerBuildsLongerWords) {
  const Tokenizer t = Load(MakeByteLevelTokenizerJson(5000, "<|endoftext|>"));
  EXPECT_EQ(t.vocab_size(), 5000);
  ASSERT_TRUE(t.TokenId(" ab").has_value());
  EXPECT_EQ(t.Encode(" ab"), Ids({*t.TokenId(" ab")}));
  const std::string text = "the quick brown fox jumps over the lazy dog";
  EXPECT_LE(t.Encode(text).size(), text.size() / 2);  // Bytes alone: 43 tokens.
}

TEST(TokenizerTest, RoundTripsRandomText) {
  const Tokenizer t = Load(MakeByteLevelTokenizerJson(3000, "<|endoftext|>"));
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    const std::string ascii = RandomAscii(rng, 1 + i);
    const std::string utf8 = RandomUtf8(rng, 1 + i);
    for (const std::string& text : {ascii, utf8}) {
      const Ids ids = t.Encode(text);
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < 2999) << id;
      ASSERT_EQ(t.Decode(ids), text);
      std::string streamed;
      for (int32_t id : ids) streamed += t.TokenBytes(id);
      ASSERT_EQ(streamed, text);
    }
  }
}

TEST(TokenizerTest, RoundTripsInvalidUtf8) {
  const Tokenizer t = Load(MakeByteLevelTokenizerJson(1000, "<|endoftext|>"));
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 50; ++i) {
    std::string text;
    for (int k = 0; k < 40; ++k) text += static_cast<char>(byte(rng));
    ASSERT_EQ(t.Decode(t.Encode(text)), text);
  }
  EXPECT_EQ(t.Encode("\xff"), Ids({255}));
}

TEST(TokenizerTest, GeneratedEosIsSpecial) {
  const Tokenizer t = Load(MakeByteLevelTokenizerJson(1000, "<|endoftext|>"));
  Ids expected = t.Encode("hi");
  expected.push_back(999);
  const Ids there = t.Encode("there");
  expected.insert(expected.end(), there.begin(), there.end());
  EXPECT_EQ(t.Encode("hi<|endoftext|>there"), expected);

  const Ids literal = t.Encode("hi<|endoftext|>there", /*parse_special=*/false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 999), 0);
  EXPECT_EQ(t.Decode(literal), "hi<|endoftext|>there");
  EXPECT_EQ(t.Decode(t.Encode("hi<|endoftext|>there")), "hi<|endoftext|>there");
}

TEST(TokenizerTest, ConcurrentEncodesAgree) {
  const Tokenizer t = Load(MakeByteLevelTokenizerJson(2000, "<|endoftext|>"));
  std::mt19937 rng(11);
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i) texts.push_back(RandomUtf8(rng, 200) + "<|endoftext|>");
  std::vector<Ids> expected;
  for (const std::string& text : texts) expected.push_back(t.Encode(text));
  std::vector<int> num_mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      const Tokenizer copy = t;  // Copies share the immutable state.
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i)
          num_mismatches[k] += copy.Encode(texts[i]) != expected[i];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(num_mismatches, std::vector<int>(4, 0));
}

TEST(TokenizerTest, LongInputsAreFast) {
  const Tokenizer t = Load(MakeByteLevelTokenizerJson(3000, "<|endoftext|>"));
  const std::string spaces(200000, ' ');
  EXPECT_EQ(t.Decode(t.Encode(spaces)), spaces);
  std::string letters;
  std::mt19937 rng(1);
  for (int i = 0; i < 200000; ++i) letters += static_cast<char>('a' + rng() % 26);
  const Ids ids = t.Encode(letters);  // One 200 KB piece: BPE must not be quadratic.
  EXPECT_LT(ids.size(), letters.size());
  EXPECT_EQ(t.Decode(ids), letters);
}

// ---------------------------------------------------------------------------
// Pre-tokenizers. Expected pieces worked out from the regexes (and checked
// against Python's `regex` module, which agrees with HF's Oniguruma here).

TEST(TokenizerTest, Qwen2Regex) {
  const Tokenizer t = WithPreTokenizer(SplitRegex(kQwen2Regex));
  EXPECT_EQ(t.PreTokenize("Hello world's 123!"),
            Pieces({"Hello", " world", "'s", " ", "1", "2", "3", "!"}));
  EXPECT_EQ(t.PreTokenize("HOW'S  it\n\n going?  "),
            Pieces({"HOW", "'S", " ", " it", "\n\n", " going", "?", "  "}));
  EXPECT_EQ(t.PreTokenize("Don't stop 日本語テキスト\n"),
            Pieces({"Don", "'t", " stop", " 日本語テキスト", "\n"}));
}

TEST(TokenizerTest, DeepSeekV3Regexes) {
  const Tokenizer t = WithPreTokenizer(
      {{"type", "Sequence"},
       {"pretokenizers",
        {SplitRegex(kDeepSeekV3Regex1),
         SplitRegex(kDeepSeekV3Regex2),
         SplitRegex(kDeepSeekV3Regex3),
         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}});
  EXPECT_EQ(t.PreTokenize("Hello world's 123!"),
            Pieces({"Hello", " world", "'s", " ", "123", "!"}));
  EXPECT_EQ(t.PreTokenize("12345 apples, 東京タワー is 333m!"),
            Pieces({"123", "45", " apples", ",", " ", "東京タワー", " is", " ", "333", "m", "!"}));
}

TEST(TokenizerTest, Gpt4oRegex) {
  const Tokenizer t = WithPreTokenizer(SplitRegex(kGpt4oRegex));
  EXPECT_EQ(t.PreTokenize("Hello world's 123!"), Pieces({"Hello", " world's", " ", "123", "!"}));
  EXPECT_EQ(
      t.PreTokenize("I'M fine, you're 1234567 OK?\r\n  x"),
      Pieces({"I'M", " fine", ",", " you're", " ", "123", "456", "7", " OK", "?\r\n", " ", " x"}));
}

TEST(TokenizerTest, ByteLevelPreTokenizer) {
  const Tokenizer gpt2 =
      WithPreTokenizer({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}});
  EXPECT_EQ(gpt2.PreTokenize("Hello world's 123!"), Pieces({"Hello", " world", "'s", " 123", "!"}));
  EXPECT_EQ(gpt2.PreTokenize("I'M fine?\r\n  x"),
            Pieces({"I", "'", "M", " fine", "?", "\r\n ", " x"}));
  const Tokenizer prefixed = WithPreTokenizer({{"type", "ByteLevel"}, {"add_prefix_space", true}});
  EXPECT_EQ(prefixed.PreTokenize("Hello world"), Pieces({" Hello", " world"}));
  EXPECT_EQ(prefixed.Encode("a"), prefixed.Encode(" a"));
  const Tokenizer none = WithPreTokenizer(nullptr);
  EXPECT_EQ(none.PreTokenize("Hello world"), Pieces({"Hello world"}));
}

TEST(TokenizerTest, DigitsPreTokenizer) {
  const Tokenizer individual = WithPreTokenizer({{"type", "Digits"}, {"individual_digits", true}});
  EXPECT_EQ(individual.PreTokenize("abc123de4"), Pieces({"abc", "1", "2", "3", "de", "4"}));
  EXPECT_EQ(individual.PreTokenize("x٣٤"), Pieces({"x", "٣", "٤"}));  // Arabic-Indic digits.
  const Tokenizer runs = WithPreTokenizer({{"type", "Digits"}, {"individual_digits", false}});
  EXPECT_EQ(runs.PreTokenize("abc123de4"), Pieces({"abc", "123", "de", "4"}));
}

TEST(TokenizerTest, SplitBehaviors) {
  const auto split = [](const char* behavior, bool invert) {
    return WithPreTokenizer({{"type", "Split"},
                             {"pattern", {{"String", "-"}}},
                             {"behavior", behavior},
                             {"invert", invert}});
  };
  const std::string text = "a-b--c";
  EXPECT_EQ(split("Isolated", false).PreTokenize(text), Pieces({"a", "-", "b", "-", "-", "c"}));
  EXPECT_EQ(split("Removed", false).PreTokenize(text), Pieces({"a", "b", "c"}));
  EXPECT_EQ(split("MergedWithPrevious", false).PreTokenize(text), Pieces({"a-", "b-", "-", "c"}));
  EXPECT_EQ(split("MergedWithNext", false).PreTokenize(text), Pieces({"a", "-b", "-", "-c"}));
  EXPECT_EQ(split("Contiguous", false).PreTokenize(text), Pieces({"a", "-", "b", "--", "c"}));
  EXPECT_EQ(split("Removed", true).PreTokenize("a-b-c"), Pieces({"-", "-"}));
  EXPECT_EQ(split("MergedWithPrevious", true).PreTokenize("a-b-c"), Pieces({"a", "-b", "-c"}));
}

TEST(TokenizerTest, InvalidUtf8IsNeverMatchedByRegexes) {
  const Tokenizer t = WithPreTokenizer(SplitRegex(kQwen2Regex));
  EXPECT_EQ(t.PreTokenize("ab\xff"
                          "cd ef"),
            Pieces({"ab", "\xff", "cd", " ef"}));
}

// ---------------------------------------------------------------------------
// Errors name the field.

TEST(TokenizerTest, ModelErrors) {
  EXPECT_NE(LoadError(json::object()).find("model"), std::string::npos);
  EXPECT_NE(LoadError(json::array()), "");

  json j = TinyJson();
  j["model"]["type"] = "WordPiece";
  EXPECT_NE(LoadError(j).find("model.type: unsupported model type \"WordPiece\""),
            std::string::npos);

  j = TinyJson();
  j["model"]["vocab"] = json::array();
  EXPECT_NE(LoadError(j).find("model.vocab"), std::string::npos);
  j = TinyJson();
  j["model"]["vocab"]["x"] = "seven";
  EXPECT_NE(LoadError(j).find("model.vocab[\"x\"]"), std::string::npos);
  j = TinyJson();
  j["model"]["vocab"]["x"] = -3;
  EXPECT_NE(LoadError(j).find("model.vocab[\"x\"]"), std::string::npos);
  j = TinyJson();
  j["model"]["end_of_word_suffix"] = "</w>";
  EXPECT_NE(LoadError(j).find("model.end_of_word_suffix"), std::string::npos);
}

TEST(TokenizerTest, MergeErrors) {
  const auto error_with_merges = [](const json& merges) {
    json j = TinyJson();
    j["model"]["merges"] = merges;
    return LoadError(j);
  };
  EXPECT_EQ(error_with_merges(json::array()), "");
  EXPECT_NE(error_with_merges("h e").find("model.merges: expected an array"), std::string::npos);
  EXPECT_NE(error_with_merges({"h e", "h e l"}).find("model.merges[1]"), std::string::npos);
  EXPECT_NE(error_with_merges({"he"}).find("model.merges[0]"), std::string::npos);
  EXPECT_NE(error_with_merges({json::array({"h"})}).find("model.merges[0]"), std::string::npos);
  EXPECT_NE(error_with_merges({7}).find("model.merges[0]"), std::string::npos);
  EXPECT_NE(error_with_merges({"h e", "h z"}).find("model.merges[1]: token \"z\""),
            std::string::npos);
  // Both parts in the vocab but not the merged token.
  EXPECT_NE(error_with_merges({"o h"}).find("token \"oh\" is not in model.vocab"),
            std::string::npos);
}

TEST(TokenizerTest, PipelineErrors) {
  const auto error_with = [](const char* key, const json& value) {
    json j = TinyJson();
    j[key] = value;
    return LoadError(j);
  };
  for (const char* type : {"NFC", "NFD", "NFKC", "NFKD", "Lowercase"}) {
    EXPECT_EQ(error_with("normalizer", {{"type", type}}), "") << type;
  }
  EXPECT_EQ(error_with("normalizer", {{"type", "Sequence"}, {"normalizers", json::array()}}), "");
  EXPECT_NE(error_with("normalizer", {{"type", "Replace"}}).find("normalizer.type"),
            std::string::npos);
  EXPECT_NE(error_with("normalizer", {{"type", "Replace"}}).find("\"Replace\""), std::string::npos);
  EXPECT_NE(
      error_with("normalizer",
                 {{"type", "Sequence"},
                  {"normalizers", json::array({json{{"type", "NFC"}}, json{{"type", "Strip"}}})}})
          .find("normalizer.normalizers[1].type: unsupported normalizer \"Strip\""),
      std::string::npos);
  EXPECT_NE(error_with("pre_tokenizer", {{"type", "Metaspace"}}).find("\"Metaspace\""),
            std::string::npos);
  EXPECT_NE(error_with("pre_tokenizer",
                       {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "Digits"}}, {{"type", "Whitespace"}}}}})
                .find("pre_tokenizer.pretokenizers[1].type"),
            std::string::npos);
  EXPECT_NE(
      error_with("pre_tokenizer", SplitRegex("(unclosed")).find("pre_tokenizer.pattern.Regex"),
      std::string::npos);
  json bad_behavior = SplitRegex("a");
  bad_behavior["behavior"] = "Sideways";
  EXPECT_NE(error_with("pre_tokenizer", bad_behavior).find("pre_tokenizer.behavior"),
            std::string::npos);
  EXPECT_NE(error_with("decoder", {{"type", "WordPiece"}}).find("decoder.type"), std::string::npos);
  EXPECT_NE(error_with("added_tokens", {{{"content", "<x>"}}}).find("added_tokens[0].id"),
            std::string::npos);
  EXPECT_NE(error_with("added_tokens", {{{"id", 30}}}).find("added_tokens[0].content"),
            std::string::npos);
  EXPECT_NE(error_with("added_tokens", {{{"id", 30}, {"content", "<x>"}, {"special", "yes"}}})
                .find("added_tokens[0].special"),
            std::string::npos);
}

TEST(TokenizerTest, FromFile) {
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "/tokenizer_test_good.json";
  std::ofstream(good) << MakeByteLevelTokenizerJson(600, "<|endoftext|>").dump();
  StatusOr<Tokenizer> t = Tokenizer::FromFile(good);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->vocab_size(), 600);
  EXPECT_EQ(t->Decode(t->Encode("hello there")), "hello there");

  const std::string missing = dir + "/tokenizer_test_missing.json";
  StatusOr<Tokenizer> none = Tokenizer::FromFile(missing);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find(missing), std::string::npos);

  const std::string garbled = dir + "/tokenizer_test_garbled.json";
  std::ofstream(garbled) << "{\"model\": ";
  StatusOr<Tokenizer> bad = Tokenizer::FromFile(garbled);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(garbled + ": invalid JSON"), std::string::npos);

  const std::string wordpiece = dir + "/tokenizer_test_wordpiece.json";
  json j = TinyJson();
  j["model"]["type"] = "WordPiece";
  std::ofstream(wordpiece) << j.dump();
  StatusOr<Tokenizer> unsupported = Tokenizer::FromFile(wordpiece);
  ASSERT_FALSE(unsupported.ok());
  EXPECT_NE(unsupported.status().message().find(wordpiece + ": model.type"), std::string::npos);
}

}  // namespace
}  // namespace moerack
