// MappedFile: a read-only memory map of a whole file, populated at open. Weights are used in place
// from the map (no copy); the map lives as long as the MappedFile.
// Thread-safety: immutable after Open; concurrent reads are safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"

namespace moerack {

class MappedFile {
 public:
  // populate: fault every page in now (MAP_POPULATE); otherwise pages come in
  // on first touch, so a process that reads part of the file holds only that part.
  static StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path, bool populate = true);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Whole-file helpers for small files (configs, JSON).
StatusOr<std::string> ReadFileToString(const std::string& path);
Status WriteStringToFile(const std::string& path, const std::string& contents);

}  // namespace moerack
