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
#include "engine/ep_lockstep.h"
#include "engine/eplb_runtime.h"
#include "engine/kv_cache.h"
#include "model/registry.h"

namespace moerack::cli {
namespace {

struct GenerateFlags {
  ModelRunFlags run;
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
  int64_t max_model_len = 0;
  int64_t max_batched_tokens = 2048;
  int64_t kv_cache_tokens = 0;
  bool output_tokens = false;
  bool use_tokens = false;  // --tokens was given (possibly empty)
  EplbOptions eplb;
};

// Sequence i of --num-seqs runs on EP rank i % ep (data-parallel attention:
// each rank holds its sequences' KV cache); rank 0 prints every result in
// sequence order. With one rank this is the plain engine loop.
Status GenerateOnRank(const GenerateFlags& f, const std::string& dir, Communicator* comm) {
  const int rank = comm != nullptr ? comm->rank() : 0, ep = comm != nullptr ? comm->size() : 1;
  MR_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, LoadModel(dir, {rank, ep}));
  if (ep > 1) model->set_communicator(comm);
  MR_RETURN_IF_ERROR(ApplyModelRunFlags(f.run, *model));
  MoeStats stats(model->config().num_layers, model->config().num_experts);
  const bool eplb = f.eplb.interval_steps > 0;
  if (!f.run.stats.empty() || !f.run.stats_svg.empty() || eplb) model->set_stats(&stats);
  if (eplb && ep == 1) return Error("--eplb-interval needs --ep > 1");
  if (eplb && (model->config().num_experts + f.eplb.redundant_slots) % ep != 0) {
    return Error("--eplb-slots " + std::to_string(f.eplb.redundant_slots) + ": experts (" +
                 std::to_string(model->config().num_experts) +
                 ") + redundant slots must be a multiple of --ep " + std::to_string(ep));
  }
  const ModelConfig& config = model->config();

  std::unique_ptr<Tokenizer> tokenizer;
  const std::string tok_path = (std::filesystem::path(dir) / "tokenizer.json").string();
  if (std::filesystem::exists(tok_path)) {
    MR_ASSIGN_OR_RETURN(Tokenizer t, Tokenizer::FromFile(tok_path));
    tokenizer = std::make_unique<Tokenizer>(std::move(t));
  }
  std::vector<int32_t> prompt;
  if (f.use_tokens) {
    MR_ASSIGN_OR_RETURN(prompt, ParseTokenList(f.tokens, "--tokens"));
    MR_RETURN_IF_ERROR(CheckTokenIds(prompt, config.vocab_size, "--tokens"));
  } else {
    if (!tokenizer) return Error(tok_path + ": not found; pass --tokens instead of --prompt");
    prompt = tokenizer->Encode(f.prompt);
  }

  SamplingParams params;
  params.temperature = f.temperature.value_or(config.generation.temperature.value_or(0.0f));
  params.top_k = f.top_k.value_or(config.generation.top_k.value_or(0));
  params.top_p = f.top_p.value_or(config.generation.top_p.value_or(1.0f));
  params.max_tokens = f.max_tokens;
  params.stop = f.stop;
  params.ignore_eos = f.ignore_eos;
  if (params.top_p <= 0.0f || params.top_p > 1.0f) return Error("--top-p must be in (0, 1]");

