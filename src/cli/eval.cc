// moerack eval: perplexity and bits per byte of a text file, and with
// --reference the mean KL divergence from a reference model.
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/mapped_file.h"
#include "engine/ep_lockstep.h"
#include "engine/evaluate.h"
#include "engine/kv_cache.h"
#include "model/registry.h"

namespace moerack::cli {
namespace {

struct EvalFlags {
  ModelRunFlags run;
  std::string model;
  std::string text;
  std::string reference;
  int64_t ctx = 0;
  bool json = false;
};

// One rank's part; with --ep N > 1 the windows' batches go round-robin over
// the ranks (rank 0 prints the result, bit-identical to one rank).
Status EvalOnRank(const EvalFlags& f, const std::string& dir, Communicator* comm) {
  const int rank = comm != nullptr ? comm->rank() : 0, ep = comm != nullptr ? comm->size() : 1;
  MR_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, LoadModel(dir, {rank, ep}));
  if (ep > 1) model->set_communicator(comm);
  MR_RETURN_IF_ERROR(ApplyModelRunFlags(f.run, *model));
  MR_ASSIGN_OR_RETURN(Tokenizer tokenizer,
                      Tokenizer::FromFile((std::filesystem::path(dir) / "tokenizer.json").string()));
  MR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(f.text));
  std::unique_ptr<Model> reference;
  if (!f.reference.empty()) {
    auto ref = LoadModel(f.reference);  // the reference runs whole on every rank
    if (!ref.ok()) return ref.status().WithContext("--reference");
    reference = std::move(ref).value();
  }
  const std::vector<int32_t> tokens = tokenizer.Encode(text);
  EvalOptions options;
  options.ctx = f.ctx > 0 ? f.ctx : model->config().max_position_embeddings;
  options.threads = f.run.threads;
  options.reference = reference.get();
  MR_ASSIGN_OR_RETURN(options.kv_dtype, ParseKvDType(f.run.kv_dtype));
  options.comm = ep > 1 ? comm : nullptr;
  MR_ASSIGN_OR_RETURN(const EvalResult r, EvaluateTokens(*model, tokens, tokenizer, options));
  if (rank != 0) return Status::Ok();
  if (f.json) {
    std::printf(
        "{\"perplexity\": %.6f, \"bits_per_byte\": %.6f, \"tokens\": %lld, \"bytes\": %lld, "
        "\"windows\": %lld, \"ctx\": %lld%s}\n",
        r.perplexity, r.bits_per_byte, static_cast<long long>(r.num_scored_tokens),
        static_cast<long long>(r.num_scored_bytes), static_cast<long long>(r.num_windows),
        static_cast<long long>(options.ctx),
        reference ? (", \"mean_kl\": " + std::to_string(r.mean_kl_nats)).c_str() : "");
  } else {
    std::printf(
        "perplexity: %.4f\nbits per byte: %.4f\nscored tokens: %lld (%lld bytes, %lld windows of "
        "%lld)\n",
        r.perplexity, r.bits_per_byte, static_cast<long long>(r.num_scored_tokens),
        static_cast<long long>(r.num_scored_bytes), static_cast<long long>(r.num_windows),
        static_cast<long long>(options.ctx));
    if (reference) std::printf("mean KL(reference || model): %.6g nats/token\n", r.mean_kl_nats);
  }
  return Status::Ok();
}

int RunEval(const EvalFlags& f) {
  const std::string cmd = "eval";
  auto dir = ResolveModelDir(f.model);
  if (!dir.ok()) return Fail(cmd, dir.status());
  const Status st =
      RunExpertParallel(f.run.ep, [&](Communicator* comm) { return EvalOnRank(f, *dir, comm); });
  return st.ok() ? 0 : Fail(cmd, st);
}

}  // namespace

Command RegisterEval(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  app.add_option("--model", f->model, "Model directory (default: the bundled model)");
  app.add_option("--text", f->text, "UTF-8 text file to score")->required();
  app.add_option("--ctx", f->ctx,
                 "Window length in tokens (default: the model's max_position_embeddings)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  app.add_option("--reference", f->reference,
                 "Reference model directory: also report KL(reference || model)");
  AddModelRunFlags(app, &f->run, "window batches round-robin", /*with_stats=*/false);
  app.add_flag("--json", f->json, "One JSON line instead of text");
  return [f] { return RunEval(*f); };
}

}  // namespace moerack::cli
