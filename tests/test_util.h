// Helpers shared by the model-level tests: running a token sequence through a
// model (whole or in chunks) and comparing logits matrices.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "model/model.h"

namespace moerack::testing_util {

// Logits of every position of `tokens` run as one sequence, in chunks of the
// given sizes (cycled; one huge chunk = a single prefill, 1s = decode).
inline std::vector<float> SequenceLogits(Model& model, std::span<const int32_t> tokens,
                                         const std::vector<int64_t>& chunk_sizes = {1 << 30},
                                         int threads = 1, DType kv_dtype = DType::kF32) {
  const int block_size = 16;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t num_blocks = (n + block_size - 1) / block_size;
  KvCache cache(model.config().num_layers, num_blocks, block_size, model.kv_floats_per_token(),
                kv_dtype);
  std::vector<int32_t> table(static_cast<size_t>(num_blocks));
  std::iota(table.begin(), table.end(), 0);
  ThreadPool pool(threads);
  std::vector<float> logits;
  int64_t pos = 0;
  for (size_t i = 0; pos < n; ++i) {
    const int64_t len = std::min(chunk_sizes[i % chunk_sizes.size()], n - pos);
    ForwardBatch batch;
    batch.seqs.push_back({tokens.subspan(static_cast<size_t>(pos), static_cast<size_t>(len)), pos,
                          table, SequenceChunk::Logits::kAll});
    model.Forward(batch, cache.view(), pool, &logits);
    pos += len;
  }
  return logits;
}

// ||a - b|| / ||b|| over the whole matrix.
inline double RelError(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
    den += double{b[i]} * b[i];
  }
  return std::sqrt(num / den);
}

// Test-name suffix for a string parameter (gtest allows [A-Za-z0-9_]).
struct ParamName {
  template <typename Info>
  std::string operator()(const Info& info) const {
    std::string n = info.param;
    for (char& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return n;
  }
};

}  // namespace moerack::testing_util
