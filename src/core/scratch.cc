#include "core/scratch.h"

#include "core/huge_pages.h"

namespace moerack {

namespace {

size_t HugeBytes(size_t bytes) {
  return (bytes + HugePageBuffer::kHugePage - 1) / HugePageBuffer::kHugePage *
         HugePageBuffer::kHugePage;
}

}  // namespace

void* AllocateScratch(size_t bytes) {
  if (bytes < kHugeScratchBytes) return ::operator new(bytes, std::align_val_t{kCacheLine});
  const size_t size = HugeBytes(bytes);
  void* p = ::operator new(size, std::align_val_t{HugePageBuffer::kHugePage});
  AdviseHugePages(p, size);
  return p;
}

void FreeScratch(void* p, size_t bytes) {
  ::operator delete(p, std::align_val_t{bytes < kHugeScratchBytes ? kCacheLine
                                                                  : HugePageBuffer::kHugePage});
}

}  // namespace moerack
