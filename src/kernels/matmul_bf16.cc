// The bf16-activation matmul (--act-dtype bf16) on CPUs with AVX512-BF16,
// which Highway 1.0.3 does not expose: x is rounded to bf16 once, weights are
// unpacked to bf16 (exact for bf16 and E2M1 values) and VDPBF16PS multiplies
// 32 pairs per instruction into 16 f32 lanes. Intrinsics here are compiled for
// that ISA only and reached only after a runtime CPU check (HasAvx512Bf16).
//
// FP4 layout: one 64-byte load holds a 128-weight chunk as 32 u16 lanes of 4
// nibbles; shifting by 4j and VPERMW through a 32-entry table (the 16 E2M1
// values twice: VPERMW reads 5 index bits) gives weights {4w + j} in word lane
// w, and f32 lane i sums words 2i and 2i+1, i.e. weights 8i..8i+7 of the
// chunk: one NVFP4 block per lane pair, one MXFP4 block per lane quad. x is
// permuted to match. Each chunk is summed unscaled, then added with one FMA by
// the per-lane block scale, as in the f32 kernel. The order per output element
// depends only on K and the format (DESIGN.md principle 2).
#include "kernels/matmul_internal.h"

#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "quant/nvfp4.h"

// GCC 12 reports the _mm512_undefined_* inside its own intrinsic headers
// (e.g. _mm512_reduce_add_ps) as uninitialized uses: a known false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace moerack {

bool HasAvx512Bf16() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MR_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

namespace {

thread_local ScratchVector<uint16_t> tls_xb;

// x rows rounded to bf16 (RNE), permuted for the FP4 chunks (or in order for
// bf16 weights), 16 at a time by VCVTNEPS2BF16 (which reads f32 subnormals as
// zero, as VDPBF16PS reads bf16 ones: no change to any product). FP4: word
// j*32 + w of a chunk is x[4w + j]; for each half h (w in [16h, 16h + 16)) two
// VPERMT2PS pick lanes 4w + j out of 64 inputs.
MR_TARGET_BF16 inline void StoreBf16x16(__m512 v, uint16_t* o) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
}

MR_TARGET_BF16 void PrepareX(const float* x, int64_t ldx, int64_t rows, int64_t K, bool fp4,
                             uint16_t* out) {
  const int64_t main = fp4 ? K / 128 * 128 : K / 16 * 16;
  alignas(64) int32_t lo_idx[4][16], hi_idx[4][16];
  for (int j = 0; j < 4; ++j) {
    for (int w = 0; w < 8; ++w) {
      lo_idx[j][w] = hi_idx[j][w + 8] = 4 * w + j;
      lo_idx[j][w + 8] = hi_idx[j][w] = 0;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    uint16_t* o = out + r * K;
    if (fp4) {
      for (int64_t c = 0; c < main; c += 128) {
        for (int h = 0; h < 2; ++h) {
          const float* src = xr + c + 64 * h;
          const __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16),
                       v2 = _mm512_loadu_ps(src + 32), v3 = _mm512_loadu_ps(src + 48);
          for (int j = 0; j < 4; ++j) {
            const __m512 a = _mm512_permutex2var_ps(v0, _mm512_load_si512(lo_idx[j]), v1);
            const __m512 b = _mm512_permutex2var_ps(v2, _mm512_load_si512(hi_idx[j]), v3);
            StoreBf16x16(_mm512_mask_blend_ps(0xFF00, a, b), o + c + j * 32 + 16 * h);
          }
        }
      }
    } else {
      for (int64_t k = 0; k < main; k += 16) StoreBf16x16(_mm512_loadu_ps(xr + k), o + k);
    }
    for (int64_t k = main; k < K; ++k) o[k] = F32ToBF16(xr[k]);
  }
}

// Calls f(std::integral_constant<int, r>) for r = rows in 1..3 (nothing for 0):
// the tile for the rows left after tiles of 4, so each weight row is read (and
// unpacked) once more, not once per left-over row.
template <class F>
inline void ForRemainderTile(int64_t rows, F&& f) {
  switch (rows) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    default: return;
  }
}

// Per-row constants of the NVFP4 scale decode (Nvfp4GlobalScaleFusable).
struct Nvfp4ScaleConsts {
  bool fused = false;
  __m512 mul;  // 2^120 * global (fused) or 2^120
};

MR_TARGET_BF16 inline Nvfp4ScaleConsts MakeNvfp4ScaleConsts(const LinearWeight& w) {
  Nvfp4ScaleConsts c;
  c.fused = Nvfp4GlobalScaleFusable(w);
  c.mul = _mm512_set1_ps(c.fused ? 0x1p120f * w.global_scale : 0x1p120f);
  return c;
}

