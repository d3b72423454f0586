// The int8-activation matmul of FP4 weights (--act-dtype int8, W4A8), the way
// llama.cpp multiplies its quantized weights by Q8_0-quantized activations:
// each row of x is quantized per 32 values along K (symmetric, d = amax/127,
// q = round-half-even(x·127/amax)), and each weight as the integer 2·e2m1 in
// [-12, 12] (exact), so a group's dot product is an exact integer sum of
// products. Per 16 weights (a group, one f32 lane) y += isum · (w_scale · d/2),
// an f32 FMA; lanes then add in a fixed tree, then a scalar tail. The order per
// output element depends only on K and the format (DESIGN.md principle 2), and
// the AVX2 kernel and the portable one give the same bits.
//
// AVX2 layout. A 64-weight chunk is 32 code bytes (byte b: weights 2b, 2b+1).
// Two VPSHUFB look up the low and the high nibbles as u8 = 2·e2m1 + 12 in
// [0, 24]; x is stored per chunk as its even and its odd elements, so two
// VPMADDUBSW (u8 weights × s8 x, pairs summed: at most 2·24·127, no
// saturation) and a VPADDW give in word pair u the sum over weights 8u .. 8u+7
// (at most 12192). A step is two chunks: one VPHADDW of the two chunks' words
// (at most 24384, exact) and a VPMADDWD by ones give in dword lane v the sum
// over group kLaneGroup[v] of the step's eight groups of 16 (groups 0-3 from
// the first chunk, 4-7 from the second), one NVFP4 block each. Each quantized
// step of x carries, per lane, 12·Σq (subtracted: the +12 offset) and d/2 of
// its block. Per 128 weights and row of x: 19 integer instructions (10 of them
// shared by up to 4 rows of x), the block scales' decode (4) and 3 float ones,
// 26 in all; a lane per 8 weights took 36 (two scale decodes, FMAs, ...).
#include "kernels/matmul_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "quant/fp8.h"
#include "quant/nvfp4.h"

