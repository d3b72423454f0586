#include "model/decoder.h"

#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace moerack {

BatchLayout LayoutBatch(const ForwardBatch& batch) {
  BatchLayout layout;
  for (const SequenceChunk& s : batch.seqs) {
    const int64_t first = layout.num_rows(), n = static_cast<int64_t>(s.tokens.size());
    layout.seqs.push_back({first, n, s.start_pos, s.block_table});
    for (int64_t i = 0; i < n; ++i) layout.positions.push_back(s.start_pos + i);
    if (s.logits == SequenceChunk::Logits::kAll) {
      for (int64_t i = 0; i < n; ++i) layout.logit_rows.push_back(first + i);
    } else if (s.logits == SequenceChunk::Logits::kLast && n > 0) {
      layout.logit_rows.push_back(first + n - 1);
    }
  }
  return layout;
}

void EmbedTokens(const ForwardBatch& batch, const TensorView& embed, int64_t hidden, float* h) {
  int64_t row = 0;
  for (const SequenceChunk& s : batch.seqs) {
    for (int32_t tok : s.tokens) LoadF32(embed, int64_t{tok} * hidden, hidden, h + hidden * row++);
  }
}

void AppendLogits(const LogitsHead& head, const float* h, int64_t hidden,
                  std::span<const int64_t> rows, ThreadPool& pool, std::vector<float>* logits) {
  const int64_t R = static_cast<int64_t>(rows.size());
  if (R == 0) return;
  const int64_t vocab = head.lm_head.rows;
  std::vector<float> last(static_cast<size_t>(R * hidden));
  for (int64_t i = 0; i < R; ++i) {
    RmsNorm(h + rows[i] * hidden, hidden, head.final_norm, head.eps, 1, hidden,
            last.data() + i * hidden, hidden);
  }
  const size_t out0 = logits->size();
  logits->resize(out0 + static_cast<size_t>(R * vocab));
  MatMul({last.data(), hidden, R, head.lm_head, logits->data() + out0, vocab}, pool);
}

}  // namespace moerack
