#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "kernels/ops.h"

namespace moerack {

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
    for (int kvh = 0; kvh < p.num_kv_heads; ++kvh) {
      const float* q0 = p.q + row * p.q_stride + static_cast<int64_t>(kvh) * group * p.head_dim;
      for (int64_t j = 0; j < n; ++j) {
        const float* k = cache.Slot(p.layer, s.block_table, first + j) + p.k_offset +
                         static_cast<int64_t>(kvh) * p.head_dim;
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
          const float* v = cache.Slot(p.layer, s.block_table, first + j) + p.v_offset +
                           static_cast<int64_t>(kvh) * p.v_head_dim;
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
