// Streaming read of a buffer with the widest vectors the CPU has: the kernel of
// `moerack membw`, which gives the read bandwidth every roofline figure divides by.
// Thread-safety: pure function.
#pragma once

#include <cstddef>

namespace moerack {

// Sums `n` floats (n a multiple of 64) with independent vector accumulators,
// so the loop is bound by memory, not by the add latency. The result only keeps
// the reads from being optimised away.
float StreamSum(const float* data, size_t n);

}  // namespace moerack
