// The int8-activation matmul of FP4 weights (--act-dtype int8, W4A8), the way
// llama.cpp multiplies its quantized weights by Q8_0-quantized activations:
// each row of x is quantized per 32 values along K (symmetric, d = amax/127,
// q = round-half-even(x·127/amax)), and each weight as the integer 2·e2m1 in
// [-12, 12] (exact), so a group's dot product is an exact integer sum of
// products. Per 16 weights (a group, one f32 lane) y += isum · (w_scale · d/2),
// an f32 FMA; lanes then add in a fixed tree, then a scalar tail. The order per
// output element depends only on K and the format (DESIGN.md principle 2), and
// the three kernels (portable, AVX2, AVX-512 VNNI) give the same bits.
//
// A step is 128 weights (64 code bytes; byte b: weights 2b, 2b+1), its eight
// groups of 16 one NVFP4 block each. Quantized x holds per step its even
// values, then its odd ones (64 bytes each), then per-group lanes: d/2 of the
// group's x block and 12·Σq over the group (subtracted: weights are read as
// unsigned bytes u8 = 2·e2m1 + 12 in [0, 24]); the lanes' layout is the
// kernel's (Layout).
//
// AVX2. Two VPSHUFB look up the low and the high nibbles of a 32-byte chunk;
// two VPMADDUBSW (u8 weights × s8 x, pairs summed: at most 2·24·127, no
// saturation) and a VPADDW give in word pair u the sum over weights 8u .. 8u+7
// (at most 12192). One VPHADDW of the step's two chunks (at most 24384,
// exact) and a VPMADDWD by ones give in dword lane v the sum over group
// kLaneGroup[v]. Per 128 weights and row of x: 19 integer instructions (10 of
// them shared by up to 4 rows of x), the block scales' decode (4) and 3 float
// ones, 26 in all.
//
// AVX-512 VNNI. One 64-byte load holds the step; two VPSHUFB give its even and
// odd weights, and two VPDPBUSD (u8 × s8, four products a dword) into lanes
// that start at -12·Σq give in dword lane 2g + j the sum over weights
// 16g + 8j .. 16g + 8j + 7. Two weight rows share a vector: two masked
// VPSHUFD and a VPADDD put group g's sum of the first in lane 2g and of the
// second in lane 2g+1, whose f32 FMAs then match the AVX2 kernel's lane
// kLaneGroup[g]. Per 128 weights and row of x: 5 weight instructions and 2 of
// block scales (shared by the rows of x), and 5 per row of x; in bench-moe
// prefill (int8) ~1.6x the AVX2 kernel on one Zen 5 thread.
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