namespace moerack {
namespace {

constexpr int64_t kChunk = 64;       // weights per chunk (32 code bytes)
constexpr int64_t kStepBytes = 192;  // a step (two chunks) of quantized x: per chunk its even
                                     // and odd values (64 bytes), then d/2 and 12·Σq per lane
constexpr int64_t kTailBytes = 128;
constexpr int64_t kActBlock = 32;    // values of x per int8 scale
constexpr int kOffset = 12;          // weights as unsigned bytes: 2·e2m1 + 12
// 2·e2m1(code) + 12.
constexpr uint8_t kCodeU8[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
// Lane v of a step holds group kLaneGroup[v] (VPHADDW's order: per 128-bit
// half two groups of the first chunk, then two of the second); its own inverse.
constexpr int kLaneGroup[8] = {0, 1, 4, 5, 2, 3, 6, 7};

// Steps of a row: ceil(chunks / 2); an odd last chunk's step has zeros for
// its second chunk (values, d/2 and sums), and the kernels read no weights for it.
int64_t Steps(int64_t K) { return (K / kChunk + 1) / 2; }
// A row of quantized x: the steps, then the tail (K % 64 values in order,
// then d/2 of its at most two blocks at byte 64).
int64_t QuantizedRowBytes(int64_t K) { return Steps(K) * kStepBytes + kTailBytes; }
const uint8_t* TailOf(const uint8_t* xq, int64_t K) { return xq + Steps(K) * kStepBytes; }

// Chunk c's per-lane fields in its step: d/2 of each of its four groups' x
// block, and 12 x each group's sum of q.
void WriteChunkLanes(uint8_t* out, int64_t c, const int32_t group_sums[4], const float half_d[2]) {
  uint8_t* step = out + c / 2 * kStepBytes;
  for (int j = 0; j < 4; ++j) {
    const int lane = kLaneGroup[4 * (c % 2) + j];
    const int32_t off = kOffset * group_sums[j];
    std::memcpy(step + 128 + 4 * lane, &half_d[j / 2], 4);
    std::memcpy(step + 160 + 4 * lane, &off, 4);
  }
}

thread_local ScratchVector<uint8_t> tls_xq;
thread_local ScratchVector<int8_t> tls_q;
thread_local ScratchVector<float> tls_half_d;

float LoadF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
int32_t LoadI32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// x[k] quantized per block of 32: q into q[0, K), d/2 per block into half_d.
void QuantizeValues(const float* x, int64_t K, int8_t* q, float* half_d) {
  for (int64_t b = 0; b * kActBlock < K; ++b) {
    const int64_t k0 = b * kActBlock, k1 = std::min(K, k0 + kActBlock);
    float amax = 0;
    for (int64_t k = k0; k < k1; ++k) amax = std::max(amax, std::fabs(x[k]));
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    half_d[b] = 0.5f * (amax / 127.0f);
    for (int64_t k = k0; k < k1; ++k) {
      // Round half to even by the 1.5·2^23 trick (|v| <= 127 but for rounding);
      // inf and NaN (x inf or NaN, or amax so small that 127/amax overflows)
      // give -127, as VCVTPS2DQ's 0x80000000 clamped does.
      const float v = x[k] * inv;
      const float r = std::fabs(v) <= 128.0f ? (v + 0x1.8p23f) - 0x1.8p23f : -127.0f;
      q[k] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
    }
  }
}

// x quantized into the layout the kernels read (QuantizedRowBytes). Chunks
// [0, c0) were written already (by the AVX2 quantizer).
void QuantizeRowFrom(const float* x, int64_t K, int64_t c0, uint8_t* out) {
  int8_t* q = Scratch(tls_q, K);
  float* half_d = Scratch(tls_half_d, K / kActBlock + 1);
  QuantizeValues(x + c0 * kChunk, K - c0 * kChunk, q + c0 * kChunk, half_d + c0 * 2);
  const int64_t chunks = K / kChunk;
  for (int64_t c = c0; c < chunks; ++c) {
    const int8_t* qc = q + c * kChunk;
    uint8_t* o = out + c / 2 * kStepBytes + c % 2 * 64;
    for (int j = 0; j < 32; ++j) {
      o[j] = static_cast<uint8_t>(qc[2 * j]);
      o[32 + j] = static_cast<uint8_t>(qc[2 * j + 1]);
    }
    int32_t sums[4] = {};
    for (int j = 0; j < 4; ++j)
      for (int t = 0; t < 16; ++t) sums[j] += qc[16 * j + t];
    WriteChunkLanes(out, c, sums, half_d + 2 * c);
  }
  uint8_t* tail = out + Steps(K) * kStepBytes;
  const int64_t k0 = chunks * kChunk;
  std::memset(tail, 0, kTailBytes);
  for (int64_t k = k0; k < K; ++k) tail[k - k0] = static_cast<uint8_t>(q[k]);
  for (int64_t b = 0; b < 2 && k0 + b * kActBlock < K; ++b)
    std::memcpy(tail + 64 + 4 * b, &half_d[k0 / kActBlock + b], 4);
}

// The scale of weight k's block, as the SIMD kernel computes it: NVFP4
// E4M3·global (or /global), MXFP4 2^(e-127) with e = 0 read as 2^-127.
float WeightScale(const LinearWeight& w, int64_t n, int64_t k) {
  const auto* sc = static_cast<const uint8_t*>(w.scales);
  if (w.format == WeightFormat::kNvfp4) {
    const float bs = Fp8E4M3ToF32(sc[n * w.cols / 16 + k / 16]);
    return w.global_divides ? bs / w.global_scale : bs * w.global_scale;
  }
  const uint32_t e = sc[n * w.cols / 32 + k / 32];
  if (e == 0) return 0x1p-127f;
  float s;
  const uint32_t bits = e << 23;
  std::memcpy(&s, &bits, 4);
  return s;
}

// The K % 64 weights after the chunks, per group of 8 in order.
float TailDot(const uint8_t* xq, const LinearWeight& w, int64_t n) {
  const int64_t K = w.cols, k0 = K / kChunk * kChunk;
  const uint8_t* tail = TailOf(xq, K);
  const auto* codes = static_cast<const uint8_t*>(w.data) + n * K / 2;
  float t = 0;
  for (int64_t g = k0; g < K; g += 8) {
    int32_t s = 0;
    for (int64_t k = g; k < g + 8; ++k) {
      const int code = (k & 1) ? codes[k / 2] >> 4 : codes[k / 2] & 15;
      s += (kCodeU8[code] - kOffset) * static_cast<int8_t>(tail[k - k0]);
    }
    const float ls = WeightScale(w, n, g) * LoadF32(tail + 64 + 4 * ((g - k0) / kActBlock));
    t = std::fma(static_cast<float>(s), ls, t);
  }
  return t;
}

float LaneTree(const float a[8]) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// The portable kernel: one row of quantized x by weight row n.
float DotPortable(const uint8_t* xq, const LinearWeight& w, int64_t n) {
  const int64_t K = w.cols, chunks = K / kChunk;
  const auto* codes = static_cast<const uint8_t*>(w.data) + n * K / 2;
  float acc[8] = {};
  for (int64_t st = 0; st < Steps(K); ++st) {
    const uint8_t* o = xq + st * kStepBytes;
    for (int v = 0; v < 8; ++v) {
      const int g = kLaneGroup[v];
      const int64_t c = 2 * st + g / 4;
      int32_t s = 0;
      float ls = 0;  // the absent second chunk of an odd last step: 0 · 0
      if (c < chunks) {
        const uint8_t* cc = codes + c * 32;
        const uint8_t* xc = o + g / 4 * 64;
        for (int b = 8 * (g % 4); b < 8 * (g % 4) + 8; ++b) {
          s += kCodeU8[cc[b] & 15] * static_cast<int8_t>(xc[b]) +
               kCodeU8[cc[b] >> 4] * static_cast<int8_t>(xc[32 + b]);
        }
        ls = WeightScale(w, n, c * kChunk + 16 * (g % 4)) * LoadF32(o + 128 + 4 * v);
      }
      s -= LoadI32(o + 160 + 4 * v);
      acc[v] = std::fma(static_cast<float>(s), ls, acc[v]);
    }
  }
  const float sum = LaneTree(acc);
  return K % kChunk != 0 ? sum + TailDot(xq, w, n) : sum;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MR_TARGET_AVX2 __attribute__((target("avx2,fma")))

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

// Horizontal max of v in every lane.
MR_TARGET_AVX2 inline __m256 MaxAll(__m256 v) {
  v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
  v = _mm256_max_ps(v, _mm256_permute_ps(v, 0x4E));
  return _mm256_max_ps(v, _mm256_permute_ps(v, 0xB1));
}

// The chunks of a row of x quantized as QuantizeRowFrom does (the same bits),
// 64 values at a time.
MR_TARGET_AVX2 void QuantizeChunks(const float* x, int64_t K, uint8_t* out) {
  const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
  const __m256i lim = _mm256_set1_epi32(127), neg_lim = _mm256_set1_epi32(-127);
  // Within each 128-bit lane: the even bytes, then the odd ones.
  const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,  //
                                         0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t c = 0; c < K / kChunk; ++c) {
    const float* xc = x + c * kChunk;
    __m256i q[8];
    __m256 half_d[2];
    for (int b = 0; b < 2; ++b) {  // the chunk's two blocks of 32
      __m256 v[4], amax = zero;
      for (int j = 0; j < 4; ++j) {
        v[j] = _mm256_loadu_ps(xc + 32 * b + 8 * j);
        amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[j]), amax);  // NaN x: amax kept
      }
      amax = MaxAll(amax);
      const __m256 inv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(127.0f), amax),
                                       _mm256_cmp_ps(amax, zero, _CMP_GT_OQ));
      half_d[b] = _mm256_mul_ps(_mm256_set1_ps(0.5f), _mm256_div_ps(amax, _mm256_set1_ps(127.0f)));
      for (int j = 0; j < 4; ++j) {  // RNE (MXCSR's default); NaN -> INT_MIN -> -127
        const __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], inv));
        q[4 * b + j] = _mm256_max_epi32(_mm256_min_epi32(r, lim), neg_lim);
      }
    }
    // Bytes in order (x[0..31], x[32..63]), then even and odd elements.
    __m256i nat[2];
    for (int b = 0; b < 2; ++b) {
      const __m256i w01 = _mm256_packs_epi32(q[4 * b], q[4 * b + 1]);
      const __m256i w23 = _mm256_packs_epi32(q[4 * b + 2], q[4 * b + 3]);
      nat[b] = _mm256_shuffle_epi8(
          _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), order), split);
      nat[b] = _mm256_permute4x64_epi64(nat[b], 0xD8);  // even qwords, then odd ones
    }
    uint8_t* o = out + c / 2 * kStepBytes + c % 2 * 64;
    _mm256_store_si256(reinterpret_cast<__m256i*>(o), _mm256_permute2x128_si256(nat[0], nat[1], 0x20));
    _mm256_store_si256(reinterpret_cast<__m256i*>(o + 32),
                       _mm256_permute2x128_si256(nat[0], nat[1], 0x31));
    // Group j (q[16j .. 16j+15]): the sums of vectors 2j and 2j+1.
    const __m256i t0 = _mm256_hadd_epi32(_mm256_hadd_epi32(q[0], q[1]), _mm256_hadd_epi32(q[2], q[3]));
    const __m256i t1 = _mm256_hadd_epi32(_mm256_hadd_epi32(q[4], q[5]), _mm256_hadd_epi32(q[6], q[7]));
    alignas(32) int32_t eighths[8];  // lane u: the sum of q[8u .. 8u+7]
    _mm256_store_si256(reinterpret_cast<__m256i*>(eighths),
                       _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x20),
                                        _mm256_permute2x128_si256(t0, t1, 0x31)));
    const int32_t sums[4] = {eighths[0] + eighths[1], eighths[2] + eighths[3],
                             eighths[4] + eighths[5], eighths[6] + eighths[7]};
    const float hd[2] = {_mm256_cvtss_f32(half_d[0]), _mm256_cvtss_f32(half_d[1])};
    WriteChunkLanes(out, c, sums, hd);
  }
}

