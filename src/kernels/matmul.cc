#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/cache_control.h>
#include <hwy/highway.h>

#include "kernels/fp8-inl.h"
#include "quant/nvfp4.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

HWY_BEFORE_NAMESPACE();
namespace moerack {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DU32 = hn::RebindToUnsigned<DF>;
using DI32 = hn::RebindToSigned<DF>;
using DU8 = hn::Rebind<uint8_t, DF>;
using VF = hn::Vec<DF>;
using VU32 = hn::Vec<DU32>;
constexpr int kL = static_cast<int>(hn::MaxLanes(DF()));
// Up to this many rows per block, weights are streamed one row at a time.
constexpr int64_t kSmallRows = 4;

// ---------------------------------------------------------------------------
// f32 / bf16 weights: one lane-strided accumulator per output element.

HWY_INLINE VF LoadW(DF df, const float* w) { return hn::LoadU(df, w); }
HWY_INLINE VF LoadW(DF df, const uint16_t* w) {  // bf16: the high half of an f32
  const hn::Rebind<uint16_t, DF> du16;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(DU32(), hn::LoadU(du16, w))));
}
HWY_INLINE float ScalarW(const float* w) { return *w; }
HWY_INLINE float ScalarW(const uint16_t* w) { return BF16ToF32(*w); }

// Lane-strided partial sums per output element, so that consecutive FMAs do
// not wait on each other. Two (vectors k/L even and odd) keep the FMA pipes of
// a 16-lane target busy; at 8 lanes (AVX2: FMA latency 4 cycles on two pipes)
// two chains cap a weight row at 4 weights per cycle, ~25 GB/s of bf16 at 3.2
// GHz, barely above one Zen 3 thread's memory stream (~22), so narrower
// targets keep four: vector k/L mod 4.
constexpr int kChains = kL >= 16 ? 2 : 4;
// How far ahead a streamed f32/bf16 weight row is prefetched. On Zen 3 (AVX2)
// 4 KB, best on Zen 5, cost bench-moe bf16 decode ~20%: one thread 22-24
// tok/s at 4 KB, 26-30 at 1 KB, 23-29 at 512 B, 1.5 KB, 2 KB or none; two
// threads 44-47 at 4 KB, 50-53 at 1 KB (interleaved rounds). Streaming two or
// four rows at once was slower than one at 1 KB there too.
constexpr int64_t kRowPrefetchAhead = kChains == 4 ? 1024 : kPrefetchAheadBytes;

// y[i, j] for i < MR rows of x and j < NR rows of w. Every element is computed
// the same way for any MR/NR, so tiling cannot change results: kChains
// lane-strided partial sums, added pairwise ((0 + 1) + (2 + 3)), reduced
// across lanes, then the scalar tail.
// kEvenOdd (bf16 weights, x permuted by PermuteRows<2>): one load of 2L weights
// gives the even elements (shifted into place) and the odd ones (masked), the
// two partial sums of a pair; one full-width load per 2L weights instead of two
// widening half loads streams a single weight row ~40% faster here (28 vs 20
// GB/s).
template <int MR, int NR, typename WT, bool kEvenOdd = false>
HWY_INLINE void Tile(const float* x, int64_t ldx, const WT* w, int64_t K, float* y, int64_t ldy) {
  const DF df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));  // runtime width on scalable targets
  constexpr int kPairs = kChains / 2;
  VF acc[kChains][MR][NR];
  for (int c = 0; c < kChains; ++c)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[c][i][j] = hn::Zero(df);
  // 2L weights of each row into chains 2 * pair and 2 * pair + 1.
  auto step = [&](int64_t k, auto pair) HWY_ATTR {
    constexpr int c0 = 2 * decltype(pair)::value;
    VF w0[NR], w1[NR];
    // A single weight row streams along (decode; on AVX2 also prefill's 2x1
    // tiles; AVX-512's 2x4 prefill tiles prefetch per group instead), one
    // prefetch per cache line (steps of 32 bytes prefetch every other step).
    if (NR == 1 && (2 * L * sizeof(WT) >= 64 || decltype(pair)::value == 0)) {
      const auto* next = reinterpret_cast<const uint8_t*>(w + k) + kRowPrefetchAhead;
      for (size_t b = 0; b < 2 * L * sizeof(WT); b += 64) hwy::Prefetch(next + b);
    }
    for (int j = 0; j < NR; ++j) {
      if constexpr (kEvenOdd) {
        const hn::Repartition<uint16_t, DF> du16;
        const VU32 v = hn::BitCast(DU32(), hn::LoadU(du16, w + j * K + k));
        w0[j] = hn::BitCast(df, hn::ShiftLeft<16>(v));
        w1[j] = hn::BitCast(df, hn::And(v, hn::Set(DU32(), 0xFFFF0000u)));
      } else {
        w0[j] = LoadW(df, w + j * K + k);
        w1[j] = LoadW(df, w + j * K + k + L);
      }
    }
    for (int i = 0; i < MR; ++i) {
      const VF x0 = hn::LoadU(df, x + i * ldx + k), x1 = hn::LoadU(df, x + i * ldx + k + L);
      for (int j = 0; j < NR; ++j) {
        acc[c0][i][j] = hn::MulAdd(x0, w0[j], acc[c0][i][j]);
        acc[c0 + 1][i][j] = hn::MulAdd(x1, w1[j], acc[c0 + 1][i][j]);
      }
    }
  };
  using P0 = std::integral_constant<int, 0>;
  using P1 = std::integral_constant<int, 1 % kPairs>;
  static_assert(kUnrolledSteps == 4, "the steps below are written out");
  int64_t k = 0;
  for (; k + kUnrolledSteps * 2 * L <= K; k += kUnrolledSteps * 2 * L) {
    step(k, P0{});
    step(k + 2 * L, P1{});
    step(k + 4 * L, P0{});
    step(k + 6 * L, P1{});
  }
  for (int s = 0; k + 2 * L <= K; k += 2 * L, ++s) {  // whole steps left: at most 3
    if (s % kPairs == 0)
      step(k, P0{});
    else
      step(k, P1{});
  }
  if (k + L <= K) {
    for (int j = 0; j < NR; ++j) {
      const VF wv = LoadW(df, w + j * K + k);
      for (int i = 0; i < MR; ++i)
        acc[0][i][j] = hn::MulAdd(hn::LoadU(df, x + i * ldx + k), wv, acc[0][i][j]);
    }
    k += L;
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      VF sum = hn::Add(acc[0][i][j], acc[1][i][j]);
      if constexpr (kChains == 4) sum = hn::Add(sum, hn::Add(acc[2][i][j], acc[3][i][j]));
      float s = hn::GetLane(hn::SumOfLanes(df, sum));
      for (int64_t kk = k; kk < K; ++kk) s += x[i * ldx + kk] * ScalarW(w + j * K + kk);
      y[i * ldy + j] = s;
    }
  }
}