// GCC 12 reports the _mm512_undefined_* inside its own intrinsic headers as
// uninitialized uses: a known false positive (as in matmul_bf16.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace moerack {
namespace {

constexpr int64_t kChunk = 64;       // weights per chunk (32 code bytes); a step is two
constexpr int64_t kTailBytes = 128;
constexpr int64_t kActBlock = 32;    // values of x per int8 scale
constexpr int kOffset = 12;          // weights as unsigned bytes: 2·e2m1 + 12
// 2·e2m1(code) + 12.
constexpr uint8_t kCodeU8[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
// Lane v of a step holds group kLaneGroup[v] (VPHADDW's order: per 128-bit
// half two groups of the first chunk, then two of the second); its own inverse.
constexpr int kLaneGroup[8] = {0, 1, 4, 5, 2, 3, 6, 7};

// A step of quantized x: its 64 even values (chunk 0's, then chunk 1's), its
// 64 odd ones, then per-group lanes in the kernel's layout:
//   kLanes8 (portable, AVX2): 8 f32 d/2, then 8 i32 12·Σq, lane v for group
//     kLaneGroup[v] (192 bytes);
//   kLanes16 (AVX-512 VNNI): 16 f32 d/2 (lanes 2g and 2g+1: group g), then 16
//     i32 -12·Σq in lane 2g and 0 in lane 2g+1 (256 bytes).
enum class Layout { kLanes8, kLanes16 };
constexpr int64_t StepBytes(Layout l) { return l == Layout::kLanes8 ? 192 : 256; }

// Steps of a row: ceil(chunks / 2); an odd last chunk's step has zeros for
// its second chunk (values, d/2 and sums), and the kernels read no weights for it.
int64_t Steps(int64_t K) { return (K / kChunk + 1) / 2; }
// A row of quantized x: the steps, then the tail (K % 64 values in order,
// then d/2 of its at most two blocks at byte 64).
int64_t QuantizedRowBytes(int64_t K, Layout l) { return Steps(K) * StepBytes(l) + kTailBytes; }
const uint8_t* TailOf(const uint8_t* xq, int64_t K, Layout l) {
  return xq + Steps(K) * StepBytes(l);
}
// Where chunk c's even values go (its odd ones: 64 bytes on).
uint8_t* ChunkValues(uint8_t* out, int64_t c, Layout l) {
  return out + c / 2 * StepBytes(l) + c % 2 * 32;
}

// Chunk c's per-lane fields in its step: d/2 of each of its four groups' x
// block, and 12 x each group's sum of q.
void WriteChunkLanes(uint8_t* out, int64_t c, const int32_t group_sums[4], const float half_d[2],
                     Layout l) {
  uint8_t* step = out + c / 2 * StepBytes(l);
  for (int j = 0; j < 4; ++j) {
    const int g = 4 * static_cast<int>(c % 2) + j;
    const int32_t off = kOffset * group_sums[j];
    if (l == Layout::kLanes8) {
      std::memcpy(step + 128 + 4 * kLaneGroup[g], &half_d[j / 2], 4);
      std::memcpy(step + 160 + 4 * kLaneGroup[g], &off, 4);
    } else {
      const int32_t neg[2] = {-off, 0};
      std::memcpy(step + 128 + 8 * g, &half_d[j / 2], 4);
      std::memcpy(step + 132 + 8 * g, &half_d[j / 2], 4);
      std::memcpy(step + 192 + 8 * g, neg, 8);
    }
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
void QuantizeRowFrom(const float* x, int64_t K, int64_t c0, uint8_t* out, Layout l) {
  int8_t* q = Scratch(tls_q, K);
  float* half_d = Scratch(tls_half_d, K / kActBlock + 1);
  QuantizeValues(x + c0 * kChunk, K - c0 * kChunk, q + c0 * kChunk, half_d + c0 * 2);
  const int64_t chunks = K / kChunk;
  for (int64_t c = c0; c < chunks; ++c) {
    const int8_t* qc = q + c * kChunk;
    uint8_t* o = ChunkValues(out, c, l);
    for (int j = 0; j < 32; ++j) {
      o[j] = static_cast<uint8_t>(qc[2 * j]);
      o[64 + j] = static_cast<uint8_t>(qc[2 * j + 1]);
    }
    int32_t sums[4] = {};
    for (int j = 0; j < 4; ++j)
      for (int t = 0; t < 16; ++t) sums[j] += qc[16 * j + t];
    WriteChunkLanes(out, c, sums, half_d + 2 * c, l);
  }
  uint8_t* tail = out + Steps(K) * StepBytes(l);
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
float TailDot(const uint8_t* xq, const LinearWeight& w, int64_t n, Layout l) {
  const int64_t K = w.cols, k0 = K / kChunk * kChunk;
  const uint8_t* tail = TailOf(xq, K, l);
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
    const uint8_t* o = xq + st * StepBytes(Layout::kLanes8);
    for (int v = 0; v < 8; ++v) {
      const int g = kLaneGroup[v];
      const int64_t c = 2 * st + g / 4;
      int32_t s = 0;
      float ls = 0;  // the absent second chunk of an odd last step: 0 · 0
      if (c < chunks) {
        const uint8_t* cc = codes + c * 32;
        const uint8_t* xc = o + g / 4 * 32;
        for (int b = 8 * (g % 4); b < 8 * (g % 4) + 8; ++b) {
          s += kCodeU8[cc[b] & 15] * static_cast<int8_t>(xc[b]) +
               kCodeU8[cc[b] >> 4] * static_cast<int8_t>(xc[64 + b]);
        }
        ls = WeightScale(w, n, c * kChunk + 16 * (g % 4)) * LoadF32(o + 128 + 4 * v);
      }
      s -= LoadI32(o + 160 + 4 * v);
      acc[v] = std::fma(static_cast<float>(s), ls, acc[v]);
    }
  }
  const float sum = LaneTree(acc);
  return K % kChunk != 0 ? sum + TailDot(xq, w, n, Layout::kLanes8) : sum;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MR_TARGET_AVX2 __attribute__((target("avx2,fma")))

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

// Step st of a tile of nr weight rows (codes and scales: its first row's):
// the rows' codes are contiguous, so they are prefetched as one stream at
// nr x 64 bytes a step, and the next tiles' scales during the first steps.
inline void PrefetchStep(const uint8_t* codes, const uint8_t* scales, int nr, int64_t scale_bytes,
                         int64_t st) {
  for (int line = 0; line < nr * 64; line += 64)
    _mm_prefetch(reinterpret_cast<const char*>(codes + st * nr * 64 + line + kPrefetchAheadBytes),
                 _MM_HINT_T0);
  if (st * 128 < scale_bytes) {
    _mm_prefetch(reinterpret_cast<const char*>(scales + 2 * scale_bytes + st * 128), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(scales + 2 * scale_bytes + st * 128 + 64),
                 _MM_HINT_T0);
  }
}

// Horizontal max of v in every lane.
MR_TARGET_AVX2 inline __m256 MaxAll(__m256 v) {
  v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
  v = _mm256_max_ps(v, _mm256_permute_ps(v, 0x4E));
  return _mm256_max_ps(v, _mm256_permute_ps(v, 0xB1));
}

// The chunks of a row of x quantized as QuantizeRowFrom does (the same bits),
// 64 values at a time.
MR_TARGET_AVX2 void QuantizeChunks(const float* x, int64_t K, uint8_t* out, Layout l) {
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
    uint8_t* o = ChunkValues(out, c, l);
    _mm256_store_si256(reinterpret_cast<__m256i*>(o), _mm256_permute2x128_si256(nat[0], nat[1], 0x20));
    _mm256_store_si256(reinterpret_cast<__m256i*>(o + 64),
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
    WriteChunkLanes(out, c, sums, hd, l);
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
      const uint8_t* o = xq + i * xstride + st * StepBytes(Layout::kLanes8);
      __m256i s16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      for (int h = 0; h < (kHalf ? 1 : 2); ++h) {
        const __m256i xe = _mm256_load_si256(reinterpret_cast<const __m256i*>(o + 32 * h));
        const __m256i xo = _mm256_load_si256(reinterpret_cast<const __m256i*>(o + 32 * h + 64));
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

// y[r] for r < NR: the LaneTree of lanes[r], then weight row n + r's tail
// (K % 64 weights) against the row of quantized x at xq (layout l).
template <int NR>
MR_TARGET_AVX2 inline void StoreSums(const __m256* lanes, const uint8_t* xq, const LinearWeight& w,
                                     int64_t n, Layout l, float* y) {
  alignas(32) float sums[NR];
  if constexpr (NR == 4) {
    // Four rows at once: HADD pairs lanes (0+1, 2+3 | 4+5, 6+7), the second
    // HADD their sums, the halves then add.
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(lanes[0], lanes[1]),
                                    _mm256_hadd_ps(lanes[2], lanes[3]));
    _mm_storeu_ps(sums, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  } else {
    for (int r = 0; r < NR; ++r) {
      alignas(32) float a[8];
      _mm256_store_ps(a, lanes[r]);
      sums[r] = LaneTree(a);
    }
  }
  for (int r = 0; r < NR; ++r)
    y[r] = w.cols % kChunk != 0 ? sums[r] + TailDot(xq, w, n + r, l) : sums[r];
}

// Rows [0, MR) of quantized x (stride xstride bytes) by weight rows n .. n+NR-1.
template <int MR, int NR, int kKind>
MR_TARGET_AVX2 void Tile(const uint8_t* xq, int64_t xstride, const LinearWeight& w,
                         float mul_scalar, int64_t n, float* y, int64_t ldy) {
  const __m256 mul = _mm256_set1_ps(mul_scalar);
  const int64_t K = w.cols, chunks = K / kChunk, per_scale = kKind == kMx ? 32 : 16;
  const auto* codes = static_cast<const uint8_t*>(w.data) + n * K / 2;
  const auto* scales = static_cast<const uint8_t*>(w.scales) + n * K / per_scale;
  const int64_t scale_bytes = NR * K / per_scale;  // the tile's, contiguous
  __m256 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < MR; ++i) acc[r][i] = _mm256_setzero_ps();
  for (int64_t st = 0; st < chunks / 2; ++st) {
    PrefetchStep(codes, scales, NR, scale_bytes, st);
    Step<MR, NR, kKind, false>(xq, xstride, w, mul, n, codes, st, acc);
  }
  if (chunks % 2 != 0) Step<MR, NR, kKind, true>(xq, xstride, w, mul, n, codes, chunks / 2, acc);
  for (int i = 0; i < MR; ++i) {
    __m256 lanes[NR];
    for (int r = 0; r < NR; ++r) lanes[r] = acc[r][i];
    StoreSums<NR>(lanes, xq + i * xstride, w, n, Layout::kLanes8, y + i * ldy);
  }
}

// Tile's AVX-512 VNNI counterpart (below), or a tile of the AVX2 kernel.
template <int MR, int NR, int kKind, bool kVnni>
void RunTile(const uint8_t* xq, int64_t xstride, const LinearWeight& w, float mul, int64_t n,
             float* y, int64_t ldy);

// Rows [0, MR) of quantized x by weight rows [n0, n1), a tile at a time.
template <int MR, int kKind, bool kVnni>
void RowTiles(const uint8_t* xq, int64_t xstride, const LinearWeight& w, float mul, int64_t n0,
              int64_t n1, float* y, int64_t ldy) {
  constexpr int kNR = kVnni ? 2 : 1;
  int64_t n = n0;
  for (; n + kNR <= n1; n += kNR)
    RunTile<MR, kNR, kKind, kVnni>(xq, xstride, w, mul, n, y + n, ldy);
  for (; n < n1; ++n) RunTile<MR, 1, kKind, kVnni>(xq, xstride, w, mul, n, y + n, ldy);
}

// Rows [0, rows) of quantized x by weight rows [n0, n1) with the AVX2 kernel
// (kVnni false) or the VNNI one.
template <int kKind, bool kVnni>
void SimdBlockOf(const uint8_t* xq, int64_t xstride, int64_t rows, const LinearWeight& w,
                 int64_t n0, int64_t n1, float* y, int64_t ldy) {
  const float mul = kKind == kNvFused ? 0x1p120f * w.global_scale : 0x1p120f;
  if (rows == 1) {  // decode: four weight rows a tile (one x load, one lane reduction for four)
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) RunTile<1, 4, kKind, kVnni>(xq, xstride, w, mul, n, y + n, ldy);
    for (; n < n1; ++n) RunTile<1, 1, kKind, kVnni>(xq, xstride, w, mul, n, y + n, ldy);
    return;
  }
  // Groups of weight rows stay in L2 while every 4 rows of x (L1) pass over
  // them, by one weight row a tile (AVX2) or two (VNNI).
  constexpr int64_t kGroup = 32;
  for (int64_t g = n0; g < n1; g += kGroup) {
    const int64_t g1 = std::min(n1, g + kGroup);
    int64_t m = 0;
    for (; m + 4 <= rows; m += 4)
      RowTiles<4, kKind, kVnni>(xq + m * xstride, xstride, w, mul, g, g1, y + m * ldy, ldy);
    const uint8_t* x = xq + m * xstride;
    switch (rows - m) {
      case 1: RowTiles<1, kKind, kVnni>(x, xstride, w, mul, g, g1, y + m * ldy, ldy); break;
      case 2: RowTiles<2, kKind, kVnni>(x, xstride, w, mul, g, g1, y + m * ldy, ldy); break;
      case 3: RowTiles<3, kKind, kVnni>(x, xstride, w, mul, g, g1, y + m * ldy, ldy); break;
      default: break;
    }
  }
}

template <bool kVnni>
void SimdBlock(const uint8_t* xq, int64_t xstride, int64_t rows, const LinearWeight& w, int64_t n0,
               int64_t n1, float* y, int64_t ldy) {
  if (w.format == WeightFormat::kMxfp4)
    return SimdBlockOf<kMx, kVnni>(xq, xstride, rows, w, n0, n1, y, ldy);
  if (Nvfp4GlobalScaleFusable(w))
    return SimdBlockOf<kNvFused, kVnni>(xq, xstride, rows, w, n0, n1, y, ldy);
  SimdBlockOf<kNvGeneral, kVnni>(xq, xstride, rows, w, n0, n1, y, ldy);
}

// ---- AVX-512 VNNI ----
#define MR_TARGET_VNNI \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

bool HasAvx512Vnni() {
  static const bool has = HasAvx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512vnni");
  return has;
}

// Lane 2g: the scale of group g of step st in weight row n, as
// LaneWeightScales computes it (the same operations, so the same bits); lane
// 2g+1: the same in row n+1 (kPair) or n. kHalf as there.
template <int kKind, bool kHalf, bool kPair>
MR_TARGET_VNNI inline __m512 VnniWeightScales(const LinearWeight& w, __m512 mul, int64_t n,
                                              int64_t st) {
  const auto* sc = static_cast<const uint8_t*>(w.scales);
  const int z = static_cast<int>(0x80808000u);  // index bit 7 zeroes a byte
  const int h = kHalf ? -1 : 0;                 // the absent chunk's groups: zero bytes
  if constexpr (kKind != kMx) {
    // Each 128-bit lane (VPSHUFB indexes within it): row n's 8 bytes, then row n+1's.
    const int64_t row = w.cols / 16;
    uint64_t a = 0, b = 0;
    std::memcpy(&a, sc + n * row + st * 8, kHalf ? 4 : 8);
    if constexpr (kPair) std::memcpy(&b, sc + (n + 1) * row + st * 8, kHalf ? 4 : 8);
    const __m512i bytes =
        _mm512_unpacklo_epi64(_mm512_set1_epi64(static_cast<int64_t>(a)),
                              _mm512_set1_epi64(static_cast<int64_t>(kPair ? b : a)));
    const __m512i spread = _mm512_setr_epi32(z | 0, z | 8, z | 1, z | 9, z | 2, z | 10, z | 3,
                                             z | 11,
                                             z | 4 | h, z | 12 | h, z | 5 | h, z | 13 | h,
                                             z | 6 | h, z | 14 | h, z | 7 | h, z | 15 | h);
    const __m512i e = _mm512_shuffle_epi8(bytes, spread);
    const __m512 s = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(e, 20)), mul);
    if constexpr (kKind == kNvFused) return s;
    return w.global_divides ? _mm512_div_ps(s, _mm512_set1_ps(w.global_scale))
                            : _mm512_mul_ps(s, _mm512_set1_ps(w.global_scale));
  } else {  // group g: MX block g / 2; row n's 4 bytes, then row n+1's
    const int64_t row = w.cols / 32;
    uint32_t a = 0, b = 0;
    std::memcpy(&a, sc + n * row + st * 4, kHalf ? 2 : 4);
    if constexpr (kPair) std::memcpy(&b, sc + (n + 1) * row + st * 4, kHalf ? 2 : 4);
    const uint64_t both = a | uint64_t{kPair ? b : a} << 32;
    const __m512i bytes = _mm512_set1_epi64(static_cast<int64_t>(both));
    const __m512i spread = _mm512_setr_epi32(z | 0, z | 4, z | 0, z | 4, z | 1, z | 5, z | 1, z | 5,
                                             z | 2 | h, z | 6 | h, z | 2 | h, z | 6 | h,
                                             z | 3 | h, z | 7 | h, z | 3 | h, z | 7 | h);
    const __m512i e = _mm512_shuffle_epi8(bytes, spread);
    const __mmask16 zero = _mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512());
    return _mm512_mask_blend_ps(zero, _mm512_castsi512_ps(_mm512_slli_epi32(e, 23)),
                                _mm512_set1_ps(0x1p-127f));
  }
}

// A step's 64 code bytes at p as u8 2·e2m1 + 12: the even weights (low
// nibbles) and the odd ones. The half step reads its 32 bytes only (masked
// bytes never fault).
template <bool kHalf>
MR_TARGET_VNNI inline void VnniUnpack(const uint8_t* p, __m512i& we, __m512i& wo) {
  const __m512i table =
      _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kCodeU8)));
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const __m512i raw = kHalf ? _mm512_maskz_loadu_epi8(0xFFFFFFFFull, p) : _mm512_loadu_si512(p);
  we = _mm512_shuffle_epi8(table, _mm512_and_si512(raw, nibble));
  wo = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(raw, 4), nibble));
}