// How a weight's block scale decodes, fixed per matrix (a template argument,
// so the chunk loop has no branch on it).
enum ScaleKind { kNvFused, kNvGeneral, kMx };

// kBytes (2, 4 or 8) bytes at p in bytes 0 .. kBytes-1 of every qword.
template <int kBytes>
MR_TARGET_AVX2 inline __m256i BroadcastBytes(const uint8_t* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, kBytes);
  return _mm256_set1_epi64x(static_cast<int64_t>(v));
}

// Lane v: the scale of group kLaneGroup[v] of step st, as WeightScale gives it
// (kHalf: the step's second chunk absent, its lanes' bytes zero, none read).
// mul: 2^120 * global (kNvFused) or 2^120 (kNvGeneral).
template <int kKind, bool kHalf>
MR_TARGET_AVX2 inline __m256 LaneWeightScales(const LinearWeight& w, __m256 mul, int64_t n,
                                              int64_t st) {
  const auto* sc = static_cast<const uint8_t*>(w.scales);
  const int z = static_cast<int>(0x80808000u);  // index bit 7 zeroes a byte
  if constexpr (kKind != kMx) {  // group g: byte g of 8; f32 bits = byte << 20 read as 2^-120 x the value
    const __m256i bytes = BroadcastBytes<kHalf ? 4 : 8>(sc + n * w.cols / 16 + st * 8);
    const int g4 = kHalf ? -1 : z | 4, g5 = kHalf ? -1 : z | 5, g6 = kHalf ? -1 : z | 6,
              g7 = kHalf ? -1 : z | 7;
    const __m256i spread = _mm256_setr_epi32(z | 0, z | 1, g4, g5, z | 2, z | 3, g6, g7);
    const __m256i e = _mm256_shuffle_epi8(bytes, spread);
    const __m256 s = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(e, 20)), mul);
    if constexpr (kKind == kNvFused) return s;
    return w.global_divides ? _mm256_div_ps(s, _mm256_set1_ps(w.global_scale))
                            : _mm256_mul_ps(s, _mm256_set1_ps(w.global_scale));
  } else {
    // Group g: MX block g / 2 (byte g / 2 of 4).
    const __m256i bytes = BroadcastBytes<kHalf ? 2 : 4>(sc + n * w.cols / 32 + st * 4);
    const int g2 = kHalf ? -1 : z | 2, g3 = kHalf ? -1 : z | 3;
    const __m256i spread = _mm256_setr_epi32(z | 0, z | 0, g2, g2, z | 1, z | 1, g3, g3);
    const __m256i e = _mm256_shuffle_epi8(bytes, spread);
    const __m256 zero = _mm256_castsi256_ps(_mm256_cmpeq_epi32(e, _mm256_setzero_si256()));
    return _mm256_blendv_ps(_mm256_castsi256_ps(_mm256_slli_epi32(e, 23)),
                            _mm256_set1_ps(0x1p-127f), zero);
  }
}

