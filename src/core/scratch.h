// Scratch: a thread's reusable work buffer (a thread_local ScratchVector) of at
// least n elements, starting on a 64-byte cache line. It grows and never
// shrinks: a resize down and back up would zero-fill the regrown part on every
// call (in the matmul, decode moves between K = 2048, 768 and 4096 and paid
// that on every call). Contents are left as they are; callers write before
// they read. The alignment matters to the kernels that stream weights past a
// row of x held here: with x 16 bytes off a line, every 64-byte load of x
// touches two lines, and a standalone bf16 row loop streamed 32 instead of 38
// GB/s (BENCHMARKS.md).
//
// ScratchVector is also the type of the activation buffers a forward pass
// reuses (the model's hidden states, the MoE layer's dispatched rows and
// expert outputs): its elements are default-initialized (a resize does not
// zero-fill; callers write before they read), and an allocation of 1 MB or
// more is rounded up to whole 2 MB pages, 2 MB-aligned and advised onto
// transparent huge pages. A prefill's first touch of fresh 4 KB pages cost
// ~2.7 ms per MB on a VM here (a 1500-token prompt's MoE buffers: ~270 MB),
// ~0.1 ms per MB on huge pages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>
#include <vector>

namespace moerack {

inline constexpr size_t kCacheLine = 64;

// Allocations of at least this many bytes go on huge pages.
inline constexpr size_t kHugeScratchBytes = size_t{1} << 20;

// `bytes` on a cache line, or from kHugeScratchBytes as whole 2 MB pages on a
// 2 MB boundary advised onto huge pages (scratch.cc); freed with the same size.
void* AllocateScratch(size_t bytes);
void FreeScratch(void* p, size_t bytes);

template <class T>
struct ScratchAllocator {
  using value_type = T;
  ScratchAllocator() = default;
  template <class U>
  ScratchAllocator(const ScratchAllocator<U>&) {}  // NOLINT: rebinding is implicit
  T* allocate(size_t n) { return static_cast<T*>(AllocateScratch(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { FreeScratch(p, n * sizeof(T)); }
  // Default-initialization: a resize leaves new elements as they are.
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0) {
      ::new (static_cast<void*>(p)) U;
    } else {
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
  }
  friend bool operator==(ScratchAllocator, ScratchAllocator) { return true; }
};

template <class T>
using ScratchVector = std::vector<T, ScratchAllocator<T>>;

template <class T>
T* Scratch(ScratchVector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace moerack
