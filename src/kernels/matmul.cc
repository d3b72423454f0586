#include "kernels/matmul.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <type_traits>
#include <vector>

HWY_BEFORE_NAMESPACE();
namespace moerack {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
// Up to this many rows per block, weights are streamed one row at a time.
constexpr int64_t kSmallRows = 4;
using VF = hn::Vec<DF>;

HWY_INLINE VF LoadW(DF df, const float* w) { return hn::LoadU(df, w); }
HWY_INLINE VF LoadW(DF df, const uint16_t* w) {  // bf16: the high half of an f32
  const hn::Rebind<uint16_t, DF> du16;
  const hn::RebindToUnsigned<DF> du32;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, w))));
}
HWY_INLINE float ScalarW(const float* w) { return *w; }
HWY_INLINE float ScalarW(const uint16_t* w) { return BF16ToF32(*w); }

// y[i, j] for i < MR rows of x and j < NR rows of w. Every element is computed
// the same way for any MR/NR, so tiling cannot change results.
template <int MR, int NR, typename WT>
HWY_INLINE void Tile(const float* x, int64_t ldx, const WT* w, int64_t K, float* y, int64_t ldy) {
  const DF df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  VF acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = hn::Zero(df);
  int64_t k = 0;
  for (; k + L <= K; k += L) {
    VF wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = LoadW(df, w + j * K + k);
    for (int i = 0; i < MR; ++i) {
      const VF xv = hn::LoadU(df, x + i * ldx + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = hn::MulAdd(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float s = hn::GetLane(hn::SumOfLanes(df, acc[i][j]));
      for (int64_t kk = k; kk < K; ++kk) s += x[i * ldx + kk] * ScalarW(w + j * K + kk);
      y[i * ldy + j] = s;
    }
  }
}

// Rows [m0, m1) x outputs [n0, n1) of one problem.
template <typename WT>
void Block(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t K = p.w.shape[1];
  const WT* w = static_cast<const WT*>(p.w.data);
  constexpr int kM = 4, kN = 4;
  auto tile = [&](auto mr, auto nr, int64_t m, int64_t n) {
    Tile<decltype(mr)::value, decltype(nr)::value>(p.x + m * p.x_stride, p.x_stride, w + n * K, K,
                                                   p.y + m * p.y_stride + n, p.y_stride);
  };
  using One = std::integral_constant<int, 1>;
  using Four = std::integral_constant<int, 4>;
  if (m1 - m0 <= kSmallRows) {
    // Few rows (decode): bound by streaming the weights, which is fastest one
    // weight row at a time (a single sequential stream; interleaving four rows
    // measured ~30% slower here). The rows of x stay in L1.
    for (int64_t n = n0; n < n1; ++n) {
      int64_t m = m0;
      for (; m + kM <= m1; m += kM) tile(Four{}, One{}, m, n);
      for (; m < m1; ++m) tile(One{}, One{}, m, n);
    }
    return;
  }
  // Many rows (prefill): bound by FMAs; 4x4 register tiles reuse each load 4 times.
  int64_t n = n0;
  for (; n + kN <= n1; n += kN) {
    int64_t m = m0;
    for (; m + kM <= m1; m += kM) tile(Four{}, Four{}, m, n);
    for (; m < m1; ++m) tile(One{}, Four{}, m, n);
  }
  for (; n < n1; ++n) {
    int64_t m = m0;
    for (; m + kM <= m1; m += kM) tile(Four{}, One{}, m, n);
    for (; m < m1; ++m) tile(One{}, One{}, m, n);
  }
}

void RunBlock(const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  switch (p.w.dtype) {
    case DType::kF32:
      return Block<float>(p, m0, m1, n0, n1);
    case DType::kBF16:
      return Block<uint16_t>(p, m0, m1, n0, n1);
    default:
      CHECK(false) << "matmul: unsupported weight dtype " << DTypeName(p.w.dtype);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moerack
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moerack {

HWY_EXPORT(RunBlock);

namespace {

// Work split: blocks of output columns (weight rows) and, for long inputs, of
// rows. Sized so a block's weights stay in L2 while its rows stream by.
struct Split {
  int64_t n_block;
  int64_t m_block;
};

Split ChooseSplit(const GemmProblem& p) {
  const int64_t K = p.w.shape[1];
  const int64_t bytes_per_wrow = K * DTypeBits(p.w.dtype) / 8;
  const int64_t n_block =
      std::max<int64_t>(16, (256 * 1024 / std::max<int64_t>(bytes_per_wrow, 1)) / 4 * 4);
  return Split{n_block, 64};
}

}  // namespace

void GroupedMatMul(std::span<const GemmProblem> problems, ThreadPool& pool) {
  struct Task {
    int32_t problem;
    int64_t m0, m1, n0, n1;
  };
  std::vector<Task> tasks;
  for (size_t i = 0; i < problems.size(); ++i) {
    const GemmProblem& p = problems[i];
    if (p.rows == 0) continue;
    CHECK_EQ(p.w.ndim, 2);
    const int64_t N = p.w.shape[0];
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
  auto* run = HWY_DYNAMIC_DISPATCH(RunBlock);
  pool.ParallelFor(static_cast<int64_t>(tasks.size()), [&](int64_t t, int) {
    const Task& task = tasks[t];
    run(problems[task.problem], task.m0, task.m1, task.n0, task.n1);
  });
}

void MatMul(const GemmProblem& p, ThreadPool& pool) { GroupedMatMul({&p, 1}, pool); }

void MatMulReference(const GemmProblem& p) {
  const int64_t N = p.w.shape[0], K = p.w.shape[1];
  for (int64_t m = 0; m < p.rows; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float w = p.w.dtype == DType::kBF16 ? BF16ToF32(p.w.as<uint16_t>()[n * K + k])
                                                  : p.w.as<float>()[n * K + k];
        s += static_cast<double>(p.x[m * p.x_stride + k]) * w;
      }
      p.y[m * p.y_stride + n] = static_cast<float>(s);
    }
  }
}

}  // namespace moerack
#endif  // HWY_ONCE