// One step (chunks 2st and 2st+1; kHalf: the first only) of rows [0, MR) of
// quantized x by weight rows n .. n+NR-1, into acc.
template <int MR, int NR, int kKind, bool kHalf>
MR_TARGET_AVX2 inline void Step(const uint8_t* xq, int64_t xstride, const LinearWeight& w,
                                __m256 mul, int64_t n, const uint8_t* codes, int64_t st,
                                __m256 (&acc)[NR][MR]) {
  const int64_t K = w.cols;
  const __m256i table =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kCodeU8)));
  const __m256i nibble = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (int r = 0; r < NR; ++r) {
    __m256i we[2], wo[2];
    for (int h = 0; h < (kHalf ? 1 : 2); ++h) {
      const __m256i raw = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(codes + r * K / 2 + (2 * st + h) * 32));
      we[h] = _mm256_shuffle_epi8(table, _mm256_and_si256(raw, nibble));
      wo[h] = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(raw, 4), nibble));
    }
    const __m256 ws = LaneWeightScales<kKind, kHalf>(w, mul, n + r, st);
    for (int i = 0; i < MR; ++i) {
      const uint8_t* o = xq + i * xstride + st * kStepBytes;
      __m256i s16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      for (int h = 0; h < (kHalf ? 1 : 2); ++h) {
        const __m256i xe = _mm256_load_si256(reinterpret_cast<const __m256i*>(o + 64 * h));
        const __m256i xo = _mm256_load_si256(reinterpret_cast<const __m256i*>(o + 64 * h + 32));
        s16[h] = _mm256_add_epi16(_mm256_maddubs_epi16(we[h], xe), _mm256_maddubs_epi16(wo[h], xo));
      }
      const __m256i s32 =
          _mm256_sub_epi32(_mm256_madd_epi16(_mm256_hadd_epi16(s16[0], s16[1]), ones),
                           _mm256_load_si256(reinterpret_cast<const __m256i*>(o + 160)));
      const __m256 ls = _mm256_mul_ps(ws, _mm256_load_ps(reinterpret_cast<const float*>(o + 128)));
      acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), ls, acc[r][i]);
    }
  }
}

