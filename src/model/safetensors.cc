#include "model/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

namespace moerack {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as the reference reader

std::string ShapeStr(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

StatusOr<std::vector<SafetensorsEntry>> ParseSafetensorsHeader(const uint8_t* bytes,
                                                               size_t file_size,
                                                               size_t* data_offset) {
  if (file_size < 8)
    return Error("file too small for a safetensors header (" + std::to_string(file_size) +
                 " bytes)");
  uint64_t n = 0;
  std::memcpy(&n, bytes, 8);  // little-endian hosts only (x86, arm64)
  if (n > kMaxHeaderBytes) return Error("header length " + std::to_string(n) + " exceeds 100 MB");
  if (n + 8 > file_size) {
    return Error("header length " + std::to_string(n) + " runs past the end of the file (" +
                 std::to_string(file_size) + " bytes): truncated or not safetensors");
  }
  if (n == 0 || bytes[8] != '{') return Error("header does not start with '{'");
  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + n);
  } catch (const json::exception& e) {
    return Error(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) return Error("header is not a JSON object");
  const uint64_t data_size = file_size - 8 - n;
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets")) {
      return Error(where + ": needs dtype, shape and data_offsets");
    }
    SafetensorsEntry e;
    e.name = name;
    if (!v["dtype"].is_string()) return Error(where + ": dtype is not a string");
    const auto dt = DTypeFromSafetensors(v["dtype"].get<std::string>());
    if (!dt) return Error(where + ": unsupported dtype " + v["dtype"].dump());
    e.dtype = *dt;
    if (!v["shape"].is_array()) return Error(where + ": shape is not an array");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned())
        return Error(where + ": shape has a non-integer or negative dim");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (1ull << 40) || (dim != 0 && numel > (1ull << 50) / dim)) {
        return Error(where + ": shape is absurdly large");
      }
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned()) {
      return Error(where + ": data_offsets must be two non-negative integers");
    }
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.begin > e.end || e.end > data_size) {
      return Error(where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                   std::to_string(e.end) + ") outside the data section of " +
                   std::to_string(data_size) + " bytes (file truncated?)");
    }
    const uint64_t bits = numel * static_cast<uint64_t>(DTypeBits(e.dtype));
    if (bits % 8 != 0 || bits / 8 != e.end - e.begin) {
      return Error(where + ": " + std::string(DTypeName(e.dtype)) + " " + ShapeStr(e.shape) +
                   " needs " + std::to_string(bits / 8) + " bytes but data_offsets span " +
                   std::to_string(e.end - e.begin));
    }
    entries.push_back(std::move(e));
  }
  // Every byte of the data section belongs to exactly one tensor.
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  for (const auto* e : sorted) {
    if (e->begin < pos) return Error("tensor '" + e->name + "' overlaps another tensor");
    if (e->begin > pos) return Error("data section has a hole before tensor '" + e->name + "'");
    pos = e->end;
  }
  if (pos != data_size) {
    return Error("data section has " + std::to_string(data_size - pos) +
                 " bytes that belong to no tensor");
  }
  *data_offset = 8 + n;
  return entries;
}

namespace {

// Room to put every tensor of a file on a 64-byte boundary: a header entry
// takes at least 40 bytes of JSON, so a header of n bytes names at most
// n / 40 + 1 tensors.
size_t AlignmentSlack(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  if (!in.read(reinterpret_cast<char*>(&n), 8) || n > kMaxHeaderBytes) return 0;
  return kSafetensorsDataAlign * (n / 40 + 2);
}

// Moves the tensors of a huge-page copy (`base`, file data at `data_offset`)
// to 64-byte boundaries in file order; returns each entry's new offset from
// base, or nothing (and moves nothing) if they would not fit in `capacity`.
// Files place tensors wherever their writer did, and 64-byte loads of packed
// weights that straddle two cache lines slowed NVFP4 decode by a third or more
// (BENCHMARKS.md, "Tensor alignment"). A tensor only moves towards the end, so
// moving the last one first never overwrites one not yet moved.
std::optional<std::vector<size_t>> AlignTensors(uint8_t* base, size_t data_offset, size_t capacity,
                                                const std::vector<SafetensorsEntry>& entries) {
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return entries[a].begin < entries[b].begin; });
  std::vector<size_t> to(entries.size());
  size_t pos = data_offset;
  for (size_t i : order) {
    pos = (pos + kSafetensorsDataAlign - 1) / kSafetensorsDataAlign * kSafetensorsDataAlign;
    to[i] = pos;
    pos += entries[i].end - entries[i].begin;
  }
  if (pos > capacity) return std::nullopt;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const SafetensorsEntry& e = entries[*it];
    std::memmove(base + to[*it], base + data_offset + e.begin, e.end - e.begin);
  }
  return to;
}

}  // namespace