using One = std::integral_constant<int, 1>;
using Two = std::integral_constant<int, 2>;
using Three = std::integral_constant<int, 3>;
using Four = std::integral_constant<int, 4>;

// Rows [m0, m1) x outputs [n0, n1) of y = x · wᵀ for a dense [N, K] w
// (kEvenOdd: see Tile).
template <typename WT, bool kEvenOdd = false>
void DenseBlock(const float* x, int64_t ldx, const WT* w, int64_t K, float* y, int64_t ldy,
                int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  auto tile = [&](auto mr, auto nr, int64_t m, int64_t n) {
    Tile<decltype(mr)::value, decltype(nr)::value, WT, kEvenOdd>(x + m * ldx, ldx, w + n * K, K,
                                                                 y + m * ldy + n, ldy);
  };
  if constexpr (kChains == 4) {
    // 16 registers: tiles of 2 rows of x by one weight row (8 accumulators;
    // 3 rows, 12, spilled: bf16 m=128 GEMM 44-45 -> 49-51 GFLOP/s on Zen 3),
    // for decode and prefill alike. Prefill runs each tile of x (in L1) over a
    // group of weight rows (~128 KB, in L2; 16 and 64 rows of 4 KB ran within
    // 2-4% of each other).
    const int64_t row_bytes = K * static_cast<int64_t>(sizeof(WT));
    const int64_t group = m1 - m0 <= kSmallRows ? 1 : std::max<int64_t>(1, (128 << 10) / row_bytes);
    for (int64_t g = n0; g < n1; g += group) {
      const int64_t g1 = std::min(n1, g + group);
      int64_t m = m0;
      for (; m + 2 <= m1; m += 2)
        for (int64_t n = g; n < g1; ++n) tile(Two{}, One{}, m, n);
      if (m < m1)
        for (int64_t n = g; n < g1; ++n) tile(One{}, One{}, m, n);
    }
    return;
  }
  constexpr int kM = 2, kN = 4;
  if (m1 - m0 <= kSmallRows) {
    // Few rows (decode): bound by streaming the weights, which is fastest one
    // weight row at a time (a single sequential stream; interleaving four rows
    // measured ~30% slower here). The rows of x stay in L1.
    for (int64_t n = n0; n < n1; ++n) {
      int64_t m = m0;
      for (; m + 4 <= m1; m += 4) tile(Four{}, One{}, m, n);
      switch (m1 - m) {  // one tile for the 1-3 rows left (written out: through
                         // matmul_bf16.cc's ForRemainderTile, m=1 decode from L2
                         // ran 14% slower)
        case 1: tile(One{}, One{}, m, n); break;
        case 2: tile(Two{}, One{}, m, n); break;
        case 3: tile(Three{}, One{}, m, n); break;
      }
    }
    return;
  }
  // Many rows (prefill): bound by FMAs; 2x4 register tiles (16 accumulators)
  // reuse each weight load twice and each x load 4 times. The next 4 weight
  // rows are prefetched while the row tiles run over the current ones (the
  // first tile of a group otherwise waits on memory): grouped expert FFN at
  // 128 tokens +6-15%.
  int64_t n = n0;
  for (; n + kN <= n1; n += kN) {
    if (n + 2 * kN <= n1) {
      const auto* next = reinterpret_cast<const uint8_t*>(w + (n + kN) * K);
      const int64_t bytes = kN * K * static_cast<int64_t>(sizeof(WT));
      for (int64_t b = 0; b < bytes; b += 64) hwy::Prefetch(next + b);
    }
    int64_t m = m0;
    for (; m + kM <= m1; m += kM) tile(Two{}, Four{}, m, n);
    for (; m < m1; ++m) tile(One{}, Four{}, m, n);
  }
  for (; n < n1; ++n) {
    int64_t m = m0;
    for (; m + kM <= m1; m += kM) tile(Two{}, One{}, m, n);
    for (; m < m1; ++m) tile(One{}, One{}, m, n);
  }
}

thread_local ScratchVector<float> tls_x;  // permuted or dequantized scratch of this thread

