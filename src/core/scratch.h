// Scratch: a thread's reusable work buffer (a thread_local ScratchVector) of at
// least n elements, starting on a 64-byte cache line. It grows and never
// shrinks: a resize down and back up would zero-fill the regrown part on every
// call (in the matmul, decode moves between K = 2048, 768 and 4096 and paid
// that on every call). Contents are left as they are; callers write before
// they read. The alignment matters to the kernels that stream weights past a
// row of x held here: with x 16 bytes off a line, every 64-byte load of x
// touches two lines, and a standalone bf16 row loop streamed 32 instead of 38
// GB/s (BENCHMARKS.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace moerack {

inline constexpr size_t kCacheLine = 64;

template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}  // NOLINT: rebinding is implicit
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{kCacheLine}));
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{kCacheLine}); }
  friend bool operator==(CacheLineAllocator, CacheLineAllocator) { return true; }
};

template <class T>
using ScratchVector = std::vector<T, CacheLineAllocator<T>>;

template <class T>
T* Scratch(ScratchVector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace moerack
