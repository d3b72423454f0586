// The grouped expert GEMM: SwiGLU FFNs of many experts, each over the rows
// routed to it, as two grouped matmul passes (gate+up, then down). Every MoE
// layer (and dense MLP, as one expert) runs through here; with expert
// parallelism the rows are the tokens this rank received.
// Thread-safety: as GroupedMatMul.
#pragma once

#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "kernels/linear_weight.h"

namespace moerack {

// One expert's SwiGLU weights; `inter` may differ between experts (e.g. a
// shared expert of n_shared * moe_intermediate_size beside the routed ones).
struct ExpertWeights {
  LinearWeight gate;  // [inter, hidden]
  LinearWeight up;    // [inter, hidden]
  LinearWeight down;  // [hidden, inter]
  int64_t nbytes() const { return gate.nbytes() + up.nbytes() + down.nbytes(); }
  void TouchPages() const {
    gate.TouchPages();
    up.TouchPages();
    down.TouchPages();
  }
};

struct ExpertFfnParams {
  std::span<const ExpertWeights> experts;  // one per local expert
  std::span<const int64_t>
      expert_offsets;        // [experts + 1]: rows of expert e are [off[e], off[e+1])
  const float* x = nullptr;  // [rows, hidden], or the tokens [T, hidden] (row_token)
  float* out = nullptr;      // [rows, hidden]
  int64_t hidden = 0;
  // Optional: row r reads token row_token[r] of x, without a dispatched copy.
  // Each expert's rows must be consecutive tokens (RowsAreTokenRuns).
  std::span<const int32_t> row_token = {};
};

// Whether the rows of every expert (offsets) are consecutive tokens
// (row_token), so that an expert's GEMM can read them from the tokens in
// place: always so for one token (a decode step of one sequence).
bool RowsAreTokenRuns(std::span<const int64_t> offsets, std::span<const int32_t> row_token);

// out[r] = down(silu(gate(x[r])) * up(x[r])) with the weights of r's expert.
void GroupedExpertFfn(const ExpertFfnParams& p, ThreadPool& pool);

}  // namespace moerack