// One step (kHalf: its first chunk only) of rows [0, MR) of quantized x
// (Layout::kLanes16) by weight rows n .. n+NR-1, into acc: weight rows 2a and
// 2a+1 share acc[a], group g of the first in lane 2g, of the second in 2g+1
// (the last of an odd NR alone, in lane 2g). A lane's FMAs are Tile's.
template <int MR, int NR, int kKind, bool kHalf>
MR_TARGET_VNNI inline void VnniStep(const uint8_t* xq, int64_t xstride, const LinearWeight& w,
                                    __m512 mul, int64_t n, const uint8_t* codes, int64_t st,
                                    __m512 (&acc)[(NR + 1) / 2][MR]) {
  const int64_t K = w.cols;
  for (int a = 0; a < (NR + 1) / 2; ++a) {
    const bool pair = 2 * a + 1 < NR;  // a compile-time constant once unrolled
    __m512i we0, wo0, we1, wo1;
    VnniUnpack<kHalf>(codes + 2 * a * K / 2 + st * 64, we0, wo0);
    if (pair) VnniUnpack<kHalf>(codes + (2 * a + 1) * K / 2 + st * 64, we1, wo1);
    const __m512 ws = pair ? VnniWeightScales<kKind, kHalf, true>(w, mul, n + 2 * a, st)
                           : VnniWeightScales<kKind, kHalf, false>(w, mul, n + 2 * a, st);
    for (int i = 0; i < MR; ++i) {
      const uint8_t* o = xq + i * xstride + st * StepBytes(Layout::kLanes16);
      const __m512i init = _mm512_load_si512(o + 192);  // -12·Σq in lane 2g
      const __m512i xe = _mm512_load_si512(o), xo = _mm512_load_si512(o + 64);
      // Lane 2g + j: weights 16g + 8j .. 16g + 8j + 7 (j = 0, 1).
      const __m512i s0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, we0, xe), wo0, xo);
      __m512i s;
      if (pair) {  // lane 2g: s0's lanes 2g + 2g+1; lane 2g+1: s1's
        const __m512i s1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, we1, xe), wo1, xo);
        s = _mm512_add_epi32(_mm512_mask_shuffle_epi32(s1, 0x5555, s0, _MM_PERM_CDAB),
                             _mm512_mask_shuffle_epi32(s0, 0xAAAA, s1, _MM_PERM_CDAB));
      } else {
        s = _mm512_add_epi32(s0, _mm512_srli_epi64(s0, 32));
      }
      const __m512 ls = _mm512_mul_ps(ws, _mm512_load_ps(o + 128));  // d/2 in lanes 2g, 2g+1
      acc[a][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), ls, acc[a][i]);
    }
  }
}

