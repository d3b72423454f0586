// Vectorised exponentials (Highway's Exp, within 1 ulp of std::exp; 0 below
// e^-104, for -inf and for NaN): the softmax weights of the sampler, which
// took one scalar expf per vocabulary entry per sampled token, of attention
// and of the router.
// Thread-safety: pure function.
#pragma once

#include <cstdint>

namespace moerack {

// out[i] = exp((x[i] - shift) * scale) for i < n; returns their sum (blocks
// summed in f32 lanes, then in double).
double ScaledExpSum(const float* x, int64_t n, float shift, float scale, float* out);

// In-place softmax over n values: exp(x - max) by ScaledExpSum, times 1 / sum.
// The result depends only on the n values (fixed lane order); any NaN input
// makes every output NaN, -inf inputs give 0.
void Softmax(float* x, int64_t n);

}  // namespace moerack
