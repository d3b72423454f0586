// Pieces of the matmul shared between its translation units (not an API).
#pragma once

#include <cstdint>

#include "kernels/matmul.h"

namespace moerack {

// Whether this CPU has AVX512-BF16 (VDPBF16PS), checked once at run time.
bool HasAvx512Bf16();

// Rows [m0, m1) x outputs [n0, n1) of p with activations rounded to bf16, on the
// AVX512-BF16 kernel (matmul_bf16.cc). Returns false, doing nothing, when the CPU
// lacks the instructions or the weight format has no bf16 kernel.
bool RunBf16ActivationBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

}  // namespace moerack
