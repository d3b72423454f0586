// Scaffolding every decoder-only architecture shares: where each token of a
// batch sits (rows, positions, which rows want logits), the embedding lookup,
// and the final norm + lm_head. Architecture files keep only their own math.
// Thread-safety: pure functions over caller-owned buffers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "kernels/linear_weight.h"
#include "model/model.h"

namespace moerack {

struct BatchLayout {
  std::vector<AttentionSeq> seqs;   // one per chunk, rows in batch order
  std::vector<int64_t> positions;   // position of each row
  std::vector<int64_t> logit_rows;  // rows whose logits the batch asks for, in order
  int64_t num_rows() const { return static_cast<int64_t>(positions.size()); }
};

BatchLayout LayoutBatch(const ForwardBatch& batch);

// h[row] = embed[token of row] (converted to f32); h is [rows, hidden].
void EmbedTokens(const ForwardBatch& batch, const TensorView& embed, int64_t hidden, float* h);

// Appends lm_head(RmsNorm(h[row])) for each of `rows` to `logits` ([vocab] each).
struct LogitsHead {
  TensorView final_norm;  // [hidden]
  float eps = 1e-6f;
  LinearWeight lm_head;  // [vocab, hidden]
};
void AppendLogits(const LogitsHead& head, const float* h, int64_t hidden,
                  std::span<const int64_t> rows, ThreadPool& pool, std::vector<float>* logits);

}  // namespace moerack
