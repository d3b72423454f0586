#include "kernels/attention.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/cache_control.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/scratch.h"
#include "kernels/ops.h"
#include "quant/fp8.h"

HWY_BEFORE_NAMESPACE();
namespace moerack {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

HWY_INLINE float Dot(const float* a, const float* b, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  auto acc = hn::Zero(df);
  int64_t i = 0;
  for (; i + L <= n; i += L) acc = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc);
  float s = hn::GetLane(hn::SumOfLanes(df, acc));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Key and value rows of successive tokens lie a token slot apart (every kv
// head's K and V of the layer in between): the rows this many tokens ahead are
// prefetched.
constexpr int64_t kRowsAhead = 2;

// Prefetches the `n` floats at `p` (one key or value row) into L1.
HWY_INLINE void PrefetchRow(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) hwy::Prefetch(p + i);
}

// out[i] = sum over j of w[j] * rows[j][i] for i < n, each element a chain of
// MulAdds in j order from zero, kept in registers 8 vectors at a time (an Axpy
// per row stored and reloaded `out` for every row). `prefetch`: fetch rows
// kRowsAhead ahead (the first pass, over rows not yet cached).
HWY_INLINE void WeightedRowSum(const float* w, const float* const* rows, int64_t count, float* out,
                               int64_t n, bool prefetch) {
  const hn::ScalableTag<float> df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  constexpr int kV = 8;
  int64_t i = 0;
  for (; i + kV * L <= n; i += kV * L) {
    hn::Vec<decltype(df)> acc[kV];
    for (int u = 0; u < kV; ++u) acc[u] = hn::Zero(df);
    for (int64_t j = 0; j < count; ++j) {
      if (prefetch && j + kRowsAhead < count) PrefetchRow(rows[j + kRowsAhead] + i, kV * L);
      const auto wj = hn::Set(df, w[j]);
      for (int u = 0; u < kV; ++u) acc[u] = hn::MulAdd(wj, hn::LoadU(df, rows[j] + i + u * L), acc[u]);
    }
    for (int u = 0; u < kV; ++u) hn::StoreU(acc[u], df, out + i + u * L);
  }
  for (; i + L <= n; i += L) {
    auto acc = hn::Zero(df);
    for (int64_t j = 0; j < count; ++j) acc = hn::MulAdd(hn::Set(df, w[j]), hn::LoadU(df, rows[j] + i), acc);
    hn::StoreU(acc, df, out + i);
  }
  for (; i < n; ++i) {
    float acc = 0.0f;
    for (int64_t j = 0; j < count; ++j) acc = std::fma(w[j], rows[j][i], acc);
    out[i] = acc;
  }
}

// The heads of kv head `kvh`'s query group for one query token. The keys and
// values of the kv head are read once for the whole group; an FP8 cache is
// decoded once per token into scratch rows; an f32 cache is read in place, its
// next rows prefetched.
void AttendToken(const AttentionParams& p, const KvCacheView& cache, const AttentionSeq& s,
                 int64_t token, int kvh) {
  thread_local ScratchVector<float> scores, k_scratch, v_scratch;
  thread_local ScratchVector<const float*> v_rows;
  const int group = p.num_heads / p.num_kv_heads;
  const int64_t row = s.first_row + token, pos = s.start_pos + token;
  const int64_t first = p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
  const int64_t n = pos - first + 1;
  const bool f32 = cache.dtype == DType::kF32;
  const int64_t k_off = p.k_offset + static_cast<int64_t>(kvh) * p.head_dim;
  const int64_t v_off = p.v_offset + static_cast<int64_t>(kvh) * p.v_head_dim;
  float* const sc = Scratch(scores, n * group);
  float* const k_buf = f32 ? nullptr : Scratch(k_scratch, p.head_dim);
  float* const v_buf = f32 ? nullptr : Scratch(v_scratch, n * p.v_head_dim);
  const float** const rows = Scratch(v_rows, n);
  const float* q0 = p.q + row * p.q_stride + static_cast<int64_t>(kvh) * group * p.head_dim;
  for (int64_t j = 0; j < n; ++j) {
    if (f32 && j + kRowsAhead < n)  // an f32 Load is a pointer into the cache
      PrefetchRow(cache.Load(p.layer, s.block_table, first + j + kRowsAhead, k_off, p.head_dim, nullptr),
                  p.head_dim);
    const float* k = cache.Load(p.layer, s.block_table, first + j, k_off, p.head_dim, k_buf,
                                p.k_scale);
    for (int g = 0; g < group; ++g)
      sc[g * n + j] = Dot(q0 + static_cast<int64_t>(g) * p.head_dim, k, p.head_dim) * p.scale;
  }
  for (int g = 0; g < group; ++g) Softmax(sc + g * n, n);
  for (int64_t j = 0; j < n; ++j) {
    rows[j] = cache.Load(p.layer, s.block_table, first + j, v_off, p.v_head_dim,
                         f32 ? nullptr : v_buf + j * p.v_head_dim, p.v_scale);
  }
  for (int g = 0; g < group; ++g) {
    const int h = kvh * group + g;
    WeightedRowSum(sc + g * n, rows, n,
                   p.out + row * p.out_stride + static_cast<int64_t>(h) * p.v_head_dim, p.v_head_dim,
                   /*prefetch=*/f32 && g == 0);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moerack
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moerack {

HWY_EXPORT(AttendToken);

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
                        int64_t offset, const float* src, int64_t n, float scale) const {
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
                               int64_t offset, int64_t n, float* scratch, float scale) const {
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
  struct Task {
    const AttentionSeq* seq;
    int64_t token;  // index within the sequence's chunk
    int kv_head;
  };
  // One task per (token, kv head): a single decoded token still uses every thread.
  std::vector<Task> tasks;
  for (const auto& s : seqs) {
    for (int64_t t = 0; t < s.num_tokens; ++t)
      for (int h = 0; h < p.num_kv_heads; ++h) tasks.push_back({&s, t, h});
  }
  auto* attend = HWY_DYNAMIC_DISPATCH(AttendToken);
  pool.ParallelFor(static_cast<int64_t>(tasks.size()), [&](int64_t i, int) {
    attend(p, cache, *tasks[i].seq, tasks[i].token, tasks[i].kv_head);
  });
}

}  // namespace moerack
#endif  // HWY_ONCE