// x rows permuted to a decoder's lane order (FP4, FP8, bf16 even/odd): for chunk c, vector j, lane
// i, xp[c*C + j*L + i] = x[c*C + G*i + j]; the tail past the last whole chunk
// stays in order. log2(G) rounds of even/odd splits (ConcatEven/ConcatOdd)
// sort a chunk's G vectors into residues mod G in bit-reversed order (for G =
// 8: 0, 4, 2, 6, 1, 5, 3, 7); done lane by lane it took ~18% of a bf16
// prefill's time.
#if HWY_TARGET != HWY_SCALAR
template <int G>
void PermuteRows(const float* x, int64_t ldx, int64_t rows, int64_t K, float* xp) {
  static_assert(G >= 1 && (G & (G - 1)) == 0, "G is a power of two");
  constexpr int64_t C = int64_t{kL} * G;
  constexpr int kBits = G >= 8 ? 3 : G >= 4 ? 2 : G >= 2 ? 1 : 0;
  static_assert((1 << kBits) == G, "G <= 8");
  const DF df;
  const int64_t main = K / C * C;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* out = xp + r * K;
    for (int64_t c = 0; c < main; c += C) {
      VF a[G], b[G];
      for (int j = 0; j < G; ++j) a[j] = hn::LoadU(df, xr + c + j * kL);
      for (int len = G; len > 1; len /= 2) {  // sequences of len vectors, each split in two
        for (int base = 0; base < G; base += len) {
          for (int q = 0; q < len / 2; ++q) {
            b[base + q] = hn::ConcatEven(df, a[base + 2 * q + 1], a[base + 2 * q]);
            b[base + len / 2 + q] = hn::ConcatOdd(df, a[base + 2 * q + 1], a[base + 2 * q]);
          }
        }
        for (int j = 0; j < G; ++j) a[j] = b[j];
      }
      for (int j = 0; j < G; ++j) {
        int rev = 0;
        for (int bit = 0; bit < kBits; ++bit) rev |= ((j >> bit) & 1) << (kBits - 1 - bit);
        hn::StoreU(a[rev], df, out + c + j * kL);
      }
    }
    std::copy(xr + main, xr + K, out + main);
  }
}
#endif  // HWY_TARGET != HWY_SCALAR

// ---------------------------------------------------------------------------
// Packed weights (fp8, nvfp4, mxfp4). One load of kL u32 lanes holds kG
// consecutive weights per lane; unpacking element j of every lane gives a
// vector of weights {G*i + j}. x is permuted once per block to match, so the
// inner loop is shift, unpack (one vpermps for FP4), FMA. The lanes of a chunk
// share their scale across j, so each chunk is summed unscaled and then added
// with one FMA by the per-lane scale: Σ_chunks (Σ_j x·q) · s. Chunk sums are
// independent of each other, so out-of-order execution overlaps them and only
// one FMA per chunk is loop-carried.

#if HWY_TARGET != HWY_SCALAR
// Broadcasts kBytes bytes at p into a u8 vector (then only the low kBytes matter).
template <int kBytes>
HWY_INLINE hn::Vec<DU8> LoadBytes(const uint8_t* p) {
  using T = std::conditional_t<kBytes == 8, uint64_t,
                               std::conditional_t<kBytes == 4, uint32_t, uint16_t>>;
  static_assert(sizeof(T) == kBytes, "2, 4 or 8 bytes");
  T v;
  std::memcpy(&v, p, kBytes);
  const DU8 du8;
  return hn::BitCast(du8, hn::Set(hn::Repartition<T, DU8>(), v));
}

// E2M1 code (low 4 bits of each lane; higher bits ignored) -> f32 value.
HWY_INLINE VF LookupE2M1(VF table, VU32 idx) {
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  // vpermps reads only bits 3:0 of each index: the 16-entry table is the whole code.
  return VF{_mm512_permutexvar_ps(idx.raw, table.raw)};
#else
  const DU32 du;
  const DF df;
  if constexpr (kL >= 16) {
    return hn::TableLookupLanes(table, hn::IndicesFromVec(df, hn::And(idx, hn::Set(du, 15u))));
  } else {
    const VF mag =
        hn::TableLookupLanes(table, hn::IndicesFromVec(df, hn::And(idx, hn::Set(du, 7u))));
    return hn::Xor(mag, hn::BitCast(df, hn::And(hn::ShiftLeft<28>(idx), hn::Set(du, 0x80000000u))));
  }
#endif
}

#if HWY_TARGET == HWY_AVX2
// A chunk of 64 E2M1 codes (32 bytes, low nibble = even weight) to the 8
// vectors that LookupE2M1 gives one at a time (out[j] lane i = weight 8i + j),
// by in-lane byte shuffles: 20 instructions instead of 40 (Zen 3 has no
// 16-entry VPERMPS; the 8-entry one with the sign put back cost 5 per vector
// and bound FP4 decode at ~2.4 weights per cycle). A VPSHUFB per nibble half
// looks up the high and the low byte of the value as bf16 (exact for E2M1),
// VPUNPCK{L,H}BW pairs them into bf16 words, and a shift or a mask widens a
// word to f32, as the bf16 weight tile does. `order` first moves each 128-bit
// half's bytes to 0,1,4,5,8,9,12,13, 2,3,6,7,10,11,14,15, so that the words of
// lane i come from its own 4 bytes (weights 8i .. 8i + 7).
struct E2M1Bytes {
  __m256i hi, lo, order;
  E2M1Bytes() {
    alignas(32) uint8_t h[32], l[32];
    for (int i = 0; i < 32; ++i) {
      const uint16_t word = F32ToBF16(kE2M1Values[i % 16]);
      h[i] = static_cast<uint8_t>(word >> 8);
      l[i] = static_cast<uint8_t>(word & 0xFF);
    }
    hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(h));
    lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(l));
    order = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,  //
                             0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  }
  HWY_INLINE void Decode(__m256i codes, VF out[8]) const {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i c = _mm256_shuffle_epi8(codes, order);
    const __m256i even = _mm256_and_si256(c, nibble);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble);
    const __m256i even_hi = _mm256_shuffle_epi8(hi, even), even_lo = _mm256_shuffle_epi8(lo, even);
    const __m256i odd_hi = _mm256_shuffle_epi8(hi, odd), odd_lo = _mm256_shuffle_epi8(lo, odd);
    // Lane i's words: bytes 4i, 4i+1 (unpacklo), 4i+2, 4i+3 (unpackhi) of its half.
    const __m256i words[4] = {
        _mm256_unpacklo_epi8(even_lo, even_hi), _mm256_unpacklo_epi8(odd_lo, odd_hi),
        _mm256_unpackhi_epi8(even_lo, even_hi), _mm256_unpackhi_epi8(odd_lo, odd_hi)};
    const __m256i high = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
    for (int q = 0; q < 4; ++q) {  // words[q]: weights 8i + 4(q/2) + q%2 (low) and + 2 (high)
      const int j = 4 * (q / 2) + q % 2;
      out[j] = VF{_mm256_castsi256_ps(_mm256_slli_epi32(words[q], 16))};
      out[j + 2] = VF{_mm256_castsi256_ps(_mm256_and_si256(words[q], high))};
    }
  }
};
#endif