Status WeightStore::AddFile(const std::string& path, MappedFile::Mode mode) {
  const size_t slack = mode == MappedFile::Mode::kHugePageCopy ? AlignmentSlack(path) : 0;
  MR_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path, mode, slack));
  size_t data_offset = 0;
  auto entries = ParseSafetensorsHeader(file->data(), file->size(), &data_offset);
  if (!entries.ok()) return entries.status().WithContext(path);
  std::vector<size_t> offsets(entries->size());
  for (size_t i = 0; i < offsets.size(); ++i) offsets[i] = data_offset + (*entries)[i].begin;
  if (uint8_t* copy = file->writable_copy(); copy != nullptr) {
    if (auto aligned = AlignTensors(copy, data_offset, file->size() + slack, *entries))
      offsets = std::move(*aligned);
    file->Seal();
  }
  for (size_t i = 0; i < entries->size(); ++i) {
    SafetensorsEntry& e = (*entries)[i];
    if (tensors_.count(e.name))
      return Error(path + ": tensor '" + e.name + "' also in " + tensors_[e.name].file);
    if (e.shape.size() > static_cast<size_t>(kMaxDims)) {
      return Error(path + ": tensor '" + e.name + "' has more than 4 dims");
    }
    const uint8_t* ptr = file->data() + offsets[i];
    const size_t align = std::max(1, DTypeBits(e.dtype) / 8);
    if (reinterpret_cast<uintptr_t>(ptr) % align != 0) {
      auto copy = std::make_unique<uint8_t[]>(e.end - e.begin);
      std::memcpy(copy.get(), ptr, e.end - e.begin);
      ptr = copy.get();
      copies_.push_back(std::move(copy));
    }
    TensorView view;
    view.data = const_cast<uint8_t*>(ptr);
    view.dtype = e.dtype;
    view.ndim = static_cast<int>(e.shape.size());
    for (int i = 0; i < view.ndim; ++i) view.shape[i] = e.shape[i];
    view.SetContiguousStrides();
    tensors_[e.name] = Entry{view, path};
  }
  files_.push_back(std::move(file));
  return Status::Ok();
}

StatusOr<std::unique_ptr<WeightStore>> WeightStore::OpenFiles(const std::vector<std::string>& files,
                                                              bool populate, bool allow_copy) {
  std::unique_ptr<WeightStore> store(new WeightStore());
  size_t total = 0;
  for (const auto& f : files) {
    struct stat st;
    if (::stat(f.c_str(), &st) == 0) total += static_cast<size_t>(st.st_size);
  }
  // Resident files: a huge-page copy when the checkpoint fits twice; else a
  // map on huge pages where the kernel puts the file's page cache there (no
  // second copy: large checkpoints get 2 MB pages too); else a map. The copy
  // stays first: on this VM the map decoded within noise of it on one thread
  // and a mean 5% lower on two (BENCHMARKS.md, session 13).
  using Mode = MappedFile::Mode;
  const Mode mode = !populate                                                ? Mode::kLazy
                    : allow_copy && MappedFile::HugePageCopyAdvisable(total) ? Mode::kHugePageCopy
                    : MappedFile::HugePagesAvailable()                       ? Mode::kHugePageMap
                                                                             : Mode::kPopulate;
  for (const auto& f : files) MR_RETURN_IF_ERROR(store->AddFile(f, mode));
  return store;
}

