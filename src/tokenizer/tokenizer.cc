// Byte-level BPE: tokenizer.json loading, added-token splitting, the BPE merge
// loop and decoding. Behaviours mirror HF `tokenizers` (added_vocabulary.rs,
// models/bpe/{model,word}.rs, pre_tokenizers/byte_level.rs). The normalizer
// lives in normalizer.cc, the pre-tokenizer in pre_tokenizer.cc.
#include "tokenizer/tokenizer.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <functional>
#include <queue>
#include <unordered_map>
#include <utility>

#include "core/check.h"
#include "core/mapped_file.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace moerack {
namespace {

using nlohmann::json;
using tokenizer_internal::AppendUtf8;
using tokenizer_internal::DecodeUtf8;
using tokenizer_internal::Normalizer;
using tokenizer_internal::PreTokenizer;
using tokenizer_internal::Quoted;
using tokenizer_internal::ReadBool;
using tokenizer_internal::ReadString;
using tokenizer_internal::ReadType;

// The Qwen2 pre-tokenizer regex (formats.md §7), used by MakeByteLevelTokenizerJson.
constexpr char kQwen2Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Ids this large would make the id -> bytes table absurd; real vocabs are < 1M.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// ---------------------------------------------------------------------------
// Whitespace, for lstrip / rstrip.

// The Unicode White_Space property (Rust's char::is_whitespace, as HF uses).
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
// Word characters, for single_word.

// Rust regex's Unicode `\w`, which HF's single_word test uses:
// [\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}] (UTS #18 Annex C).
bool IsWordChar(uint32_t cp) {
  if (cp < 0x80) return std::isalnum(static_cast<int>(cp)) || cp == '_';
  const auto c = static_cast<UChar32>(cp);
  return u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL) ||
         (U_GET_GC_MASK(c) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

// Whether the character starting at `pos` is a word character. Invalid UTF-8
// is not (it stands for U+FFFD, which is not).
bool IsWordCharAt(std::string_view s, size_t pos) {
  uint32_t cp;
  return pos < s.size() && DecodeUtf8(s, pos, &cp) > 0 && IsWordChar(cp);
}

// Whether the character ending at `pos` is a word character.
bool IsWordCharBefore(std::string_view s, size_t pos) {
  uint32_t cp;
  for (size_t len = 1; len <= 4 && len <= pos; ++len) {
    if (DecodeUtf8(s, pos - len, &cp) == len) return IsWordChar(cp);
  }
  return false;
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

StatusOr<int32_t> ReadId(const json& value, const std::string& field) {
  if (!value.is_number_integer()) return Error(field + ": id must be an integer");
  const int64_t id = value.get<int64_t>();
  if (id < 0 || id > kMaxTokenId) {
    return Error(field + ": id " + std::to_string(id) + " out of range [0, " +
                 std::to_string(kMaxTokenId) + "]");
  }
  return static_cast<int32_t>(id);
}

Status CheckDecoder(const json& j) {
  if (j.is_null()) return Status::Ok();
  MR_ASSIGN_OR_RETURN(const std::string type, ReadType(j, "decoder"));
  if (type != "ByteLevel") {
    return Error("decoder.type: unsupported decoder " + Quoted(type) + " (supported: ByteLevel)");
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
  bool normalized = false;  // matched in the normalized text, not the raw text
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
  // HF's default when the field is absent (AddedToken::from): special tokens
  // match the raw text, others the normalized text.
  MR_RETURN_IF_ERROR(ReadBool(j, "normalized", !token.special, field, &token.normalized));
  return token;
}

// One of HF's two added-token tries (added_vocabulary.rs): the tokens matched
// against the raw text (normalized: false), or those matched against the
// normalized text (normalized: true), whose content is then normalized too.
class AddedTokenMatcher {
 public:
  // `token.content` is the text to match.
  void Add(AddedToken token) { tokens_.push_back(std::move(token)); }

  // Call once, after the last Add.
  void Index() {
    // Longest first, so that the first hit at a position is the longest match.
    std::stable_sort(tokens_.begin(), tokens_.end(), [](const auto& a, const auto& b) {
      return a.content.size() > b.content.size();
    });
    for (size_t i = 0; i < tokens_.size(); ++i) {
      by_first_byte_[static_cast<uint8_t>(tokens_[i].content[0])].push_back(i);
    }
  }

  // Cuts `text` at the added tokens, as HF's find_matches: leftmost-longest
  // matches, left to right. Appends each token's id to *ids and calls
  // on_text(std::string_view) for the text before, between and after them
  // (possibly empty). A single_word match with a word character beside it is
  // dropped and the search resumes after it: the text it covered is not searched
  // again for shorter tokens. With parse_special = false, special tokens are not
  // looked for at all. lstrip / rstrip: the token swallows the whitespace beside it.
  template <typename OnText>
  void Split(std::string_view text, bool parse_special, std::vector<int32_t>* ids,
             OnText&& on_text) const {
    size_t plain_begin = 0;  // Start of the text not yet passed on.
    size_t pos = 0;
    while (!tokens_.empty() && pos < text.size()) {
      const AddedToken* token = LongestAt(text, pos, parse_special);
      if (token == nullptr) {
        ++pos;
        continue;
      }
      size_t begin = pos, end = pos + token->content.size();
      if (token->single_word && (IsWordCharBefore(text, begin) || IsWordCharAt(text, end))) {
        pos = end;
        continue;
      }
      for (size_t len; token->lstrip && (len = WhitespaceLengthBefore(text, begin)) > 0 &&
                       begin - len >= plain_begin;) {
        begin -= len;
      }
      for (size_t len; token->rstrip && (len = WhitespaceLengthAt(text, end)) > 0;) end += len;
      on_text(text.substr(plain_begin, begin - plain_begin));
      ids->push_back(token->id);
      pos = plain_begin = end;
    }
    on_text(text.substr(plain_begin));
  }

 private:
  // The longest token whose content starts at text[pos], or null.
  const AddedToken* LongestAt(std::string_view text, size_t pos, bool parse_special) const {
    for (size_t index : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
      const AddedToken& token = tokens_[index];
      if (token.special && !parse_special) continue;
      if (text.substr(pos).starts_with(token.content)) return &token;
    }
    return nullptr;
  }

  std::vector<AddedToken> tokens_;
  // Indices into tokens_ by first byte of content, longest content first.
  std::array<std::vector<size_t>, 256> by_first_byte_;
};

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
  std::array<int32_t, 256> byte_ids;               // BPE start symbol per byte; -1: skip
  bool ignore_merges = false;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  AddedTokenMatcher raw_added_tokens;                  // normalized: false
  AddedTokenMatcher normalized_added_tokens;           // normalized: true; content normalized
  std::unordered_map<std::string, int32_t> added_ids;  // content -> id
  std::vector<std::string> id_bytes;                   // id -> raw bytes; "" for holes

  Status Load(const json& j);
  Status LoadModel(const json& model);
  void Encode(std::string_view text, bool parse_special, std::vector<int32_t>* ids) const;
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
  MR_ASSIGN_OR_RETURN(normalizer,
                      Normalizer::FromJson(j.value("normalizer", json()), "normalizer"));
  MR_ASSIGN_OR_RETURN(pre_tokenizer,
                      PreTokenizer::FromJson(j.value("pre_tokenizer", json()), "pre_tokenizer"));
  MR_RETURN_IF_ERROR(CheckDecoder(j.value("decoder", json())));

  const json added = j.value("added_tokens", json::array());
  if (!added.is_array()) return Error("added_tokens: expected an array");
  for (size_t i = 0; i < added.size(); ++i) {
    MR_ASSIGN_OR_RETURN(AddedToken token,
                        ParseAddedToken(added[i], "added_tokens[" + std::to_string(i) + "]"));
    if (id_bytes.size() <= static_cast<size_t>(token.id)) id_bytes.resize(token.id + 1);
    id_bytes[token.id] = token.content;
    added_ids[token.content] = token.id;
    if (!token.normalized) {
      raw_added_tokens.Add(std::move(token));
      continue;
    }
    std::string storage;
    token.content = std::string(normalizer.Normalize(token.content, &storage));
    // Normalized to nothing (possible with NFKC): HF's trie never matches it.
    if (!token.content.empty()) normalized_added_tokens.Add(std::move(token));
  }
  raw_added_tokens.Index();
  normalized_added_tokens.Index();
  return Status::Ok();
}

// HF's order (AddedVocabulary::extract_and_normalize): the raw-text tokens are
// split out first; each stretch between them is normalized, the normalized-text
// tokens are split out of it, and what remains is pre-tokenized and BPE'd.
void Tokenizer::Impl::Encode(std::string_view text, bool parse_special,
                             std::vector<int32_t>* ids) const {
  const auto encode_plain = [&](std::string_view plain) {
    for (const std::string& piece : pre_tokenizer.Split(plain)) EncodePiece(piece, ids);
  };
  raw_added_tokens.Split(text, parse_special, ids, [&](std::string_view raw) {
    std::string storage;
    normalized_added_tokens.Split(normalizer.Normalize(raw, &storage), parse_special, ids,
                                  encode_plain);
  });
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
    queue.push(
        {it->second.rank, left, right, symbols[left].id, symbols[right].id, it->second.merged_id});
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
  return impl_->pre_tokenizer.Split(text);
}

// ---------------------------------------------------------------------------

json MakeByteLevelTokenizerJson(int32_t vocab_size, const std::string& eos_token) {
  CHECK_GE(vocab_size, 257);
  CHECK(!eos_token.empty());
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

  json pre_tokenizer = {{"type", "Sequence"},
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