// Rows [0, MR) of quantized x (stride xstride bytes) by weight rows n .. n+NR-1.
template <int MR, int NR, int kKind>
MR_TARGET_AVX2 void Tile(const uint8_t* xq, int64_t xstride, const LinearWeight& w, __m256 mul,
                         int64_t n, float* y, int64_t ldy) {
  const int64_t K = w.cols, chunks = K / kChunk, per_scale = kKind == kMx ? 32 : 16;
  const auto* codes = static_cast<const uint8_t*>(w.data) + n * K / 2;
  const auto* scales = static_cast<const uint8_t*>(w.scales) + n * K / per_scale;
  const int64_t scale_bytes = NR * K / per_scale;  // the tile's, contiguous
  __m256 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < MR; ++i) acc[r][i] = _mm256_setzero_ps();
  for (int64_t st = 0; st < chunks / 2; ++st) {
    // The tile's NR rows of codes are contiguous: prefetch as one stream read
    // at NR x 64 bytes a step, and the next tiles' scales during the first steps.
    for (int line = 0; line < NR * 64; line += 64)
      _mm_prefetch(reinterpret_cast<const char*>(codes + st * NR * 64 + line + kPrefetchAheadBytes),
                   _MM_HINT_T0);
    if (st * 128 < scale_bytes) {
      _mm_prefetch(reinterpret_cast<const char*>(scales + 2 * scale_bytes + st * 128), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(scales + 2 * scale_bytes + st * 128 + 64),
                   _MM_HINT_T0);
    }
    Step<MR, NR, kKind, false>(xq, xstride, w, mul, n, codes, st, acc);
  }
  if (chunks % 2 != 0) Step<MR, NR, kKind, true>(xq, xstride, w, mul, n, codes, chunks / 2, acc);
  const bool tail = K % kChunk != 0;
  for (int i = 0; i < MR; ++i) {
    alignas(32) float sums[NR];
    if constexpr (NR == 4) {
      // LaneTree of four rows at once: HADD pairs lanes (0+1, 2+3 | 4+5, 6+7),
      // the second HADD their sums, the halves then add.
      const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[0][i], acc[1][i]),
                                      _mm256_hadd_ps(acc[2][i], acc[3][i]));
      _mm_store_ps(sums, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    } else {
      for (int r = 0; r < NR; ++r) {
        alignas(32) float a[8];
        _mm256_store_ps(a, acc[r][i]);
        sums[r] = LaneTree(a);
      }
    }
    for (int r = 0; r < NR; ++r)
      y[i * ldy + r] = tail ? sums[r] + TailDot(xq + i * xstride, w, n + r) : sums[r];
  }
}