// Tile with the VNNI steps; each weight row's lanes 2·kLaneGroup[v] (+1 for
// the second of a pair) are gathered into lane v and summed as Tile sums.
template <int MR, int NR, int kKind>
MR_TARGET_VNNI void VnniTile(const uint8_t* xq, int64_t xstride, const LinearWeight& w,
                             float mul_scalar, int64_t n, float* y, int64_t ldy) {
  constexpr int kAccs = (NR + 1) / 2;
  const int64_t K = w.cols, chunks = K / kChunk, per_scale = kKind == kMx ? 32 : 16;
  const auto* codes = static_cast<const uint8_t*>(w.data) + n * K / 2;
  const auto* scales = static_cast<const uint8_t*>(w.scales) + n * K / per_scale;
  const int64_t scale_bytes = NR * K / per_scale;
  const __m512 mul = _mm512_set1_ps(mul_scalar);
  __m512 acc[kAccs][MR];
  for (int a = 0; a < kAccs; ++a)
    for (int i = 0; i < MR; ++i) acc[a][i] = _mm512_setzero_ps();
  for (int64_t st = 0; st < chunks / 2; ++st) {
    PrefetchStep(codes, scales, NR, scale_bytes, st);
    VnniStep<MR, NR, kKind, false>(xq, xstride, w, mul, n, codes, st, acc);
  }
  if (chunks % 2 != 0)
    VnniStep<MR, NR, kKind, true>(xq, xstride, w, mul, n, codes, chunks / 2, acc);
  int gather_idx[16];
  for (int v = 0; v < 8; ++v) {
    gather_idx[v] = 2 * kLaneGroup[v];
    gather_idx[8 + v] = 2 * kLaneGroup[v] + 1;
  }
  const __m512i gather = _mm512_loadu_si512(gather_idx);
  for (int i = 0; i < MR; ++i) {
    __m256 lanes[2 * kAccs];
    for (int a = 0; a < kAccs; ++a) {
      const __m512 g = _mm512_permutexvar_ps(gather, acc[a][i]);
      lanes[2 * a] = _mm512_castps512_ps256(g);
      lanes[2 * a + 1] = _mm512_extractf32x8_ps(g, 1);
    }
    StoreSums<NR>(lanes, xq + i * xstride, w, n, Layout::kLanes16, y + i * ldy);
  }
}

