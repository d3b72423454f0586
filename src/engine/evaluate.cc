#include "engine/evaluate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/kv_cache.h"

namespace moerack {
namespace {

// Logits of every position of each window (rows in window order).
class WindowRunner {
 public:
  WindowRunner(Model& model, int64_t max_tokens, int block_size, ThreadPool& pool, DType kv_dtype)
      : model_(model),
        block_size_(block_size),
        num_blocks_((max_tokens + block_size - 1) / block_size + 64),
        cache_(model.config().num_layers, num_blocks_, block_size, model.kv_floats_per_token(),
               kv_dtype),
        pool_(pool) {}

  std::vector<float> Run(const std::vector<std::span<const int32_t>>& windows) {
    std::vector<std::vector<int32_t>> tables;
    int32_t next = 0;
    for (const auto& w : windows) {
      const int64_t blocks = (static_cast<int64_t>(w.size()) + block_size_ - 1) / block_size_;
      CHECK_LE(next + blocks, num_blocks_);
      std::vector<int32_t> t(static_cast<size_t>(blocks));
      std::iota(t.begin(), t.end(), next);
      next += static_cast<int32_t>(blocks);
      tables.push_back(std::move(t));
    }
    ForwardBatch batch;
    for (size_t i = 0; i < windows.size(); ++i) {
      batch.seqs.push_back({windows[i], 0, tables[i], SequenceChunk::Logits::kAll});
    }
    std::vector<float> logits;
    model_.Forward(batch, cache_.view(), pool_, &logits);
    return logits;
  }

 private:
  Model& model_;
  int block_size_;
  int64_t num_blocks_;
  KvCache cache_;
  ThreadPool& pool_;
};

// log-softmax of one row, in double.
void LogSoftmax(const float* logits, int vocab, std::vector<double>* out) {
  out->resize(static_cast<size_t>(vocab));
  const double mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(logits[i] - mx);
  const double lse = mx + std::log(sum);
  for (int i = 0; i < vocab; ++i) (*out)[i] = logits[i] - lse;
}

}  // namespace

StatusOr<EvalResult> EvaluateTokens(Model& model, std::span<const int32_t> tokens,
                                    const Tokenizer& tokenizer, const EvalOptions& options) {
  const ModelConfig& c = model.config();
  if (options.ctx < 2) return Error("--ctx must be >= 2");
  if (options.ctx > c.max_position_embeddings) {
    return Error("--ctx " + std::to_string(options.ctx) +
                 " exceeds the model's max_position_embeddings " +
                 std::to_string(c.max_position_embeddings));
  }
  if (tokens.size() < 2) return Error("the text has fewer than 2 tokens");
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.vocab_size)
      return Error("token id " + std::to_string(t) + " out of range for the model");
  }
  if (options.reference != nullptr && options.reference->config().vocab_size != c.vocab_size) {
    return Error("the reference model's vocab_size (" +
                 std::to_string(options.reference->config().vocab_size) +
                 ") differs from the model's (" + std::to_string(c.vocab_size) + ")");
  }
  const int64_t batch_tokens = std::max(options.max_batch_tokens, options.ctx);
  ThreadPool pool(options.threads);
  WindowRunner runner(model, batch_tokens, 16, pool, options.kv_dtype);
  std::unique_ptr<WindowRunner> ref_runner;
  if (options.reference)
    ref_runner = std::make_unique<WindowRunner>(*options.reference, batch_tokens, 16, pool, DType::kF32);

  // Batches of whole windows; a last window of one token scores nothing.
  std::vector<std::vector<std::span<const int32_t>>> batches;
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (int64_t start = 0; start < n;) {
    std::vector<std::span<const int32_t>> windows;
    int64_t used = 0;
    while (start < n && used + options.ctx <= batch_tokens) {
      const int64_t len = std::min(options.ctx, n - start);
      if (len >= 2)
        windows.push_back(tokens.subspan(static_cast<size_t>(start), static_cast<size_t>(len)));
      start += len;
      used += len;
    }
    if (!windows.empty()) batches.push_back(std::move(windows));
  }
  // Per batch: nll, kl, scored tokens, scored bytes, windows; summed in batch
  // order at the end, so the result does not depend on which rank ran a batch.
  constexpr int kFields = 5;
  std::vector<double> partial(batches.size() * kFields, 0.0);
  std::vector<double> lp, lq;
  auto score = [&](size_t b) {
    const auto& windows = batches[b];
    const std::vector<float> logits = runner.Run(windows);
    std::vector<float> ref_logits;
    if (ref_runner) ref_logits = ref_runner->Run(windows);
    double* out = partial.data() + b * kFields;
    size_t row = 0;
    for (const auto& w : windows) {
      out[4] += 1;
      for (size_t i = 0; i < w.size(); ++i, ++row) {
        if (i + 1 == w.size()) continue;  // the last position predicts nothing in this window
        const int32_t target = w[i + 1];
        LogSoftmax(logits.data() + row * static_cast<size_t>(c.vocab_size), c.vocab_size, &lq);
        out[0] -= lq[static_cast<size_t>(target)];
        out[2] += 1;
        out[3] += static_cast<double>(tokenizer.TokenBytes(target).size());
        if (ref_runner) {
          LogSoftmax(ref_logits.data() + row * static_cast<size_t>(c.vocab_size), c.vocab_size,
                     &lp);
          double kl = 0;
          for (int v = 0; v < c.vocab_size; ++v) kl += std::exp(lp[v]) * (lp[v] - lq[v]);
          out[1] += kl;
        }
      }
    }
  };
  if (options.comm == nullptr || !model.expert_parallel()) {
    for (size_t b = 0; b < batches.size(); ++b) score(b);
  } else {
    // Round j: rank r scores batch j * ep + r, or runs an empty forward pass so
    // the MoE all-to-alls line up.
    Communicator& comm = *options.comm;
    const size_t ep = static_cast<size_t>(comm.size()), me = static_cast<size_t>(comm.rank());
    for (size_t round = 0; round * ep < batches.size(); ++round) {
      const size_t b = round * ep + me;
      if (b < batches.size()) {
        score(b);
      } else {
        runner.Run({});
      }
      MR_RETURN_IF_ERROR(model.failure());
    }
    MR_RETURN_IF_ERROR(comm.AllReduceSum(partial));  // each batch has one owner: exact
  }
  EvalResult r;
  double kl_sum = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    const double* p = partial.data() + b * kFields;
    r.nll_nats += p[0];
    kl_sum += p[1];
    r.num_scored_tokens += static_cast<int64_t>(p[2]);
    r.num_scored_bytes += static_cast<int64_t>(p[3]);
    r.num_windows += static_cast<int64_t>(p[4]);
  }
  r.perplexity = std::exp(r.nll_nats / static_cast<double>(r.num_scored_tokens));
  r.bits_per_byte = r.num_scored_bytes > 0
                        ? r.nll_nats / std::log(2.0) / static_cast<double>(r.num_scored_bytes)
                        : 0;
  if (ref_runner) r.mean_kl_nats = kl_sum / static_cast<double>(r.num_scored_tokens);
  return r;
}

}  // namespace moerack