// L is kL; a template parameter so that only targets with 8 or 16 lanes instantiate it.
template <int L>
struct Fp4Decoder {
  static constexpr int kG = 8;  // nibbles per u32 lane
  static constexpr int kChunk = L * kG;
  static constexpr bool kNatural = false;
  const LinearWeight& w;
  bool nv;
  VF table;
  // NVFP4 scales: one multiply by 2^120 * global when Nvfp4GlobalScaleFusable.
  bool fused = false;
  VF scale_mul;
  hn::Vec<hn::Repartition<uint8_t, DF>> spread;  // VPSHUFB indices: byte i/2 into the low
                                                 // byte of lane i, the rest zero
#if HWY_TARGET == HWY_AVX2
  E2M1Bytes bytes;  // the whole chunk decoded at Load
#endif

  explicit Fp4Decoder(const LinearWeight& lw) : w(lw), nv(lw.format == WeightFormat::kNvfp4) {
    const DF df;
    const DU32 du;
    table = hn::LoadU(df, kE2M1Values);  // kL >= 8: the magnitudes at least
    fused = Nvfp4GlobalScaleFusable(lw);
    scale_mul = hn::Set(df, fused ? 0x1p120f * lw.global_scale : 0x1p120f);
    spread = hn::BitCast(hn::Repartition<uint8_t, DF>(),
                         hn::Or(hn::ShiftRight<1>(hn::Iota(du, 0)), hn::Set(du, 0x80808000u)));
  }
  struct Chunk {
    VU32 codes;
    VF scale;  // lane i: the decode scale of weights G*i .. G*i+7
#if HWY_TARGET == HWY_AVX2
    VF values[kG];
#endif
  };
  HWY_INLINE Chunk Load(int64_t n, int64_t c) const {
    const DF df;
    const DU32 du;
    const DU8 du8;
    const int64_t K = w.cols;
    const auto* packed = static_cast<const uint8_t*>(w.data) + n * K / 2 + c * (kChunk / 2);
    hwy::Prefetch(packed + kPrefetchAheadBytes);
    if (c % 8 == 0) {  // the scale stream, as far ahead
      const int64_t per_chunk = nv ? kChunk / 16 : kChunk / 32;
      hwy::Prefetch(static_cast<const uint8_t*>(w.scales) + n * K / (nv ? 16 : 32) +
                    (c + kPrefetchAheadBytes / (kChunk / 2)) * per_chunk);
    }
    Chunk ch;
    ch.codes = hn::LoadU(du, reinterpret_cast<const uint32_t*>(packed));
#if HWY_TARGET == HWY_AVX2
    bytes.Decode(ch.codes.raw, ch.values);
#endif
    const auto* sc = static_cast<const uint8_t*>(w.scales);
    if (nv) {
      // Lanes 2b, 2b+1 share block b's E4M3 byte: positive, so f32 bits = byte << 20
      // read as 2^-120 times the value.
      // The L/2 bytes are broadcast to every 128-bit block, so an in-block
      // byte shuffle spreads them (index bit 7 zeroes the other bytes).
      using T = std::conditional_t<L == 16, uint64_t, uint32_t>;  // the chunk's L/2 bytes
      static_assert(sizeof(T) == L / 2, "8 or 16 lanes");
      T bytes;
      std::memcpy(&bytes, sc + n * K / 16 + c * (kChunk / 16), sizeof(T));
      const auto b =
          hn::BitCast(hn::Repartition<uint8_t, DF>(), hn::Set(hn::Repartition<T, DF>(), bytes));
      const VU32 e = hn::BitCast(du, hn::TableLookupBytesOr0(b, spread));
      const VF s = hn::Mul(hn::BitCast(df, hn::ShiftLeft<20>(e)), scale_mul);
      if (fused) {
        ch.scale = s;
      } else {
        const VF g = hn::Set(df, w.global_scale);
        ch.scale = w.global_divides ? hn::Div(s, g) : hn::Mul(s, g);
      }
    } else {
      // Lanes 4b..4b+3 share block b's E8M0 byte e: 2^(e-127) (e = 0 is the subnormal 2^-127).
      auto b = LoadBytes<L / 4>(sc + n * K / 32 + c * (kChunk / 32));
      b = hn::InterleaveLower(b, b);
      b = hn::InterleaveLower(b, b);
      const VU32 e = hn::PromoteTo(du, b);
      ch.scale = hn::IfThenElse(hn::RebindMask(df, hn::Eq(e, hn::Zero(du))), hn::Set(df, 0x1p-127f),
                                hn::BitCast(df, hn::ShiftLeft<23>(e)));
    }
    return ch;
  }
  // Unscaled values of element j of each lane.
  HWY_INLINE VF Get(const Chunk& ch, int j) const {
#if HWY_TARGET == HWY_AVX2
    return ch.values[j];
#else
    return LookupE2M1(table, hn::ShiftRightSame(ch.codes, 4 * j));
#endif
  }
};