template <int MR, int NR, int kKind, bool kVnni>
void RunTile(const uint8_t* xq, int64_t xstride, const LinearWeight& w, float mul, int64_t n,
             float* y, int64_t ldy) {
  if constexpr (kVnni) {
    VnniTile<MR, NR, kKind>(xq, xstride, w, mul, n, y, ldy);
  } else {
    Tile<MR, NR, kKind>(xq, xstride, w, mul, n, y, ldy);
  }
}
#else
bool HasAvx2() { return false; }
bool HasAvx512Vnni() { return false; }
void QuantizeChunks(const float*, int64_t, uint8_t*, Layout) {}
template <bool kVnni>
void SimdBlock(const uint8_t*, int64_t, int64_t, const LinearWeight&, int64_t, int64_t, float*,
               int64_t) {}
#endif

bool Supported(Int8Kernel k) {
  switch (k) {
    case Int8Kernel::kPortable: return true;
    case Int8Kernel::kAvx2: return HasAvx2();
    case Int8Kernel::kAvx512Vnni: return HasAvx512Vnni();
  }
  return false;
}

Int8Kernel BestInt8Kernel() {
  static const Int8Kernel best = HasAvx512Vnni() ? Int8Kernel::kAvx512Vnni
                                 : HasAvx2()     ? Int8Kernel::kAvx2
                                                 : Int8Kernel::kPortable;
  return best;
}

