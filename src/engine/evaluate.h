// Quality evaluation of a model on a text: perplexity, bits per byte and, with
// a reference model, the KL divergence of the model's next-token distribution
// from the reference's (e.g. a quantized checkpoint against bf16).
//
// The token stream is cut into non-overlapping windows of `ctx` tokens; each
// window is an independent sequence and every token after its first is scored
// by the logits of the position before it. Windows run batched; by DESIGN.md
// principle 2 that changes nothing.
// Thread-safety: uses the models exclusively for the duration of the call.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "comm/communicator.h"
#include "core/status.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace moerack {

struct EvalOptions {
  int64_t ctx = 0;  // window length in tokens (>= 2)
  int threads = 1;
  Model* reference = nullptr;       // optional: KL(P_reference || P_model) per scored token
  int64_t max_batch_tokens = 2048;  // windows batched per forward pass
  DType kv_dtype = DType::kF32;     // the model's KV cache (the reference's stays f32)
  // Expert parallelism: the model's ranks (null: one rank). Batches of windows go
  // round-robin to the ranks, which step together; the result, on every rank, is
  // bit-identical to the single-rank evaluation.
  Communicator* comm = nullptr;
};

struct EvalResult {
  int64_t num_scored_tokens = 0;  // tokens after the first of each window
  int64_t num_scored_bytes = 0;   // UTF-8 bytes of those tokens
  int64_t num_windows = 0;
  double nll_nats = 0;       // summed over scored tokens
  double perplexity = 0;     // exp(nll / tokens)
  double bits_per_byte = 0;  // nll / ln 2 / bytes
  double mean_kl_nats = 0;   // only with a reference
};

StatusOr<EvalResult> EvaluateTokens(Model& model, std::span<const int32_t> tokens,
                                    const Tokenizer& tokenizer, const EvalOptions& options);

}  // namespace moerack