// E4M3 bytes in natural order, L at a time by kernels/fp8-inl.h's integer
// steps (four integer/FP instructions per 16 weights); the F16C route (byte ->
// f16 bits, VCVTPH2PS) bound FP8 decode at ~28 G weights/s per thread, this
// one reads ~35.
template <int L>
struct Fp8Decoder {
  static constexpr int kG = 8;  // vectors per chunk
  static constexpr int kChunk = L * kG;
  static constexpr bool kNatural = true;  // vector j holds weights j*L .. j*L+L-1
  const LinearWeight& w;
  int64_t scale_cols;
  // Scale block of weight k: k >> col_shift (block_k a power of two, or >= K:
  // every k in block 0), else k / block_k; likewise rows. No division per chunk.
  int col_shift, row_shift;

  static int BlockShift(int64_t block, int64_t extent) {
    if (block >= extent) return 62;
    return (block & (block - 1)) == 0 ? __builtin_ctzll(static_cast<uint64_t>(block)) : -1;
  }
  explicit Fp8Decoder(const LinearWeight& lw)
      : w(lw),
        scale_cols((lw.cols + lw.block_k - 1) / lw.block_k),
        col_shift(BlockShift(lw.block_k, lw.cols)),
        row_shift(BlockShift(lw.block_n, lw.rows)) {}
  // Whether some chunk straddles scale blocks (block_k under the chunk): then
  // QTile checks each chunk (kMixedScales), else never.
  bool MixedScales() const { return w.block_k % kChunk != 0 && w.block_k < w.cols; }
  HWY_INLINE int64_t Column(int64_t k) const {
    return col_shift >= 0 ? k >> col_shift : k / w.block_k;
  }
  HWY_INLINE const float* ScaleRow(int64_t n) const {
    return static_cast<const float*>(w.scales) +
           (row_shift >= 0 ? n >> row_shift : n / w.block_n) * scale_cols;
  }
  struct Chunk {
    const uint8_t* bytes;
    VF scale;
  };
  HWY_INLINE Chunk Load(int64_t n, int64_t c) const {
    const DF df;
    Chunk ch;
    ch.bytes = static_cast<const uint8_t*>(w.data) + n * w.cols + c * kChunk;
    for (int line = 0; line < kChunk; line += 64)
      hwy::Prefetch(ch.bytes + kPrefetchAheadBytes + line);
    // A chunk that straddles scale blocks takes per-vector scales instead
    // (VectorScale; block_k % L == 0): this one is then unused.
    ch.scale = hn::Set(df, ScaleRow(n)[Column(c * kChunk)]);
    return ch;
  }
  HWY_INLINE VF Get(const Chunk& ch, int j) const { return DecodeFp8E4M3(DF(), ch.bytes + j * L); }
  // For chunks that straddle scale blocks: the scale of vector j.
  HWY_INLINE float VectorScale(int64_t n, int64_t c, int j) const {
    return ScaleRow(n)[Column(c * kChunk + j * L)];
  }
  HWY_INLINE bool UniformScale(int64_t c) const {
    const int64_t k0 = c * kChunk;
    return Column(k0) == Column(k0 + kChunk - 1);
  }
};

