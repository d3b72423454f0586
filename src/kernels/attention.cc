#include "kernels/attention.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cc"
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/scratch.h"
#include "kernels/exp.h"
#include "kernels/fp8-inl.h"
#include "quant/fp8.h"

HWY_BEFORE_NAMESPACE();
namespace moerack {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// scale times the lane sums of four vectors into sums[0..3] (unaligned). Every
// vector's lanes are added in the same fixed tree, so a sum does not depend on
// which slot it took: halving (lower half + upper half) down to 4 lanes, then
// a 4 x 4 transpose adding lanes 0+2 and 1+3, then the two.
#if HWY_TARGET == HWY_SCALAR
HWY_INLINE void LaneSums4(VF a, VF b, VF c, VF d, float scale, float* sums) {
  sums[0] = hn::GetLane(a) * scale, sums[1] = hn::GetLane(b) * scale;
  sums[2] = hn::GetLane(c) * scale, sums[3] = hn::GetLane(d) * scale;
}
#else
template <class D>
HWY_INLINE hn::Vec<hn::Full128<float> > FoldTo4(D d, hn::Vec<D> v) {
  if constexpr (hn::MaxLanes(d) == 4) {
    return v;
  } else {
    const hn::Half<D> dh;
    return FoldTo4(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)));
  }
}

HWY_INLINE void LaneSums4(VF a, VF b, VF c, VF d, float scale, float* sums) {
  const DF df;
  const hn::Full128<float> d4;
  const hn::Full128<uint64_t> d64;
  const auto a4 = FoldTo4(df, a), b4 = FoldTo4(df, b), c4 = FoldTo4(df, c), e4 = FoldTo4(df, d);
  // [a0+a2, b0+b2, a1+a3, b1+b3] and the same for c, d; then pairs of 64 bits.
  const auto ab = hn::Add(hn::InterleaveLower(d4, a4, b4), hn::InterleaveUpper(d4, a4, b4));
  const auto cd = hn::Add(hn::InterleaveLower(d4, c4, e4), hn::InterleaveUpper(d4, c4, e4));
  const auto lo = hn::InterleaveLower(d64, hn::BitCast(d64, ab), hn::BitCast(d64, cd));
  const auto hi = hn::InterleaveUpper(d64, hn::BitCast(d64, ab), hn::BitCast(d64, cd));
  hn::StoreU(hn::Mul(hn::Add(hn::BitCast(d4, lo), hn::BitCast(d4, hi)), hn::Set(d4, scale)), d4,
             sums);
}
#endif

#if HWY_TARGET <= HWY_AVX3
// scale times the lane sums of 16 vectors a[r * 4 + k] into out[r * out_stride
// + k]: LaneSums4's tree (lanes i + i+8, then + i+4, then + i+2, then + i+1),
// so the values are identical, but with every shuffle and add working on four
// vectors' lanes at once (~3.4 instructions per sum instead of ~8.8).
HWY_INLINE void LaneSums16(const VF* a, float scale, float* out, int64_t out_stride) {
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i) {  // [a lanes 0-7 + 8-15 | b lanes 0-7 + 8-15]
    const __m512 x = a[2 * i].raw, y = a[2 * i + 1].raw;
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xEE));
  }
  for (int i = 0; i < 4; ++i)  // one 128-bit block per vector: lanes 0-3 + 4-7
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; ++i) {  // two lanes per vector: 0+2, 1+3
    const __m512d x = _mm512_castps_pd(c[2 * i]), y = _mm512_castps_pd(c[2 * i + 1]);
    d[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  // Block k holds vectors k, 4+k, 8+k, 12+k; the permute puts vector 4r+k at lane 4r+k.
  const __m512 sums =
      _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512 v = _mm512_mul_ps(_mm512_permutexvar_ps(order, sums), _mm512_set1_ps(scale));
  _mm_storeu_ps(out, _mm512_castps512_ps128(v));
  _mm_storeu_ps(out + out_stride, _mm512_extractf32x4_ps(v, 1));
  _mm_storeu_ps(out + 2 * out_stride, _mm512_extractf32x4_ps(v, 2));
  _mm_storeu_ps(out + 3 * out_stride, _mm512_extractf32x4_ps(v, 3));
}
#endif

// out[r * out_stride + k] = scale * (q[r] . key[k]) for kR query rows and 4
// keys of `dim` floats: per-lane FMA chains over whole vectors (one key load
// serves kR rows, one query load 4 keys), the lanes summed by LaneSums4's
// tree, then the elements past the last whole vector added in order. A dot
// product's value depends only on its two rows, never on the rows or keys
// beside it.
template <int kR>
HWY_NOINLINE void Dots(const float* const* q, const float* const* key, int64_t dim, float scale,
                       float* out, int64_t out_stride) {
  const DF df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  VF acc[kR][4];
  for (int r = 0; r < kR; ++r)
    for (int k = 0; k < 4; ++k) acc[r][k] = hn::Zero(df);
  int64_t i = 0;
  for (; i + L <= dim; i += L) {
    VF kv[4];
    for (int k = 0; k < 4; ++k) kv[k] = hn::LoadU(df, key[k] + i);
    for (int r = 0; r < kR; ++r) {
      const VF qv = hn::LoadU(df, q[r] + i);
      for (int k = 0; k < 4; ++k) acc[r][k] = hn::MulAdd(qv, kv[k], acc[r][k]);
    }
  }
#if HWY_TARGET <= HWY_AVX3
  if constexpr (kR == 4) {
    if (i == dim) return LaneSums16(&acc[0][0], scale, out, out_stride);
  }
#endif
  for (int r = 0; r < kR; ++r) {
    float* o = out + r * out_stride;
    if (i == dim) {
      LaneSums4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], scale, o);
      continue;
    }
    LaneSums4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], 1.0f, o);
    for (int k = 0; k < 4; ++k) {
      for (int64_t t = i; t < dim; ++t) o[k] = std::fma(q[r][t], key[k][t], o[k]);
      o[k] *= scale;
    }
  }
}

