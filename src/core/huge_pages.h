// HugePageBuffer: anonymous memory aligned to 2 MB and advised onto transparent
// huge pages (advice only: 4 KB pages where the kernel declines), untouched
// until first written. Weights, the KV cache and `membw` live in such memory:
// streaming through 4 KB pages costs a TLB walk every 4 KB (BENCHMARKS.md).
// Thread-safety: the owner's; the memory itself is plain.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moerack {

// Advises [p, p + bytes) (p 2 MB-aligned) onto transparent huge pages.
void AdviseHugePages(void* p, size_t bytes);

class HugePageBuffer {
 public:
  static constexpr size_t kHugePage = size_t{2} << 20;

  HugePageBuffer() = default;
  // At least `bytes` (whole huge pages); empty() if the memory is not there.
  // `advise` false leaves the kernel's default pages (`membw --small-pages`).
  explicit HugePageBuffer(size_t bytes, bool advise = true);
  ~HugePageBuffer();
  HugePageBuffer(HugePageBuffer&& other) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& other) noexcept;
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;

  uint8_t* data() const { return base_; }
  size_t size() const { return size_; }
  bool empty() const { return base_ == nullptr; }
  // Makes the memory read-only (a copy standing in for a read-only file map).
  void ProtectReadOnly() const;

 private:
  void* raw_ = nullptr;  // the mapping (one huge page larger, for alignment)
  size_t raw_size_ = 0;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moerack