// y[i, r] for i < MR rows of xp (row stride ldx) and weight rows n .. n+NR-1.
// kMixedScales: natural-order decoders whose chunks may straddle scale blocks.
template <int MR, int NR, bool kMixedScales, class Dec>
HWY_INLINE void QTile(const float* xp, int64_t ldx, int64_t K, const Dec& dec, int64_t n, float* y,
                      int64_t ldy) {
  constexpr int G = Dec::kG;
  constexpr int64_t C = Dec::kChunk;
  const DF df;
  VF acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < MR; ++i) acc[r][i] = hn::Zero(df);
  const int64_t chunks = K / C;
  for (int64_t c = 0; c < chunks; ++c) {
    const float* xc = xp + c * C;
    if constexpr (kMixedScales) {
      if (!dec.UniformScale(c)) {  // scale blocks change inside the chunk: scale each vector
        for (int r = 0; r < NR; ++r) {
          const typename Dec::Chunk ch = dec.Load(n + r, c);
          for (int j = 0; j < G; ++j) {
            const VF wv = hn::Mul(dec.Get(ch, j), hn::Set(df, dec.VectorScale(n + r, c, j)));
            for (int i = 0; i < MR; ++i)
              acc[r][i] = hn::MulAdd(hn::LoadU(df, xc + i * ldx + j * kL), wv, acc[r][i]);
          }
        }
        continue;
      }
    }
    typename Dec::Chunk ch[NR];
    for (int r = 0; r < NR; ++r) ch[r] = dec.Load(n + r, c);
    // Two partial sums (vectors j even / odd) halve the dependent FMA chain.
    VF part[2][NR][MR];
    for (int h = 0; h < 2; ++h) {
      for (int r = 0; r < NR; ++r) {
        const VF wv = dec.Get(ch[r], h);
        for (int i = 0; i < MR; ++i)
          part[h][r][i] = hn::Mul(hn::LoadU(df, xc + i * ldx + h * kL), wv);
      }
    }
#pragma GCC unroll 8
    for (int j = 2; j < G; ++j) {
      VF wv[NR];
      for (int r = 0; r < NR; ++r) wv[r] = dec.Get(ch[r], j);
      for (int i = 0; i < MR; ++i) {
        const VF xv = hn::LoadU(df, xc + i * ldx + j * kL);
        for (int r = 0; r < NR; ++r) part[j & 1][r][i] = hn::MulAdd(xv, wv[r], part[j & 1][r][i]);
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int i = 0; i < MR; ++i)
        acc[r][i] = hn::MulAdd(hn::Add(part[0][r][i], part[1][r][i]), ch[r].scale, acc[r][i]);
  }
  // Tail (K not a multiple of the chunk): decoded scalar, in natural order.
  const int64_t k0 = chunks * C;
  for (int r = 0; r < NR; ++r) {
    HWY_ALIGN float tail[C];
    if (k0 < K) dec.w.DequantizeRange(n + r, k0, K, tail);
    int64_t k = k0;
    for (; k + kL <= K; k += kL) {
      const VF wv = hn::Load(df, tail + (k - k0));
      for (int i = 0; i < MR; ++i)
        acc[r][i] = hn::MulAdd(hn::LoadU(df, xp + i * ldx + k), wv, acc[r][i]);
    }
    for (int i = 0; i < MR; ++i) {
      float s = hn::GetLane(hn::SumOfLanes(df, acc[r][i]));
      for (int64_t kk = k; kk < K; ++kk) s += xp[i * ldx + kk] * tail[kk - k0];
      y[i * ldy + r] = s;
    }
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

#if HWY_TARGET != HWY_SCALAR
// Weight rows [n0, n0 + rows) of a packed format (FP4, FP8) unpacked once into
// buf: for each row and chunk, the kG unscaled vectors as Dec::Get gives them,
// stored as bf16 (exact for E2M1 and E4M3 values) two vectors per 64 bytes
// (vector j in the low, j + 1 in the high half of each u32 lane, widened back
// by a shift or a mask as in the bf16 dense tile), then the per-lane scale as
// Dec::Load gives it. A source for QTile in Dec's place: the same values in the
// same order, so results are bit-identical to QTile on Dec. Half the bytes of
// f32 values keep a group of 4 rows (20 KB at K = 2048; 2 on AVX2) and two
// rows of x in L1.
template <class Dec>
struct UnpackedRows {
  static constexpr int kG = Dec::kG;
  static constexpr int64_t kChunk = Dec::kChunk;
  static constexpr bool kNatural = Dec::kNatural;
  static constexpr int64_t kWordsPerChunk = kChunk / 2 + kL;  // u32: value pairs, then the scale
  static_assert(kG % 2 == 0, "pairs of vectors");
  const Dec& dec;
  const LinearWeight& w;
  int64_t n0, chunks;
  const uint32_t* buf;

  static void Unpack(const Dec& d, int64_t first, int rows, uint32_t* out) {
    const DU32 du;
    const int64_t chunks = d.w.cols / kChunk;
    for (int r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < chunks; ++c) {
        uint32_t* o = out + (r * chunks + c) * kWordsPerChunk;
        const typename Dec::Chunk ch = d.Load(first + r, c);
        for (int j = 0; j < kG; j += 2) {
          const VU32 lo = hn::ShiftRight<16>(hn::BitCast(du, d.Get(ch, j)));
          hn::StoreU(hn::Or(lo, hn::BitCast(du, d.Get(ch, j + 1))), du, o + j / 2 * kL);
        }
        hn::StoreU(hn::BitCast(du, ch.scale), du, o + kChunk / 2);
      }
    }
  }
  struct Chunk {
    const uint32_t* values;
    VF scale;
  };
  HWY_INLINE Chunk Load(int64_t n, int64_t c) const {
    const uint32_t* v = buf + ((n - n0) * chunks + c) * kWordsPerChunk;
    return Chunk{v, hn::BitCast(DF(), hn::LoadU(DU32(), v + kChunk / 2))};
  }
  HWY_INLINE VF Get(const Chunk& ch, int j) const {
    const DU32 du;
    const VU32 v = hn::LoadU(du, ch.values + j / 2 * kL);
    return hn::BitCast(DF(),
                       j % 2 == 0 ? hn::ShiftLeft<16>(v) : hn::And(v, hn::Set(du, 0xFFFF0000u)));
  }
  // Natural-order decoders (FP8): chunks that straddle scale blocks.
  HWY_INLINE bool UniformScale(int64_t c) const { return dec.UniformScale(c); }
  HWY_INLINE float VectorScale(int64_t n, int64_t c, int j) const {
    return dec.VectorScale(n, c, j);
  }
};

thread_local ScratchVector<uint32_t> tls_unpacked;

template <class Dec, bool kMixedScales>
void PackedTiles(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t K = p.w.cols, rows = m1 - m0;
  // x permuted to the decoder's lane order or, for natural-order decoders,
  // copied as it is: either way onto aligned scratch (see core/scratch.h; FP8
  // decode read the caller's rows, 16 bytes off a cache line).
  float* xp = Scratch(tls_x, rows * K);
  PermuteRows<Dec::kNatural ? 1 : Dec::kG>(p.x + m0 * p.x_stride, p.x_stride, rows, K, xp);
  const int64_t ldx = K;
  const Dec dec(p.w);
  int64_t n = n0;
  // Prefill unpacks NR weight rows at a time once for all its rows (unpacking
  // them again per 4 rows of x bound the GEMM) and runs 2 x NR tiles over
  // them, each x load feeding NR weight rows: 4 with 32 registers, 2 on AVX2's
  // 16 (2x4 spilled there: packed m=128 GEMMs 43-48 -> 47-52 GFLOP/s on one
  // Zen 3 thread, old and new binaries alternated).
  if (rows > kSmallRows) {
    constexpr int NR = kL >= 16 ? 4 : 2;
    const int64_t chunks = K / Dec::kChunk;
    uint32_t* unpacked = Scratch(tls_unpacked, NR * chunks * UnpackedRows<Dec>::kWordsPerChunk);
    for (; n + NR <= n1; n += NR) {
      UnpackedRows<Dec>::Unpack(dec, n, NR, unpacked);
      const UnpackedRows<Dec> src{dec, p.w, n, chunks, unpacked};
      float* y = p.y + m0 * p.y_stride + n;
      int64_t m = 0;
      for (; m + 2 <= rows; m += 2)
        QTile<2, NR, kMixedScales>(xp + m * ldx, ldx, K, src, n, y + m * p.y_stride, p.y_stride);
      if (m < rows)
        QTile<1, NR, kMixedScales>(xp + m * ldx, ldx, K, src, n, y + m * p.y_stride, p.y_stride);
    }
  }
  // Decode (and a prefill block's last 1-3 weight rows) streams one weight row
  // at a time, unpacked once per tile of up to 4 rows.
  for (; n < n1; ++n) {
    float* y = p.y + m0 * p.y_stride + n;
    int64_t m = 0;
    for (; m + 4 <= rows; m += 4)
      QTile<4, 1, kMixedScales>(xp + m * ldx, ldx, K, dec, n, y + m * p.y_stride, p.y_stride);
    switch (rows - m) {  // one tile for the 1-3 rows left (inlined: a call boundary
                         // reloads the decoder's constants every chunk, FP4 decode -10%)
      case 1:
        QTile<1, 1, kMixedScales>(xp + m * ldx, ldx, K, dec, n, y + m * p.y_stride, p.y_stride);
        break;
      case 2:
        QTile<2, 1, kMixedScales>(xp + m * ldx, ldx, K, dec, n, y + m * p.y_stride, p.y_stride);
        break;
      case 3:
        QTile<3, 1, kMixedScales>(xp + m * ldx, ldx, K, dec, n, y + m * p.y_stride, p.y_stride);
        break;
    }
  }
}

// The per-chunk scale-block test only where some chunk needs it. Left in the
// common loop (as a flag tested first), it cost FP8 decode 15-20% and the
// m=128 GEMM 40% (the compiler spilled the prefill tile's pointers).
template <class Dec>
void PackedBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if constexpr (Dec::kNatural) {
    if (Dec(p.w).MixedScales()) return PackedTiles<Dec, true>(p, m0, m1, n0, n1);
  }
  PackedTiles<Dec, false>(p, m0, m1, n0, n1);
}