// The rows of x this thread's tls_xq holds, quantized in matmul call `call`
// (0: none). A later task of the same call over the same rows (another block
// of outputs, or another weight reading the same x, as gate and up do) uses
// them as they are; a new call always quantizes again.
struct QuantizedRows {
  uint64_t call = 0;
  const float* x = nullptr;
  int64_t x_stride = 0, m0 = 0, m1 = 0, K = 0;
  Int8Kernel kernel = Int8Kernel::kPortable;
  bool operator==(const QuantizedRows&) const = default;
};
thread_local QuantizedRows tls_quantized;

void Int8Block(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
               Int8Kernel kernel, uint64_t call) {
  const Layout layout = kernel == Int8Kernel::kAvx512Vnni ? Layout::kLanes16 : Layout::kLanes8;
  const bool simd = kernel != Int8Kernel::kPortable;
  const int64_t K = p.w.cols, rows = m1 - m0, stride = QuantizedRowBytes(K, layout);
  const int64_t step = StepBytes(layout);
  uint8_t* xq = Scratch(tls_xq, rows * stride);
  const QuantizedRows key{call, p.x, p.x_stride, m0, m1, K, kernel};
  const bool reuse = call != 0 && tls_quantized == key;
  tls_quantized = key;
  for (int64_t r = 0; r < rows && !reuse; ++r) {
    const float* x = p.x + (m0 + r) * p.x_stride;
    if (K / kChunk % 2 != 0)  // the absent chunk of the last step reads as zeros
      std::memset(xq + r * stride + (Steps(K) - 1) * step, 0, step);
    if (simd) QuantizeChunks(x, K, xq + r * stride, layout);
    QuantizeRowFrom(x, K, simd ? K / kChunk : 0, xq + r * stride, layout);
  }
  float* y = p.y + m0 * p.y_stride;
  if (kernel == Int8Kernel::kAvx512Vnni)
    return SimdBlock<true>(xq, stride, rows, p.w, n0, n1, y, p.y_stride);
  if (kernel == Int8Kernel::kAvx2)
    return SimdBlock<false>(xq, stride, rows, p.w, n0, n1, y, p.y_stride);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t r = 0; r < rows; ++r) y[r * p.y_stride + n] = DotPortable(xq + r * stride, p.w, n);
}

}  // namespace