// Prefetches the `n` floats at `p` (one key or value row) into L1.
HWY_INLINE void PrefetchRow(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) hwy::Prefetch(p + i);
}

// Rows to prefetch while weighted sums run: rows[j] (`dim` floats) during
// step j, for j < count.
struct Ahead {
  const float* const* rows = nullptr;
  int64_t count = 0, dim = 0;
};

// out[r][i] (+)= sum over j of w[r * w_stride + j] * rows[j][i] for kR weight
// rows: each element a chain of MulAdds in j order, from zero, or from out's
// value when `accumulate` (a partial sum over earlier keys; storing and
// reloading it leaves the chain exact). kR x kV accumulators stay in
// registers while the value rows stream past once.
template <int kR, int kV>
HWY_INLINE void WeightedSumsBlock(const float* w, int64_t w_stride, const float* const* rows,
                                  int64_t count, float* const* out, int64_t i, bool accumulate,
                                  Ahead ahead) {
  const DF df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  VF acc[kR][kV];
  for (int r = 0; r < kR; ++r)
    for (int u = 0; u < kV; ++u)
      acc[r][u] = accumulate ? hn::LoadU(df, out[r] + i + u * L) : hn::Zero(df);
  for (int64_t j = 0; j < count; ++j) {
    if (j < ahead.count) PrefetchRow(ahead.rows[j], ahead.dim);
    VF v[kV];
    for (int u = 0; u < kV; ++u) v[u] = hn::LoadU(df, rows[j] + i + u * L);
    for (int r = 0; r < kR; ++r) {
      const VF wj = hn::Set(df, w[r * w_stride + j]);
      for (int u = 0; u < kV; ++u) acc[r][u] = hn::MulAdd(wj, v[u], acc[r][u]);
    }
  }
  for (int r = 0; r < kR; ++r)
    for (int u = 0; u < kV; ++u) hn::StoreU(acc[r][u], df, out[r] + i + u * L);
}

template <int kR>
HWY_NOINLINE void WeightedSums(const float* w, int64_t w_stride, const float* const* rows,
                               int64_t count, float* const* out, int64_t n, bool accumulate,
                               Ahead ahead) {
  const DF df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  constexpr int kV = kR <= 2 ? 8 : 4;
  int64_t i = 0;
  for (; i + kV * L <= n; i += kV * L)
    WeightedSumsBlock<kR, kV>(w, w_stride, rows, count, out, i, accumulate,
                              i == 0 ? ahead : Ahead());
  for (; i + L <= n; i += L)
    WeightedSumsBlock<kR, 1>(w, w_stride, rows, count, out, i, accumulate,
                             i == 0 ? ahead : Ahead());
  for (; i < n; ++i) {
    for (int r = 0; r < kR; ++r) {
      float acc = accumulate ? out[r][i] : 0.0f;
      for (int64_t j = 0; j < count; ++j) acc = std::fma(w[r * w_stride + j], rows[j][i], acc);
      out[r][i] = acc;
    }
  }
}