// Byte i/2 of 8 bytes at p into the low byte of f32 lane i, other bytes zero:
// one in-lane VPSHUFB of the broadcast qword (index bit 7 zeroes a byte).
MR_TARGET_BF16 inline __m512i ExpandScaleBytes(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  const int z = static_cast<int>(0x80808000u);
  const __m512i idx = _mm512_set_epi32(z | 7, z | 7, z | 6, z | 6, z | 5, z | 5, z | 4, z | 4,
                                       z | 3, z | 3, z | 2, z | 2, z | 1, z | 1, z | 0, z | 0);
  return _mm512_shuffle_epi8(_mm512_set1_epi64(static_cast<long long>(v)), idx);
}

MR_TARGET_BF16 inline __m512 Fp4ChunkScale(const LinearWeight& w, const Nvfp4ScaleConsts& nc,
                                           int64_t n, int64_t c) {
  const int64_t K = w.cols;
  const auto* sc = static_cast<const uint8_t*>(w.scales);
  if (w.format == WeightFormat::kNvfp4) {
    if (nc.fused) {
      const __m512i e = ExpandScaleBytes(sc + n * K / 16 + c * 8);
      return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(e, 20)), nc.mul);
    }
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + n * K / 16 + c * 8));
    b = _mm_unpacklo_epi8(b, b);
    const __m512 s = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu8_epi32(b), 20)),
                                   _mm512_set1_ps(0x1p120f));
    return w.global_divides ? _mm512_div_ps(s, _mm512_set1_ps(w.global_scale))
                            : _mm512_mul_ps(s, _mm512_set1_ps(w.global_scale));
  }
  uint32_t four;
  std::memcpy(&four, sc + n * K / 32 + c * 4, 4);
  __m128i b = _mm_cvtsi32_si128(static_cast<int>(four));
  b = _mm_unpacklo_epi8(b, b);
  b = _mm_unpacklo_epi8(b, b);
  const __m512i e = _mm512_cvtepu8_epi32(b);
  const __mmask16 zero = _mm512_testn_epi32_mask(e, e);
  return _mm512_mask_blend_ps(zero, _mm512_castsi512_ps(_mm512_slli_epi32(e, 23)),
                              _mm512_set1_ps(0x1p-127f));
}

// Rows [0, MR) of xb (stride K) times weight rows n .. n + NR - 1.
template <int MR, int NR>
MR_TARGET_BF16 void Fp4Tile(const uint16_t* xb, int64_t K, const LinearWeight& w, __m512i table,
                            int64_t n, float* y, int64_t ldy) {
  __m512 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < MR; ++i) acc[r][i] = _mm512_setzero_ps();
  const auto* packed = static_cast<const uint8_t*>(w.data) + n * K / 2;
  const int64_t chunks = K / 128;
  const Nvfp4ScaleConsts nc = MakeNvfp4ScaleConsts(w);
  for (int64_t c = 0; c < chunks; ++c) {
    __m512i codes[NR];
    __m512 scale[NR];
    for (int r = 0; r < NR; ++r) {
      const uint8_t* row = packed + r * K / 2;
      _mm_prefetch(reinterpret_cast<const char*>(row + c * 64 + kPrefetchAheadBytes), _MM_HINT_T0);
      if (c % 8 == 0) {  // the scale stream, as far ahead (64 chunks)
        const bool nv = w.format == WeightFormat::kNvfp4;
        const int64_t per_chunk = nv ? 8 : 4, per_row = nv ? K / 16 : K / 32;
        _mm_prefetch(reinterpret_cast<const char*>(static_cast<const uint8_t*>(w.scales) +
                                                   (n + r) * per_row + (c + 64) * per_chunk),
                     _MM_HINT_T0);
      }
      codes[r] = _mm512_loadu_si512(row + c * 64);
      scale[r] = Fp4ChunkScale(w, nc, n + r, c);
    }
    const uint16_t* xc = xb + c * 128;
    __m512 part[NR][MR];
    for (int r = 0; r < NR; ++r)
      for (int i = 0; i < MR; ++i) part[r][i] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      __m512bh wv[NR];
      for (int r = 0; r < NR; ++r) {
        const __m512i idx = j == 0 ? codes[r] : _mm512_srli_epi16(codes[r], 4 * j);
        wv[r] = reinterpret_cast<__m512bh>(_mm512_permutexvar_epi16(idx, table));
      }
      for (int i = 0; i < MR; ++i) {
        const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xc + i * K + j * 32));
        for (int r = 0; r < NR; ++r) part[r][i] = _mm512_dpbf16_ps(part[r][i], xv, wv[r]);
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int i = 0; i < MR; ++i) acc[r][i] = _mm512_fmadd_ps(part[r][i], scale[r], acc[r][i]);
  }
  const int64_t k0 = chunks * 128;
  for (int r = 0; r < NR; ++r) {
    float tail[128];
    if (k0 < K) w.DequantizeRange(n + r, k0, K, tail);
    for (int i = 0; i < MR; ++i) {
      float s = _mm512_reduce_add_ps(acc[r][i]);
      for (int64_t k = k0; k < K; ++k) s += BF16ToF32(xb[i * K + k]) * tail[k - k0];
      y[i * ldy + r] = s;
    }
  }
}