bool RunInt8ActivationBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                            uint64_t call) {
  if (p.w.format != WeightFormat::kNvfp4 && p.w.format != WeightFormat::kMxfp4) return false;
  Int8Block(p, m0, m1, n0, n1, BestInt8Kernel(), call);
  return true;
}

std::vector<Int8Kernel> SupportedInt8Kernels() {
  std::vector<Int8Kernel> out;
  for (Int8Kernel k : {Int8Kernel::kPortable, Int8Kernel::kAvx2, Int8Kernel::kAvx512Vnni})
    if (Supported(k)) out.push_back(k);
  return out;
}

const char* Int8KernelName(Int8Kernel k) {
  switch (k) {
    case Int8Kernel::kPortable: return "portable";
    case Int8Kernel::kAvx2: return "avx2";
    case Int8Kernel::kAvx512Vnni: return "avx512-vnni";
  }
  return "?";
}

void MatMulInt8(const GemmProblem& p, Int8Kernel kernel) {
  CHECK(p.w.format == WeightFormat::kNvfp4 || p.w.format == WeightFormat::kMxfp4)
      << "int8 activations take FP4 weights, not " << p.w.Describe();
  CHECK(Supported(kernel)) << "this CPU does not run the " << Int8KernelName(kernel)
                           << " int8 kernel";
  Int8Block(p, 0, p.rows, 0, p.w.rows, kernel, 0);
}

void QuantizeDequantizeInt8(const float* x, int64_t K, float* out) {
  std::vector<int8_t> q(static_cast<size_t>(K));
  std::vector<float> half_d(static_cast<size_t>(K / kActBlock + 1));
  QuantizeValues(x, K, q.data(), half_d.data());
  for (int64_t k = 0; k < K; ++k) out[k] = q[k] * (2.0f * half_d[k / kActBlock]);
}

}  // namespace moerack