// Row pointers of cache rows first .. first+n-1 at `offset` (`dim` floats): into
// the cache for an f32 cache, else decoded into `buf` (n x dim floats), the
// same values as KvCacheView::Load. The NaN codes (0x7F, 0xFF), which
// F32ToFp8E4M3 writes for a NaN, decode as +-480 in DecodeFp8E4M3: a running
// max of the bytes' low 7 bits, 64 bytes per instruction, spots them, and the
// rows are then decoded again through the scalar table (a NaN select per f32
// vector cost the FP8 decode 20%, a max over the f32 values 6-10%).
void RowPointers(const AttentionParams& p, const KvCacheView& cache, const AttentionSeq& s,
                 int64_t first, int64_t n, int64_t offset, int64_t dim, float scale, float* buf,
                 const float** rows) {
  const DF df;
  const hn::ScalableTag<uint8_t> d8;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df)), L8 = static_cast<int64_t>(hn::Lanes(d8));
  const bool f32 = cache.dtype == DType::kF32;
  const VF vs = hn::Set(df, scale);
  const auto low7 = hn::Set(d8, uint8_t{0x7F});
  auto peak = hn::Zero(d8);
  bool nan = false;
  for (int64_t j = 0; j < n;) {  // a block's slots lie a token slot apart
    int64_t at = cache.SlotIndex(p.layer, s.block_table, first + j) + offset;
    for (int64_t slot = (first + j) % cache.block_size; slot < cache.block_size && j < n;
         ++slot, ++j, at += cache.floats_per_token) {
      if (f32) {
        rows[j] = static_cast<const float*>(cache.base) + at;
        continue;
      }
      const uint8_t* src = static_cast<const uint8_t*>(cache.base) + at;
      float* dst = buf + j * dim;
      int64_t i = 0;
      for (; i + L8 <= dim; i += L8) peak = hn::Max(peak, hn::And(hn::LoadU(d8, src + i), low7));
      for (; i < dim; ++i) nan |= (src[i] & 0x7F) == 0x7F;
      for (i = 0; i + L <= dim; i += L)
        hn::StoreU(hn::Mul(DecodeFp8E4M3(df, src + i), vs), df, dst + i);
      for (; i < dim; ++i) dst[i] = Fp8E4M3ToF32(src[i]) * scale;
      rows[j] = dst;
    }
  }
  if (nan || !hn::AllFalse(d8, hn::Eq(peak, low7))) {
    for (int64_t j = 0; j < n; ++j)
      cache.Load(p.layer, s.block_table, first + j, offset, dim, buf + j * dim, scale);
  }
}

// Dots and WeightedSums by the number of query rows, 1 to 4.
constexpr decltype(&Dots<1>) kDots[] = {Dots<1>, Dots<2>, Dots<3>, Dots<4>};
constexpr decltype(&WeightedSums<1>) kWeightedSums[] = {WeightedSums<1>, WeightedSums<2>,
                                                        WeightedSums<3>, WeightedSums<4>};

// Keys (then values) are swept in chunks this long: a chunk's rows, 16 KB at
// head dim 128, stay in L1 while every query row of the tile uses them, and
// the next chunk's rows (a token slot apart, out of the hardware prefetcher's
// reach) are fetched meanwhile.
constexpr int64_t kKeyChunk = 32;

// Prefetches rows [a, b) of `rows` (`dim` floats each) within [0, n).
HWY_INLINE void PrefetchRows(const float* const* rows, int64_t a, int64_t b, int64_t n,
                             int64_t dim) {
  for (int64_t j = a; j < std::min(b, n); ++j) PrefetchRow(rows[j], dim);
}

