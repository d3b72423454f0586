// MappedFile: a whole file in memory, read-only, for weights used in place (never
// converted). Streaming weights through 4 KB pages costs a TLB walk per 4 KB, and
// reads ~25% slower on this kind of machine (BENCHMARKS.md), so resident files go
// on 2 MB transparent huge pages where the kernel offers them: a map of the page
// cache in 2 MB folios (kHugePageMap: no copy), else a copy into anonymous huge
// pages (kHugePageCopy). Lazy files stay a plain map whose pages come in on first
// touch, so a process that reads part of the file holds only that part.
// The memory lives as long as the MappedFile.
// Thread-safety: immutable after Open; concurrent reads are safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/huge_pages.h"
#include "core/status.h"

namespace moerack {

class MappedFile {
 public:
  enum class Mode {
    kLazy,          // a map; pages come in on first touch
    kPopulate,      // a map with every page faulted in now
    kHugePageMap,   // a populated map advised onto 2 MB pages before its pages come in (the
                    // file's small cached pages dropped and read again once if it is not there)
    kHugePageCopy,  // a copy on transparent huge pages (a populated map if the memory is not there)
  };
  // kHugePageCopy: the copy has `slack` bytes past the file and stays writable
  // (writable_copy()) until Seal() makes it read-only like a map. Without
  // slack it is sealed at once.
  static StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path, Mode mode,
                                                    size_t slack = 0);
  // Transparent huge pages are available and `total_bytes` (a whole checkpoint)
  // takes under half the available memory.
  static bool HugePageCopyAdvisable(size_t total_bytes);
  // Transparent huge pages are available to madvise() (mode "always" or "madvise").
  static bool HugePagesAvailable();
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // On 2 MB pages: a huge-page copy, or a kHugePageMap the kernel put on 2 MB
  // pages (at least 90% of the file's whole 2 MB pages; a file under 2 MB never is).
  bool huge_pages() const { return huge_; }
  // The copy (size() + slack bytes) before Seal(); nullptr for a map or once sealed.
  uint8_t* writable_copy() { return !copy_.empty() && !sealed_ ? copy_.data() : nullptr; }
  void Seal();

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* region_ = nullptr;  // the file map, if any
  size_t region_size_ = 0;
  HugePageBuffer copy_;  // or the huge-page copy
  bool huge_ = false;
  bool sealed_ = false;
  std::string path_;
};

// Whole-file helpers for small files (configs, JSON).
StatusOr<std::string> ReadFileToString(const std::string& path);
Status WriteStringToFile(const std::string& path, const std::string& contents);

}  // namespace moerack