// Rows [0, MR) of xb (stride K) times the NR weight rows at w (stride K).
template <int MR, int NR>
MR_TARGET_BF16 void Bf16Tile(const uint16_t* xb, int64_t K, const uint16_t* w, float* y,
                             int64_t ldy) {
  __m512 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < MR; ++i) acc[r][i] = _mm512_setzero_ps();
  auto step = [&](int64_t k) MR_TARGET_BF16 {  // 32 weights of each row
    if constexpr (NR == 1)  // decode: one row streams (prefill tiles prefetch per group)
      _mm_prefetch(reinterpret_cast<const char*>(w + k) + kPrefetchAheadBytes, _MM_HINT_T0);
    __m512bh wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(w + r * K + k));
    for (int i = 0; i < MR; ++i) {
      const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xb + i * K + k));
      for (int r = 0; r < NR; ++r) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], xv, wv[r]);
    }
  };
  int64_t k = 0;
  for (; k + kUnrolledSteps * 32 <= K; k += kUnrolledSteps * 32) {
#pragma GCC unroll 4
    for (int u = 0; u < kUnrolledSteps; ++u) step(k + u * 32);
  }
  for (; k + 32 <= K; k += 32) step(k);
  for (int r = 0; r < NR; ++r) {
    for (int i = 0; i < MR; ++i) {
      float s = _mm512_reduce_add_ps(acc[r][i]);
      for (int64_t kk = k; kk < K; ++kk) s += BF16ToF32(xb[i * K + kk]) * BF16ToF32(w[r * K + kk]);
      y[i * ldy + r] = s;
    }
  }
}

// Up to 4 rows (decode) stream one weight row at a time: the fastest way to
// read weights from memory here (see DenseBlock in matmul.cc). More rows
// (prefill) take NR weight rows per tile so each x load feeds NR VDPBF16PS (one
// weight row per tile read 4 KB of x from L2 per 4 KB of weights: bound by L2,
// at ~20% of the instruction's peak), with the next group prefetched while the
// row tiles run over the current one.
MR_TARGET_BF16 void Block(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t K = p.w.cols, rows = m1 - m0;
  const bool fp4 = p.w.format != WeightFormat::kBF16;
  uint16_t* xb = Scratch(tls_xb, rows * K);
  PrepareX(p.x + m0 * p.x_stride, p.x_stride, rows, K, fp4, xb);
  alignas(64) uint16_t table_words[32];
  for (int i = 0; i < 32; ++i) table_words[i] = F32ToBF16(kE2M1Values[i % 16]);
  const __m512i table = _mm512_load_si512(table_words);
  auto tile = [&](auto mr, auto nr, int64_t m, int64_t n) {
    constexpr int MR = decltype(mr)::value, NR = decltype(nr)::value;
    float* y = p.y + (m0 + m) * p.y_stride + n;
    if (fp4) {
      Fp4Tile<MR, NR>(xb + m * K, K, p.w, table, n, y, p.y_stride);
    } else {
      Bf16Tile<MR, NR>(xb + m * K, K, static_cast<const uint16_t*>(p.w.data) + n * K, y, p.y_stride);
    }
  };
  // Tiles of 4 rows, then one tile of the 1-3 left (each weight row is read and
  // unpacked once per tile).
  auto row_tiles = [&](auto nr, int64_t n) {
    int64_t m = 0;
    for (; m + 4 <= rows; m += 4) tile(std::integral_constant<int, 4>{}, nr, m, n);
    ForRemainderTile(rows - m, [&](auto mr) { tile(mr, nr, m, n); });
  };
  using One = std::integral_constant<int, 1>;
  int64_t n = n0;
  if (rows > 4) {
    auto groups = [&](auto nr) {
      constexpr int NR = decltype(nr)::value;
      const int64_t row_bytes = fp4 ? K / 2 : K * 2, group_bytes = NR * row_bytes;
      for (; n + NR <= n1; n += NR) {
        if (n + 2 * NR <= n1) {
          const auto* next = static_cast<const char*>(p.w.data) + (n + NR) * row_bytes;
          for (int64_t b = 0; b < group_bytes; b += 64) _mm_prefetch(next + b, _MM_HINT_T0);
        }
        row_tiles(nr, n);
      }
    };
    if (fp4) {
      groups(std::integral_constant<int, 2>{});
    } else {
      groups(std::integral_constant<int, 4>{});
    }
  }
  for (; n < n1; ++n) row_tiles(One{}, n);
}

}  // namespace

bool RunBf16ActivationBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (!HasAvx512Bf16()) return false;
  if (p.w.format != WeightFormat::kBF16 && p.w.format != WeightFormat::kNvfp4 &&
      p.w.format != WeightFormat::kMxfp4) {
    return false;
  }
  Block(p, m0, m1, n0, n1);
  return true;
}

#else
bool RunBf16ActivationBlock(const GemmProblem&, int64_t, int64_t, int64_t, int64_t) { return false; }
#endif

}  // namespace moerack
