#include "core/huge_pages.h"

#include <sys/mman.h>

#include <utility>

namespace moerack {

void AdviseHugePages(void* p, size_t bytes) { ::madvise(p, bytes, MADV_HUGEPAGE); }

HugePageBuffer::HugePageBuffer(size_t bytes, bool advise) {
  const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  const size_t len = size + kHugePage;
  void* raw = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return;
  raw_ = raw;
  raw_size_ = len;
  base_ = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) &
                                     ~(uintptr_t{kHugePage} - 1));
  size_ = size;
  if (advise) AdviseHugePages(base_, size_);
}

HugePageBuffer::~HugePageBuffer() {
  if (raw_ != nullptr) ::munmap(raw_, raw_size_);
}

HugePageBuffer::HugePageBuffer(HugePageBuffer&& other) noexcept { *this = std::move(other); }

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& other) noexcept {
  if (this != &other) {
    if (raw_ != nullptr) ::munmap(raw_, raw_size_);
    raw_ = std::exchange(other.raw_, nullptr);
    raw_size_ = std::exchange(other.raw_size_, 0);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void HugePageBuffer::ProtectReadOnly() const {
  if (raw_ != nullptr) ::mprotect(raw_, raw_size_, PROT_READ);
}

}  // namespace moerack