// Query tokens t0 .. t0+nt-1 of a sequence, heads [g0, g1) of kv head `kvh`'s
// group: the rows of the tile share one read of the keys and values they see. Each
// row's scores (Dots, four query heads by four keys), softmax (over its own
// keys) and weighted sum of values (in key order) are computed exactly as for
// that row alone, so the tiling never changes a result.
void AttendTile(const AttentionParams& p, const KvCacheView& cache, const AttentionSeq& s,
                int64_t t0, int64_t nt, int kvh, int g0, int g1) {
  thread_local ScratchVector<float> scores, kv_scratch;
  thread_local ScratchVector<const float*> k_rows, v_rows;
  const int group = p.num_heads / p.num_kv_heads;
  const auto first_key = [&](int64_t pos) {
    return p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
  };
  // Keys lo .. lo+nk-1 serve the tile; token t sees columns [begin(t), end(t)).
  const int64_t pos0 = s.start_pos + t0, lo = first_key(pos0), nk = pos0 + nt - lo;
  const auto begin = [&](int64_t t) { return first_key(pos0 + t) - lo; };
  const auto end = [&](int64_t t) { return pos0 + t + 1 - lo; };
  const int64_t ns = (nk + 3) & ~int64_t{3};  // score row stride: whole blocks of 4 keys
  const bool f32 = cache.dtype == DType::kF32;
  const int64_t k_off = p.k_offset + static_cast<int64_t>(kvh) * p.head_dim;
  const int64_t v_off = p.v_offset + static_cast<int64_t>(kvh) * p.v_head_dim;
  // Row t * group + g, column key - lo. A block of 4 keys starting at an
  // unaligned begin(t) (sliding windows) may write up to 3 columns past ns:
  // into the next row's columns before its begin (ns is a multiple of 4), or
  // past the last row, hence the 4 spare floats.
  float* const sc = Scratch(scores, nt * group * ns + 4);
  const float** const keys = Scratch(k_rows, nk);
  const float** const values = Scratch(v_rows, nk);
  // An f32 cache is read in place (every row's pointer up front: the next
  // chunk's rows are prefetched); an FP8 one is decoded a chunk at a time.
  float* const buf =
      f32 ? nullptr : Scratch(kv_scratch, kKeyChunk * std::max(p.head_dim, p.v_head_dim));
  if (f32) RowPointers(p, cache, s, lo, nk, k_off, p.head_dim, p.k_scale, nullptr, keys);
  const auto q_row = [&](int64_t t, int g) {
    return p.q + (s.first_row + t0 + t) * p.q_stride +
           (static_cast<int64_t>(kvh) * group + g) * p.head_dim;
  };
  const auto out_row = [&](int64_t t, int g) {
    return p.out + (s.first_row + t0 + t) * p.out_stride +
           (static_cast<int64_t>(kvh) * group + g) * p.v_head_dim;
  };
  // For each key chunk: its rows of an FP8 cache decoded (`off`, `dim`,
  // `scale`: K or V), then fn(t, jb, je, lead) for each token with keys in it
  // (columns [jb, je)); `lead`: the chunk's first such token, which prefetches
  // the next chunk's rows of an f32 cache as it goes.
  const auto for_each_chunk = [&](const float** rows, int64_t off, int64_t dim, float scale,
                                  const auto& fn) {
    for (int64_t c0 = 0; c0 < nk; c0 += kKeyChunk) {
      if (!f32)
        RowPointers(p, cache, s, lo + c0, std::min(kKeyChunk, nk - c0), off, dim, scale, buf,
                    rows + c0);
      bool lead = f32;
      for (int64_t t = 0; t < nt; ++t) {
        const int64_t jb = std::max(begin(t), c0), je = std::min(end(t), c0 + kKeyChunk);
        if (jb >= je) continue;
        fn(t, jb, je, lead);
        lead = false;
      }
    }
  };
  if (f32) PrefetchRows(keys, 0, kKeyChunk, nk, p.head_dim);
  for_each_chunk(
      keys, k_off, p.head_dim, p.k_scale, [&](int64_t t, int64_t jb, int64_t je, bool lead) {
        // Blocks of 4 keys; a block past je repeats key je-1 into columns that are
        // the next chunk's (rewritten there) or past the row's keys.
        for (int64_t j = jb; j < je; j += 4) {
          if (lead) PrefetchRows(keys, j + kKeyChunk, j + kKeyChunk + 4, nk, p.head_dim);
          const float* kb[4];
          for (int k = 0; k < 4; ++k) kb[k] = keys[std::min(j + k, je - 1)];
          for (int g = g0; g < g1; g += 4) {
            const float* q[4];
            const int rows = std::min(4, g1 - g);
            for (int r = 0; r < rows; ++r) q[r] = q_row(t, g + r);
            kDots[rows - 1](q, kb, p.head_dim, p.scale, sc + (t * group + g) * ns + j, ns);
          }
        }
      });
  for (int64_t t = 0; t < nt; ++t)
    for (int g = g0; g < g1; ++g)
      Softmax(sc + (t * group + g) * ns + begin(t), end(t) - begin(t));
  if (f32) {
    RowPointers(p, cache, s, lo, nk, v_off, p.v_head_dim, p.v_scale, nullptr, values);
    PrefetchRows(values, 0, kKeyChunk, nk, p.v_head_dim);
  }
  for_each_chunk(
      values, v_off, p.v_head_dim, p.v_scale, [&](int64_t t, int64_t jb, int64_t je, bool lead) {
        for (int g = g0; g < g1; g += 4) {
          Ahead ahead;  // the next chunk's value rows, by the chunk's first weighted sum
          if (lead && g == g0)
            ahead = {values + jb + kKeyChunk, std::min(je - jb, nk - jb - kKeyChunk), p.v_head_dim};
          float* out[4];
          const int rows = std::min(4, g1 - g);
          for (int r = 0; r < rows; ++r) out[r] = out_row(t, g + r);
          const bool acc = jb > begin(t);  // out holds the sum over the earlier keys
          kWeightedSums[rows - 1](sc + (t * group + g) * ns + jb, ns, values + jb, je - jb, out,
                                  p.v_head_dim, acc, ahead);
        }
      });
}

}  // namespace HWY_NAMESPACE
}  // namespace moerack
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moerack {

HWY_EXPORT(AttendTile);

namespace {

// Query rows (tokens x the heads of a kv group) per attention task, and the
// most scores a task holds (rows x keys; 8 MB) before long contexts take fewer
// tokens per tile.
constexpr int64_t kTileRows = 64;
constexpr int64_t kMaxTileScores = int64_t{1} << 21;

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

void KvCacheView::PrefetchForWrite(int layer, std::span<const int32_t> block_table, int64_t pos,
                                   int64_t n) const {
  const int64_t slot_bytes = floats_per_token * DTypeBits(dtype) / 8;
  n = std::min(n, std::max<int64_t>(1, (int64_t{256} << 10) / std::max<int64_t>(slot_bytes, 1)));
  for (int64_t i = 0; i < n; ++i) {
    const char* slot = static_cast<const char*>(base) +
                       SlotIndex(layer, block_table, pos + i) * DTypeBits(dtype) / 8;
    for (int64_t b = 0; b < slot_bytes; b += 64) __builtin_prefetch(slot + b, 1, 3);
  }
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
  CHECK(p.num_kv_heads > 0 && p.num_heads >= p.num_kv_heads && p.num_heads % p.num_kv_heads == 0)
      << "PagedAttention: " << p.num_heads << " query heads over " << p.num_kv_heads << " kv heads";
  struct Task {
    const AttentionSeq* seq;
    int64_t token, num_tokens;  // a tile of the sequence's chunk
    int kv_head;
    int g0, g1;  // the heads of the kv head's group
  };
  // One task per (tile of tokens, kv head): a single decoded token still uses
  // every thread; a prefill chunk's tokens share the key and value reads of up
  // to kTileRows query rows. The latest tiles (the most keys) go first. With
  // fewer tasks than threads (MLA's decode: one latent kv head, one task),
  // each group's heads split in runs of a multiple of 4 (Dots' width), which
  // then read the keys and values once per run. Not with a task per thread
  // already: splitting bench-moe's four kv heads' decode tasks in two at 2
  // threads took 80 instead of 60 us at 512 keys (BM_PagedAttention).
  const int group = p.num_heads / p.num_kv_heads;
  std::vector<Task> tasks;
  for (const auto& s : seqs) {
    const int64_t keys = s.start_pos + s.num_tokens;
    const int64_t tile = std::clamp<int64_t>(kMaxTileScores / (group * std::max<int64_t>(keys, 1)),
                                             1, std::max<int64_t>(1, kTileRows / group));
    for (int64_t t = 0; t < s.num_tokens; t += tile)
      for (int h = 0; h < p.num_kv_heads; ++h)
        tasks.push_back({&s, t, std::min(tile, s.num_tokens - t), h, 0, group});
  }
  const size_t want = static_cast<size_t>(pool.num_threads());
  if (group > 4 && !tasks.empty() && tasks.size() < want) {
    const int pieces = static_cast<int>((want + tasks.size() - 1) / tasks.size());
    const int run = ((group + pieces - 1) / pieces + 3) / 4 * 4;
    std::vector<Task> split;
    for (const Task& t : tasks) {
      for (int g = 0; g < group; g += run) {
        Task piece = t;
        piece.g0 = g;
        piece.g1 = std::min(group, g + run);
        split.push_back(piece);
      }
    }
    tasks = std::move(split);
  }
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) {
    return a.seq->start_pos + a.token > b.seq->start_pos + b.token;
  });
  auto* attend = HWY_DYNAMIC_DISPATCH(AttendTile);
  pool.ParallelFor(static_cast<int64_t>(tasks.size()), [&](int64_t i, int) {
    const Task& t = tasks[static_cast<size_t>(i)];
    attend(p, cache, *t.seq, t.token, t.num_tokens, t.kv_head, t.g0, t.g1);
  });
}

}  // namespace moerack
#endif  // HWY_ONCE