#endif  // HWY_TARGET != HWY_SCALAR

// Any format on narrow targets: each weight row dequantized, then the f32 tile.
void DequantizedBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t K = p.w.cols;
  float* row = Scratch(tls_x, K);
  for (int64_t n = n0; n < n1; ++n) {
    p.w.DequantizeRange(n, 0, K, row);
    DenseBlock(p.x, p.x_stride, row, K, p.y + n, p.y_stride, m0, m1, 0, 1);
  }
}

void RunBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t K = p.w.cols;
  switch (p.w.format) {
    case WeightFormat::kF32:
      return DenseBlock(p.x, p.x_stride, static_cast<const float*>(p.w.data), K, p.y, p.y_stride,
                        m0, m1, n0, n1);
    case WeightFormat::kBF16: {
      const auto* w = static_cast<const uint16_t*>(p.w.data);
#if HWY_TARGET != HWY_SCALAR
      if constexpr (kL == 8 || kL == 16) {
        const int64_t rows = m1 - m0;
        float* permuted = Scratch(tls_x, rows * K);
        PermuteRows<2>(p.x + m0 * p.x_stride, p.x_stride, rows, K, permuted);
        return DenseBlock<uint16_t, true>(permuted, K, w, K, p.y + m0 * p.y_stride, p.y_stride, 0,
                                          rows, n0, n1);
      }
#endif
      return DenseBlock(p.x, p.x_stride, w, K, p.y, p.y_stride, m0, m1, n0, n1);
    }
    case WeightFormat::kFp8:
#if HWY_TARGET != HWY_SCALAR
      if constexpr (kL == 8 || kL == 16) {
        if (p.w.block_k % kL == 0) return PackedBlock<Fp8Decoder<kL>>(p, m0, m1, n0, n1);
      }
#endif
      return DequantizedBlock(p, m0, m1, n0, n1);
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
#if HWY_TARGET != HWY_SCALAR
      if constexpr (kL == 8 || kL == 16) return PackedBlock<Fp4Decoder<kL>>(p, m0, m1, n0, n1);
#endif
      return DequantizedBlock(p, m0, m1, n0, n1);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moerack
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moerack {

HWY_EXPORT(RunBlock);

namespace {

// Work split: blocks of ~1 MB of weights (output columns) and, for long
// inputs, 64-row blocks of x. Each task prepares its x once (the bf16 kernel
// rounds and permutes it) and streams one contiguous run of weights: 1 MB
// blocks measured +15-35% nvfp4 (bf16 activations) and +10-20% fp8 decode at
// 2 threads over 256 KB ones, bf16 and prefill unchanged (bench-moe).
struct Split {
  int64_t n_block;
  int64_t m_block;
};

Split ChooseSplit(const GemmProblem& p) {
  const double bytes_per_wrow = std::max(p.w.row_bytes(), 1.0);
  const int64_t n_block =
      std::max<int64_t>(16, static_cast<int64_t>(1024 * 1024 / bytes_per_wrow) / 4 * 4);
  return Split{n_block, 64};
}

ActivationObserver* g_observer = nullptr;
thread_local ActDType tls_act = ActDType::kF32;
thread_local ScratchVector<float> tls_rounded;

// The f32 kernel on x rounded to bf16 (CPUs or formats without the bf16 kernel).
void RunRoundedBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                     void (*run)(const GemmProblem&, int64_t, int64_t, int64_t, int64_t)) {
  const int64_t K = p.w.cols, rows = m1 - m0;
  float* rounded = Scratch(tls_rounded, rows * K);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k)
      rounded[r * K + k] = BF16ToF32(F32ToBF16(p.x[(m0 + r) * p.x_stride + k]));
  GemmProblem q = p;
  q.x = rounded;  // the rounded rows, as rows [0, m1 - m0) of a shifted problem
  q.x_stride = K;
  q.y = p.y + m0 * p.y_stride;
  q.rows = m1 - m0;
  run(q, 0, m1 - m0, n0, n1);
}

void ObserveInputs(std::span<const GemmProblem> problems) {
  for (const GemmProblem& p : problems) {
    float amax = 0;
    for (int64_t m = 0; m < p.rows; ++m)
      for (int64_t k = 0; k < p.w.cols; ++k)
        amax = std::max(amax, std::fabs(p.x[m * p.x_stride + k]));
    if (p.rows > 0) g_observer->Observe(p.w, amax);
  }
}

}  // namespace

