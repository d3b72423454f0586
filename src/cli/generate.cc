// moerack generate: runs one prompt (N copies with --num-seqs) through the
// engine and prints the completions; the last stderr line has the throughput.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "model/registry.h"

namespace moerack::cli {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  std::string tokens;
  int max_tokens = 64;
  std::optional<float> temperature;
  std::optional<int> top_k;
  std::optional<float> top_p;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int num_seqs = 1;
  int threads = 1;
  int64_t max_model_len = 0;
  int64_t max_batched_tokens = 2048;
  int64_t kv_cache_tokens = 0;
  bool output_tokens = false;
  bool use_tokens = false;  // --tokens was given (possibly empty)
  std::string kv_dtype = "f32";
  std::string act_dtype = "f32";
};

int RunGenerate(const GenerateFlags& f) {
  const std::string cmd = "generate";
  auto dir = ResolveModelDir(f.model);
  if (!dir.ok()) return Fail(cmd, dir.status());
  auto model = LoadModel(*dir);
  if (!model.ok()) return Fail(cmd, model.status());
  auto act_dtype = ParseActDType(f.act_dtype);
  if (!act_dtype.ok()) return Fail(cmd, act_dtype.status());
  (**model).set_act_dtype(*act_dtype);
  const ModelConfig& config = (*model)->config();

  std::unique_ptr<Tokenizer> tokenizer;
  const std::string tok_path = (std::filesystem::path(*dir) / "tokenizer.json").string();
  if (std::filesystem::exists(tok_path)) {
    auto t = Tokenizer::FromFile(tok_path);
    if (!t.ok()) return Fail(cmd, t.status());
    tokenizer = std::make_unique<Tokenizer>(std::move(t).value());
  }
  std::vector<int32_t> prompt;
  if (f.use_tokens) {
    auto ids = ParseTokenList(f.tokens, "--tokens");
    if (!ids.ok()) return Fail(cmd, ids.status());
    if (Status st = CheckTokenIds(*ids, config.vocab_size, "--tokens"); !st.ok())
      return Fail(cmd, st);
    prompt = *ids;
  } else {
    if (!tokenizer)
      return Fail(cmd, Error(tok_path + ": not found; pass --tokens instead of --prompt"));
    prompt = tokenizer->Encode(f.prompt);
  }

  SamplingParams params;
  params.temperature = f.temperature.value_or(config.generation.temperature.value_or(0.0f));
  params.top_k = f.top_k.value_or(config.generation.top_k.value_or(0));
  params.top_p = f.top_p.value_or(config.generation.top_p.value_or(1.0f));
  params.max_tokens = f.max_tokens;
  params.stop = f.stop;
  params.ignore_eos = f.ignore_eos;
  if (params.top_p <= 0.0f || params.top_p > 1.0f)
    return Fail(cmd, Error("--top-p must be in (0, 1]"));

  EngineConfig ec;
  ec.max_model_len = f.max_model_len > 0 ? f.max_model_len : config.max_position_embeddings;
  ec.scheduler.max_num_seqs = f.num_seqs;
  ec.scheduler.max_num_batched_tokens = f.max_batched_tokens;
  const int64_t per_seq =
      std::min<int64_t>(static_cast<int64_t>(prompt.size()) + f.max_tokens, ec.max_model_len) + 1;
  const int64_t kv_tokens = f.kv_cache_tokens > 0 ? f.kv_cache_tokens : per_seq * f.num_seqs;
  ec.scheduler.num_blocks =
      (kv_tokens + ec.scheduler.block_size - 1) / ec.scheduler.block_size + f.num_seqs;
  auto kv_dtype = ParseKvDType(f.kv_dtype);
  if (!kv_dtype.ok()) return Fail(cmd, kv_dtype.status());
  CpuExecutor executor(**model, ec.scheduler.num_blocks, ec.scheduler.block_size, f.threads,
                       *kv_dtype);
  Engine engine(config, executor, ec, tokenizer.get());
  std::vector<SeqId> ids;
  for (int i = 0; i < f.num_seqs; ++i) {
    SamplingParams p = params;
    p.seed = f.seed + static_cast<uint64_t>(i);
    auto id = engine.AddRequest(prompt, p);
    if (!id.ok()) return Fail(cmd, id.status());
    ids.push_back(*id);
  }
  engine.RunToCompletion();
  for (SeqId id : ids) {
    const SequenceResult& r = engine.Result(id);
    if (f.output_tokens || !tokenizer) {
      for (size_t i = 0; i < r.output.size(); ++i) std::cout << (i ? "," : "") << r.output[i];
    } else {
      std::cout << r.text;
    }
    std::cout << "\n";
  }
  std::cout.flush();
  const EngineStats& s = engine.stats();
  std::fprintf(stderr, "prefill: %lld tok, %.2f tok/s; decode: %lld tok, %.2f tok/s\n",
               static_cast<long long>(s.prefill_tokens),
               s.prefill_s > 0 ? s.prefill_tokens / s.prefill_s : 0.0,
               static_cast<long long>(s.decode_tokens),
               s.decode_s > 0 ? s.decode_tokens / s.decode_s : 0.0);
  return 0;
}

}  // namespace

Command RegisterGenerate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  app.add_option("--model", f->model, "Model directory (default: the bundled model)");
  auto* prompt = app.add_option("--prompt", f->prompt, "Prompt text");
  auto* tokens = app.add_option("--tokens", f->tokens, "Prompt as token ids, e.g. 1,2,3");
  prompt->excludes(tokens);
  app.add_option("--max-tokens", f->max_tokens, "Tokens to generate per sequence")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--temperature", f->temperature, "Sampling temperature (0: greedy)")
      ->check(CLI::Range(0.0, 100.0));
  app.add_option("--top-k", f->top_k, "Keep the k most likely tokens (0: all)")
      ->check(CLI::Range(0, std::numeric_limits<int>::max()));
  app.add_option("--top-p", f->top_p, "Nucleus sampling mass in (0, 1]");
  app.add_option("--seed", f->seed, "Random seed (sequence i uses seed + i)");
  app.add_option("--stop", f->stop, "Stop string (repeatable)");
  app.add_flag("--ignore-eos", f->ignore_eos, "Keep generating after EOS");
  app.add_option("--num-seqs", f->num_seqs, "Copies of the request, batched")
      ->check(CLI::Range(1, 4096));
  app.add_option("--threads", f->threads, "Computing threads")->check(CLI::Range(1, 1024));
  app.add_option("--max-model-len", f->max_model_len,
                 "Max prompt + generated tokens (default: the model's)")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--max-batched-tokens", f->max_batched_tokens, "Token budget per engine step")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--kv-cache-tokens", f->kv_cache_tokens,
                 "KV cache capacity in tokens (default: enough for all)")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--kv-dtype", f->kv_dtype, "KV cache element type: f32 (default) or fp8 (E4M3)");
  app.add_option("--act-dtype", f->act_dtype,
                 "Activation precision of the matmuls: f32 (default) or bf16 (AVX512-BF16 kernels)");
  app.add_flag("--output-tokens", f->output_tokens, "Print generated token ids instead of text");
  return [f, prompt, tokens] {
    if (prompt->count() == 0 && tokens->count() == 0) {
      return Fail("generate", Error("one of --prompt or --tokens is required"));
    }
    f->use_tokens = tokens->count() > 0;
    return RunGenerate(*f);
  };
}

}  // namespace moerack::cli