template <int kKind>
MR_TARGET_AVX2 void SimdBlockOf(const uint8_t* xq, int64_t xstride, int64_t rows,
                                const LinearWeight& w, int64_t n0, int64_t n1, float* y,
                                int64_t ldy) {
  const __m256 mul = _mm256_set1_ps(kKind == kNvFused ? 0x1p120f * w.global_scale : 0x1p120f);
  if (rows == 1) {  // decode: four weight rows a tile (one x load, one lane reduction for four)
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) Tile<1, 4, kKind>(xq, xstride, w, mul, n, y + n, ldy);
    for (; n < n1; ++n) Tile<1, 1, kKind>(xq, xstride, w, mul, n, y + n, ldy);
    return;
  }
  // Groups of weight rows stay in L2 while every 4 rows of x (L1) pass over them.
  constexpr int64_t kGroup = 32;
  for (int64_t g = n0; g < n1; g += kGroup) {
    const int64_t g1 = std::min(n1, g + kGroup);
    int64_t m = 0;
    for (; m + 4 <= rows; m += 4)
      for (int64_t n = g; n < g1; ++n)
        Tile<4, 1, kKind>(xq + m * xstride, xstride, w, mul, n, y + m * ldy + n, ldy);
    for (int64_t n = g; n < g1; ++n) {
      const uint8_t* x = xq + m * xstride;
      float* yn = y + m * ldy + n;
      switch (rows - m) {
        case 1: Tile<1, 1, kKind>(x, xstride, w, mul, n, yn, ldy); break;
        case 2: Tile<2, 1, kKind>(x, xstride, w, mul, n, yn, ldy); break;
        case 3: Tile<3, 1, kKind>(x, xstride, w, mul, n, yn, ldy); break;
        default: break;
      }
    }
  }
}

void SimdBlock(const uint8_t* xq, int64_t xstride, int64_t rows, const LinearWeight& w, int64_t n0,
               int64_t n1, float* y, int64_t ldy) {
  if (w.format == WeightFormat::kMxfp4) return SimdBlockOf<kMx>(xq, xstride, rows, w, n0, n1, y, ldy);
  if (Nvfp4GlobalScaleFusable(w))
    return SimdBlockOf<kNvFused>(xq, xstride, rows, w, n0, n1, y, ldy);
  SimdBlockOf<kNvGeneral>(xq, xstride, rows, w, n0, n1, y, ldy);
}
#else
bool HasAvx2() { return false; }
void QuantizeChunks(const float*, int64_t, uint8_t*) {}
void SimdBlock(const uint8_t*, int64_t, int64_t, const LinearWeight&, int64_t, int64_t, float*,
               int64_t) {}
#endif

void Int8Block(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1, bool simd) {
  const int64_t K = p.w.cols, rows = m1 - m0, stride = QuantizedRowBytes(K);
  uint8_t* xq = Scratch(tls_xq, rows * stride);
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = p.x + (m0 + r) * p.x_stride;
    if (K / kChunk % 2 != 0)  // the absent chunk of the last step reads as zeros
      std::memset(xq + r * stride + (Steps(K) - 1) * kStepBytes, 0, kStepBytes);
    if (simd) QuantizeChunks(x, K, xq + r * stride);
    QuantizeRowFrom(x, K, simd ? K / kChunk : 0, xq + r * stride);
  }
  float* y = p.y + m0 * p.y_stride;
  if (simd) return SimdBlock(xq, stride, rows, p.w, n0, n1, y, p.y_stride);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t r = 0; r < rows; ++r) y[r * p.y_stride + n] = DotPortable(xq + r * stride, p.w, n);
}

}  // namespace

bool RunInt8ActivationBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (p.w.format != WeightFormat::kNvfp4 && p.w.format != WeightFormat::kMxfp4) return false;
  Int8Block(p, m0, m1, n0, n1, HasAvx2());
  return true;
}

void MatMulInt8Portable(const GemmProblem& p) {
  CHECK(p.w.format == WeightFormat::kNvfp4 || p.w.format == WeightFormat::kMxfp4)
      << "int8 activations take FP4 weights, not " << p.w.Describe();
  Int8Block(p, 0, p.rows, 0, p.w.rows, false);
}

void QuantizeDequantizeInt8(const float* x, int64_t K, float* out) {
  std::vector<int8_t> q(static_cast<size_t>(K));
  std::vector<float> half_d(static_cast<size_t>(K / kActBlock + 1));
  QuantizeValues(x, K, q.data(), half_d.data());
  for (int64_t k = 0; k < K; ++k) out[k] = q[k] * (2.0f * half_d[k / kActBlock]);
}

}  // namespace moerack
