// A small random MoE layer and per-rank token batches shared by the EP tests
// (LocalComm in ep_moe_test.cc, MPI in tests/comm/mpi_check.cc).
#pragma once

#include <random>
#include <span>
#include <vector>

#include "moe/moe_layer.h"

namespace moerack::ep_test {

constexpr int kExperts = 6, kTopK = 2, kHidden = 32, kInter = 24;

struct Weights {
  std::vector<std::vector<uint16_t>> storage;
  std::vector<ExpertWeights> experts;
  ExpertWeights shared;
  std::vector<uint16_t> router;
};

inline std::vector<uint16_t> RandomBf16(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = F32ToBF16(u(rng));
  return v;
}

inline Weights MakeWeights() {
  std::mt19937 rng(17);
  Weights w;
  w.storage.reserve(3 * kExperts + 3);
  auto ffn = [&](int64_t inter) {
    w.storage.push_back(RandomBf16(inter * kHidden, rng));
    TensorView gate(w.storage.back().data(), DType::kBF16, {inter, kHidden});
    w.storage.push_back(RandomBf16(inter * kHidden, rng));
    TensorView up(w.storage.back().data(), DType::kBF16, {inter, kHidden});
    w.storage.push_back(RandomBf16(inter * kHidden, rng));
    TensorView down(w.storage.back().data(), DType::kBF16, {kHidden, inter});
    return ExpertWeights{gate, up, down};
  };
  for (int e = 0; e < kExperts; ++e) w.experts.push_back(ffn(kInter));
  w.shared = ffn(2 * kInter);
  w.router = RandomBf16(kExperts * kHidden, rng);
  return w;
}

inline int64_t TokensOf(int rank) { return (rank * 5 + 3) % 7; }  // rank 5 has none

inline std::vector<float> TokensFor(int rank) {
  std::mt19937 rng(100 + rank);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(static_cast<size_t>(TokensOf(rank) * kHidden));
  for (auto& v : x) v = u(rng);
  return x;
}

inline MoeLayer Layer(const Weights& w, std::span<const ExpertWeights> experts, bool shared,
                      DispatchDType dtype = DispatchDType::kF32) {
  RouterParams rp;
  rp.num_experts = kExperts;
  rp.top_k = kTopK;
  return MoeLayer{TensorView(const_cast<uint16_t*>(w.router.data()), DType::kBF16, {kExperts, kHidden}),
                  rp, experts, shared ? &w.shared : nullptr, dtype};
}

}  // namespace moerack::ep_test
