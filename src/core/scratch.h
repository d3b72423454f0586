// Scratch: a thread's reusable work buffer (a thread_local std::vector) of at
// least n elements. It grows and never shrinks: a resize down and back up
// would zero-fill the regrown part on every call (in the matmul, decode moves
// between K = 2048, 768 and 4096 and paid that on every call). Contents are
// left as they are; callers write before they read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moerack {

template <class T>
T* Scratch(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace moerack