  std::vector<int> mine;  // global indices of this rank's sequences
  for (int i = rank; i < f.num_seqs; i += ep) mine.push_back(i);
  const int num_local = std::max<int>(1, static_cast<int>(mine.size()));
  EngineConfig ec;
  ec.max_model_len = f.max_model_len > 0 ? f.max_model_len : config.max_position_embeddings;
  ec.scheduler.max_num_seqs = num_local;
  ec.scheduler.max_num_batched_tokens = f.max_batched_tokens;
  const int64_t per_seq =
      std::min<int64_t>(static_cast<int64_t>(prompt.size()) + f.max_tokens, ec.max_model_len) + 1;
  const int64_t kv_tokens = f.kv_cache_tokens > 0 ? f.kv_cache_tokens : per_seq * num_local;
  ec.scheduler.num_blocks =
      (kv_tokens + ec.scheduler.block_size - 1) / ec.scheduler.block_size + num_local;
  MR_ASSIGN_OR_RETURN(const DType kv_dtype, ParseKvDType(f.run.kv_dtype));
  CpuExecutor executor(*model, ec.scheduler.num_blocks, ec.scheduler.block_size, f.run.threads,
                       kv_dtype);
  Engine engine(config, executor, ec, tokenizer.get());
  std::vector<SeqId> ids;
  for (int i : mine) {
    SamplingParams p = params;
    p.seed = f.seed + static_cast<uint64_t>(i);
    MR_ASSIGN_OR_RETURN(const SeqId id, engine.AddRequest(prompt, p));
    ids.push_back(id);
  }
  nlohmann::json eplb_report = nlohmann::json::array();
  if (ep == 1) {
    engine.RunToCompletion();
  } else {
    // Lockstep: while any rank has sequences, every rank runs a step (an empty
    // forward pass when it has none) so the MoE all-to-alls line up.
    std::unique_ptr<EplbController> balancer;
    if (eplb) balancer = std::make_unique<EplbController>(*model, *comm, stats, f.eplb);
    for (;;) {
      MR_ASSIGN_OR_RETURN(const bool any, AnyRankHasWork(*comm, engine.HasWork()));
      if (!any) break;
      if (engine.HasWork()) {
        engine.Step();
      } else {
        executor.Execute(StepInput{});
      }
      MR_RETURN_IF_ERROR(model->failure());
      if (balancer) MR_RETURN_IF_ERROR(balancer->AfterStep());
    }
    if (balancer) eplb_report = balancer->Report();
  }
  auto format = [&](const SequenceResult& r) {
    std::string line;
    if (f.output_tokens || !tokenizer) {
      for (size_t i = 0; i < r.output.size(); ++i) line += (i ? "," : "") + std::to_string(r.output[i]);
    } else {
      line = r.text;
    }
    return line + "\n";
  };
  // Results to rank 0 in sequence order (rank r's k-th sequence is global r + k * ep).
  std::string text;
  for (int i = 0; i < f.num_seqs; ++i) {
    const int owner = i % ep, k = i / ep;
    if (owner == rank && rank == 0) {
      text += format(engine.Result(ids[k]));
    } else if (owner == rank) {
      const std::string line = format(engine.Result(ids[k]));
      const int64_t size = static_cast<int64_t>(line.size());
      MR_RETURN_IF_ERROR(comm->Send(0, 1, &size, sizeof(size)));
      MR_RETURN_IF_ERROR(comm->Send(0, 2, line.data(), size));
    } else if (rank == 0) {
      int64_t size = 0;
      MR_RETURN_IF_ERROR(comm->Recv(owner, 1, &size, sizeof(size)));
      std::string line(static_cast<size_t>(size), '\0');
      MR_RETURN_IF_ERROR(comm->Recv(owner, 2, line.data(), size));
      text += line;
    }
  }
  // Throughput over all ranks: tokens summed, time of the slowest rank.
  const EngineStats& s = engine.stats();
  std::vector<double> st = {static_cast<double>(s.prefill_tokens), s.prefill_s,
                            static_cast<double>(s.decode_tokens), s.decode_s};
  if (ep > 1) {
    std::vector<double> all(st.size() * static_cast<size_t>(ep));
    MR_RETURN_IF_ERROR(comm->AllGather(st.data(), static_cast<int64_t>(st.size() * sizeof(double)),
                                       all.data()));
    st.assign(4, 0.0);
    for (int r = 0; r < ep; ++r) {
      st[0] += all[r * 4];
      st[1] = std::max(st[1], all[r * 4 + 1]);
      st[2] += all[r * 4 + 2];
      st[3] = std::max(st[3], all[r * 4 + 3]);
    }
  }
  if (!f.run.stats.empty() || !f.run.stats_svg.empty()) {
    MR_RETURN_IF_ERROR(WriteMoeStats(stats, model->expert_maps(), ep > 1 ? comm : nullptr, f.run.stats,
                                     f.run.stats_svg, {{"eplb", eplb_report}}));
  }
  if (rank != 0) return Status::Ok();
  std::cout << text;
  std::cout.flush();
  std::fprintf(stderr, "prefill: %lld tok, %.2f tok/s; decode: %lld tok, %.2f tok/s\n",
               static_cast<long long>(st[0]), st[1] > 0 ? st[0] / st[1] : 0.0,
               static_cast<long long>(st[2]), st[3] > 0 ? st[2] / st[3] : 0.0);
  return Status::Ok();
}

int RunGenerate(const GenerateFlags& f) {
  const std::string cmd = "generate";
  auto dir = ResolveModelDir(f.model);
  if (!dir.ok()) return Fail(cmd, dir.status());
  const Status st =
      RunExpertParallel(f.run.ep, [&](Communicator* comm) { return GenerateOnRank(f, *dir, comm); });
  return st.ok() ? 0 : Fail(cmd, st);
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
  AddModelRunFlags(app, &f->run, "sequence i runs on rank i % ep", /*with_stats=*/true);
  app.add_option("--eplb-slots", f->eplb.redundant_slots,
                 "EPLB: redundant expert slots per MoE layer (replicas of hot experts)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--eplb-interval", f->eplb.interval_steps,
                 "EPLB: rebalance every this many steps from their routing counts (needs --ep > 1)")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--eplb-mover-delay-ms", f->eplb.mover_delay_ms,
                 "EPLB test knob: delay the background weight mover (serving continues meanwhile)")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--max-model-len", f->max_model_len,
                 "Max prompt + generated tokens (default: the model's)")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--max-batched-tokens", f->max_batched_tokens, "Token budget per engine step")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  app.add_option("--kv-cache-tokens", f->kv_cache_tokens,
                 "KV cache capacity in tokens (default: enough for all)")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
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