void SetActivationObserver(ActivationObserver* observer) { g_observer = observer; }

ActDTypeScope::ActDTypeScope(ActDType t) : previous_(tls_act) { tls_act = t; }
ActDTypeScope::~ActDTypeScope() { tls_act = previous_; }

StatusOr<ActDType> ParseActDType(const std::string& name) {
  if (name == "f32") return ActDType::kF32;
  if (name == "bf16") return ActDType::kBF16;
  if (name == "int8") return ActDType::kInt8;
  return Error("--act-dtype '" + name + "' is not one of f32, bf16, int8");
}

void GroupedMatMul(std::span<const GemmProblem> problems, ThreadPool& pool) {
  if (g_observer != nullptr) ObserveInputs(problems);
  struct Task {
    int32_t problem;
    int64_t m0, m1, n0, n1;
  };
  std::vector<Task> tasks;
  for (size_t i = 0; i < problems.size(); ++i) {
    const GemmProblem& p = problems[i];
    if (p.rows == 0) continue;
    const std::string invalid = ValidateLinearWeight(p.w);
    CHECK(invalid.empty()) << "matmul: " << invalid << " (" << p.w.Describe() << ")";
    const int64_t N = p.w.rows;
    Split s = ChooseSplit(p);
    // Enough tasks for every thread even for one small problem.
    while (s.n_block > 4 && (N / s.n_block) < pool.num_threads() * 2 && problems.size() < 4) {
      s.n_block /= 2;
    }
    for (int64_t m = 0; m < p.rows; m += s.m_block) {
      for (int64_t n = 0; n < N; n += s.n_block) {
        tasks.push_back({static_cast<int32_t>(i), m, std::min(p.rows, m + s.m_block), n,
                         std::min(N, n + s.n_block)});
      }
    }
  }
  // The last task of each thread splits in sixteen, so that threads finish
  // within a sixteenth of a block of each other (tasks are taken in order). A
  // decoded token runs ~20 of these calls; with pieces of a quarter block the
  // threads waited for each other ~3% of the time.
  if (pool.num_threads() > 1) {
    const size_t tail = std::min(tasks.size(), static_cast<size_t>(pool.num_threads()));
    std::vector<Task> pieces;
    for (size_t t = tasks.size() - tail; t < tasks.size(); ++t) {
      const Task& task = tasks[t];
      const int64_t step = std::max<int64_t>(4, (task.n1 - task.n0 + 63) / 64 * 4);
      for (int64_t n = task.n0; n < task.n1; n += step)
        pieces.push_back({task.problem, task.m0, task.m1, n, std::min(task.n1, n + step)});
    }
    tasks.resize(tasks.size() - tail);
    tasks.insert(tasks.end(), pieces.begin(), pieces.end());
  }
  auto* run = HWY_DYNAMIC_DISPATCH(RunBlock);
  const ActDType act = tls_act;
  static std::atomic<uint64_t> calls{0};
  const uint64_t call = calls.fetch_add(1, std::memory_order_relaxed) + 1;
  pool.ParallelFor(static_cast<int64_t>(tasks.size()), [&](int64_t t, int) {
    const Task& task = tasks[t];
    const GemmProblem& p = problems[task.problem];
    if (act == ActDType::kInt8 &&
        RunInt8ActivationBlock(p, task.m0, task.m1, task.n0, task.n1, call))
      return;
    if (act != ActDType::kBF16) return run(p, task.m0, task.m1, task.n0, task.n1);
    if (!RunBf16ActivationBlock(p, task.m0, task.m1, task.n0, task.n1))
      RunRoundedBlock(p, task.m0, task.m1, task.n0, task.n1, run);
  });
}

void MatMul(const GemmProblem& p, ThreadPool& pool) { GroupedMatMul({&p, 1}, pool); }

void MatMulReference(const GemmProblem& p) {
  const int64_t N = p.w.rows, K = p.w.cols;
  std::vector<float> w(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    p.w.DequantizeRange(n, 0, K, w.data());
    for (int64_t m = 0; m < p.rows; ++m) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(p.x[m * p.x_stride + k]) * w[k];
      p.y[m * p.y_stride + n] = static_cast<float>(s);
    }
  }
}

}  // namespace moerack
#endif  // HWY_ONCE
