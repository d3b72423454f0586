#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "kernels/ops.h"
#include "quant/fp8.h"

namespace moerack {

namespace {

const float* Fp8Table() {
  static const auto* table = [] {
    auto* t = new float[256];
    for (int i = 0; i < 256; ++i) t[i] = Fp8E4M3ToF32(static_cast<uint8_t>(i));
    return t;
  }();
  return table;
}

}  // namespace

void KvCacheView::Store(int layer, std::span<const int32_t> block_table, int64_t pos,
                        int64_t offset, const float* src, int64_t n) const {
  const int64_t at = SlotIndex(layer, block_table, pos) + offset;
  if (dtype == DType::kF32) {
    std::copy_n(src, n, static_cast<float*>(base) + at);
    return;
  }
  uint8_t* dst = static_cast<uint8_t*>(base) + at;
  const float inv = 1.0f / scale;
  for (int64_t i = 0; i < n; ++i) dst[i] = F32ToFp8E4M3(src[i] * inv);
}

const float* KvCacheView::Load(int layer, std::span<const int32_t> block_table, int64_t pos,
                               int64_t offset, int64_t n, float* scratch) const {
  const int64_t at = SlotIndex(layer, block_table, pos) + offset;
  if (dtype == DType::kF32) return static_cast<const float*>(base) + at;
  const uint8_t* src = static_cast<const uint8_t*>(base) + at;
  const float* table = Fp8Table();
  for (int64_t i = 0; i < n; ++i) scratch[i] = table[src[i]] * scale;
  return scratch;
}

void PagedAttention(const AttentionParams& p, std::span<const AttentionSeq> seqs,
                    const KvCacheView& cache, ThreadPool& pool) {
  CHECK(p.num_kv_heads > 0 && p.num_heads % p.num_kv_heads == 0);
  const int group = p.num_heads / p.num_kv_heads;
  struct Task {
    const AttentionSeq* seq;
    int64_t token;  // index within the sequence's chunk
  };
  std::vector<Task> tasks;
  for (const auto& s : seqs) {
    for (int64_t t = 0; t < s.num_tokens; ++t) tasks.push_back({&s, t});
  }
  // One task = one token, all heads: the keys of a token are read once per kv head.
  pool.ParallelFor(static_cast<int64_t>(tasks.size()), [&](int64_t i, int) {
    const AttentionSeq& s = *tasks[i].seq;
    const int64_t row = s.first_row + tasks[i].token;
    const int64_t pos = s.start_pos + tasks[i].token;
    const int64_t first =
        p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
    const int64_t n = pos - first + 1;
    std::vector<float> scores(static_cast<size_t>(n * group));
    std::vector<float> acc(static_cast<size_t>(p.v_head_dim));
    std::vector<float> k_scratch(static_cast<size_t>(p.head_dim)), v_scratch(static_cast<size_t>(p.v_head_dim));
    for (int kvh = 0; kvh < p.num_kv_heads; ++kvh) {
      const float* q0 = p.q + row * p.q_stride + static_cast<int64_t>(kvh) * group * p.head_dim;
      for (int64_t j = 0; j < n; ++j) {
        const float* k = cache.Load(p.layer, s.block_table, first + j,
                                    p.k_offset + static_cast<int64_t>(kvh) * p.head_dim, p.head_dim,
                                    k_scratch.data());
        for (int g = 0; g < group; ++g) {
          const float* q = q0 + static_cast<int64_t>(g) * p.head_dim;
          float dot = 0.0f;
          for (int d = 0; d < p.head_dim; ++d) dot += q[d] * k[d];
          scores[g * n + j] = dot * p.scale;
        }
      }
      for (int g = 0; g < group; ++g) {
        float* sc = scores.data() + g * n;
        Softmax(sc, n);
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j = 0; j < n; ++j) {
          const float* v = cache.Load(p.layer, s.block_table, first + j,
                                      p.v_offset + static_cast<int64_t>(kvh) * p.v_head_dim,
                                      p.v_head_dim, v_scratch.data());
          for (int d = 0; d < p.v_head_dim; ++d) acc[d] += sc[j] * v[d];
        }
        const int h = kvh * group + g;
        float* o = p.out + row * p.out_stride + static_cast<int64_t>(h) * p.v_head_dim;
        std::copy(acc.begin(), acc.end(), o);
      }
    }
  });
}

}  // namespace moerack