StatusOr<std::unique_ptr<WeightStore>> WeightStore::Open(const std::string& dir, bool populate) {
  if (!fs::is_directory(dir)) return Error(dir + ": model directory not found");
  std::vector<std::string> files;
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    MR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index.string()));
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      return Error(index.string() + ": missing or malformed weight_map");
    }
    std::set<std::string> shards;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string())
        return Error(index.string() + ": weight_map['" + name + "'] is not a string");
      const std::string shard = file.get<std::string>();
      if (shard.find('/') != std::string::npos)
        return Error(index.string() + ": shard name '" + shard + "' has a '/'");
      shards.insert(shard);
    }
    for (const auto& s : shards) files.push_back((fs::path(dir) / s).string());
    MR_ASSIGN_OR_RETURN(auto store, OpenFiles(files, populate));
    // The index must agree with the shards' own headers.
    for (const auto& [name, file] : j["weight_map"].items()) {
      const std::string shard = (fs::path(dir) / file.get<std::string>()).string();
      if (!store->Has(name))
        return Error(index.string() + ": tensor '" + name + "' is not in " + shard);
      if (store->FileOf(name) != shard) {
        return Error(index.string() + ": tensor '" + name + "' is in " + store->FileOf(name) +
                     ", not " + shard);
      }
    }
    return store;
  } else {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) return Error(dir + ": no *.safetensors files");
  return OpenFiles(files, populate);
}

StatusOr<TensorView> WeightStore::Get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return Error("missing tensor '" + name + "'");
  return it->second.view;
}

StatusOr<TensorView> WeightStore::Get(const std::string& name, const std::vector<int64_t>& shape,
                                      const std::vector<DType>& dtypes) const {
  MR_ASSIGN_OR_RETURN(TensorView v, Get(name));
  const std::vector<int64_t> have(v.shape.begin(), v.shape.begin() + v.ndim);
  const std::string where = "tensor '" + name + "' in " + FileOf(name);
  if (have != shape)
    return Error(where + ": shape " + ShapeStr(have) + ", expected " + ShapeStr(shape));
  if (std::find(dtypes.begin(), dtypes.end(), v.dtype) == dtypes.end()) {
    std::string want;
    for (DType d : dtypes) want += (want.empty() ? "" : " or ") + std::string(DTypeName(d));
    return Error(where + ": dtype " + std::string(DTypeName(v.dtype)) + ", expected " + want);
  }
  return v;
}

std::vector<std::string> WeightStore::Names() const {
  std::vector<std::string> names;
  for (const auto& [n, e] : tensors_) names.push_back(n);
  return names;
}

const std::string& WeightStore::FileOf(const std::string& name) const {
  return tensors_.at(name).file;
}

Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });
  for (size_t i = 0; i < order.size(); ++i) {
    const TensorToWrite& t = *order[i];
    if (i > 0 && order[i - 1]->name == t.name)
      return Error(path + ": tensor '" + t.name + "' given twice");
    uint64_t bits = static_cast<uint64_t>(DTypeBits(t.dtype));
    for (int64_t d : t.shape) bits *= static_cast<uint64_t>(d);
    if (bits % 8 != 0 || bits / 8 != t.bytes.size()) {
      return Error(path + ": tensor '" + t.name + "' has " + std::to_string(t.bytes.size()) +
                   " bytes, its dtype and shape need " + std::to_string(bits / 8));
    }
  }
  // Tensors whose size is a multiple of 64 bytes first, then the rest, and the
  // header padded so the data starts on a 64-byte boundary: every such tensor
  // (all weights and block scales of usual shapes) starts on a cache line (see
  // AlignTensors for why). The format allows no gaps between tensors.
  std::stable_partition(order.begin(), order.end(),
                        [](const TensorToWrite* t) { return t->bytes.size() % 64 == 0; });
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const auto* t : order) {
    header[t->name] = {{"dtype", std::string(DTypeName(t->dtype))},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->bytes.size()}}};
    offset += t->bytes.size();
  }
  std::string h = header.dump();
  h.append((kSafetensorsDataAlign - (8 + h.size()) % kSafetensorsDataAlign) % kSafetensorsDataAlign,
           ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Error(path + ": cannot open for writing");
  const uint64_t n = h.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto* t : order)
    out.write(t->bytes.data(), static_cast<std::streamsize>(t->bytes.size()));
  out.close();
  if (!out) return Error(path + ": write failed");
  return Status::Ok();
}

}  // namespace moerack
