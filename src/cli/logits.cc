// moerack logits: the logits at every position of a token sequence, from one
// prefill or (with --decode-from K) a K-token prefill followed by one-token
// decode steps through the KV cache.
#include <algorithm>
#include <limits>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/npy.h"
#include "engine/ep_lockstep.h"
#include "engine/kv_cache.h"
#include "model/registry.h"

namespace moerack::cli {
namespace {

struct LogitsFlags {
  ModelRunFlags run;
  std::string model;
  std::string tokens;
  std::string out;
  int64_t decode_from = -1;
  int64_t max_model_len = 0;
};

// One rank's share: the whole sequence on rank 0; with --ep N > 1 the other
// ranks hold the rest of the experts and run empty forward passes in step.
Status LogitsOnRank(const LogitsFlags& f, const std::string& dir, const std::vector<int32_t>& ids,
                    Communicator* comm) {
  const int ep_rank = comm != nullptr ? comm->rank() : 0;
  MR_ASSIGN_OR_RETURN(std::unique_ptr<Model> loaded,
                      LoadModel(dir, {ep_rank, comm != nullptr ? comm->size() : 1}));
  Model& model = *loaded;
  if (comm != nullptr && comm->size() > 1) model.set_communicator(comm);
  MR_RETURN_IF_ERROR(ApplyModelRunFlags(f.run, model));
  MoeStats stats(model.config().num_layers, model.config().num_experts);
  if (!f.run.stats.empty() || !f.run.stats_svg.empty()) model.set_stats(&stats);
  const ModelConfig& c = model.config();
  const int64_t n = static_cast<int64_t>(ids.size());
  MR_RETURN_IF_ERROR(CheckTokenIds(ids, c.vocab_size, "--tokens"));
  const int64_t max_len = f.max_model_len > 0 ? f.max_model_len : c.max_position_embeddings;
  if (n > max_len) {
    return Error("--tokens: " + std::to_string(n) + " tokens exceed --max-model-len " +
                 std::to_string(max_len));
  }
  if (f.decode_from > n) return Error("--decode-from must be <= the number of tokens");
  const int block_size = 16;
  const int64_t num_blocks = (n + block_size - 1) / block_size;
  MR_ASSIGN_OR_RETURN(const DType kv_dtype, ParseKvDType(f.run.kv_dtype));
  KvCache cache(c.num_layers, num_blocks, block_size, model.kv_floats_per_token(), kv_dtype);
  std::vector<int32_t> table(static_cast<size_t>(num_blocks));
  for (int64_t b = 0; b < num_blocks; ++b)
    table[b] = static_cast<int32_t>(num_blocks - 1 - b);  // not identity: exercise paging
  ThreadPool pool(f.run.threads);
  std::vector<float> logits;
  const bool ep = model.expert_parallel();
  auto step = [&](bool has_work) -> StatusOr<bool> {
    return ep ? AnyRankHasWork(*comm, has_work) : StatusOr<bool>(has_work);
  };
  auto write_stats = [&]() -> Status {
    if (f.run.stats.empty() && f.run.stats_svg.empty()) return Status::Ok();
    return WriteMoeStats(stats, model.expert_maps(), ep ? comm : nullptr, f.run.stats, f.run.stats_svg);
  };
  if (ep_rank == 0) {
    const int64_t prefill = f.decode_from >= 0 ? f.decode_from : n;
    auto run = [&](int64_t start, int64_t count) -> Status {
      MR_RETURN_IF_ERROR(step(true).status());
      ForwardBatch batch;
      SequenceChunk chunk;
      chunk.tokens = std::span<const int32_t>(ids).subspan(static_cast<size_t>(start),
                                                           static_cast<size_t>(count));
      chunk.start_pos = start;
      chunk.block_table = table;
      chunk.logits = SequenceChunk::Logits::kAll;
      batch.seqs.push_back(chunk);
      model.Forward(batch, cache.view(), pool, &logits);
      return model.failure();
    };
    if (prefill > 0) MR_RETURN_IF_ERROR(run(0, prefill));
    for (int64_t i = prefill; i < n; ++i) MR_RETURN_IF_ERROR(run(i, 1));
    if (ep) MR_RETURN_IF_ERROR(step(false).status());  // tells the others to stop
    MR_RETURN_IF_ERROR(write_stats());
    return WriteNpyF32(f.out, logits.data(), {n, c.vocab_size});
  }
  for (;;) {  // ranks > 0: serve experts until rank 0 is done
    MR_ASSIGN_OR_RETURN(const bool any, step(false));
    if (!any) return write_stats();
    ForwardEmpty(model, cache.view(), pool);
    MR_RETURN_IF_ERROR(model.failure());
  }
}

int RunLogits(const LogitsFlags& f) {
  const std::string cmd = "logits";
  auto dir = ResolveModelDir(f.model);
  if (!dir.ok()) return Fail(cmd, dir.status());
  auto ids = ParseTokenList(f.tokens, "--tokens");
  if (!ids.ok()) return Fail(cmd, ids.status());
  const Status st = RunExpertParallel(
      f.run.ep, [&](Communicator* comm) { return LogitsOnRank(f, *dir, *ids, comm); });
  return st.ok() ? 0 : Fail(cmd, st);
}

}  // namespace

Command RegisterLogits(CLI::App& app) {
  auto f = std::make_shared<LogitsFlags>();
  app.add_option("--model", f->model, "Model directory (default: the bundled model)");
  app.add_option("--tokens", f->tokens, "Token ids, e.g. 1,2,3")->required();
  app.add_option("--out", f->out, "Output .npy file, float32 [n_tokens, vocab]")->required();
  app.add_option("--decode-from", f->decode_from,
                 "Prefill this many tokens, then decode one at a time")
      ->check(CLI::Range(0, std::numeric_limits<int>::max()));
  AddModelRunFlags(app, &f->run, "rank 0 runs the sequence", /*with_stats=*/true);
  app.add_option("--max-model-len", f->max_model_len, "Max tokens (default: the model's)")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  return [f] { return RunLogits(*f); };
}

}  // namespace moerack::cli
