// WeightStore: the tensors of a Hugging Face checkpoint directory, read from
// safetensors files (one `model.safetensors`, or shards listed by
// `model.safetensors.index.json`). Every header is validated in full before any
// data is touched: size sane, JSON well formed, dtypes known, shapes consistent
// with byte ranges, ranges inside the file and covering the data section exactly
// once. Data stays where the file was read to (a huge-page copy or a map: see
// OpenFiles), except tensors whose offset is misaligned for their element
// size, which are copied once.
// Thread-safety: immutable after Open; concurrent Get calls are safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "core/tensor.h"

namespace moerack {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets in the data section, [begin, end)
  uint64_t end = 0;
};

// Parses and validates a safetensors header. `file_size` is the size of the
// whole file; `data_offset` receives where the data section starts.
StatusOr<std::vector<SafetensorsEntry>> ParseSafetensorsHeader(const uint8_t* bytes,
                                                               size_t file_size,
                                                               size_t* data_offset);

class WeightStore {
 public:
  // Opens `dir`/model.safetensors.index.json if present, else every *.safetensors in dir.
  // populate: fault all pages in at open (MappedFile); false for expert-parallel
  // ranks, which touch only their own experts.
  static StatusOr<std::unique_ptr<WeightStore>> Open(const std::string& dir, bool populate = true);
  // Opens explicit files (tests). allow_copy false: resident files are never
  // copied (as for a checkpoint too large to copy).
  static StatusOr<std::unique_ptr<WeightStore>> OpenFiles(const std::vector<std::string>& files,
                                                          bool populate = true,
                                                          bool allow_copy = true);

  bool Has(const std::string& name) const { return tensors_.count(name) > 0; }
  // The tensor, or an error naming it when it is missing.
  StatusOr<TensorView> Get(const std::string& name) const;
  // Also checks shape and that the dtype is one of `dtypes`; errors name the tensor.
  StatusOr<TensorView> Get(const std::string& name, const std::vector<int64_t>& shape,
                           const std::vector<DType>& dtypes) const;
  std::vector<std::string> Names() const;
  const std::string& FileOf(const std::string& name) const;

 private:
  struct Entry {
    TensorView view;
    std::string file;
  };
  Status AddFile(const std::string& path, MappedFile::Mode mode);

  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<std::unique_ptr<uint8_t[]>> copies_;  // misaligned tensors
  std::map<std::string, Entry> tensors_;
};

// Writes tensors (name -> dtype, shape, raw bytes) as one safetensors file:
// those of whole 64-byte lines first, then the rest, each group in name order,
// the header padded so that the data starts on a 64-byte boundary.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
// Writes tensors whose size is a multiple of kSafetensorsDataAlign bytes at
// offsets aligned to it (in the file, and so in a copy at an aligned address).
constexpr size_t kSafetensorsDataAlign = 64;
Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

}  // namespace moerack
