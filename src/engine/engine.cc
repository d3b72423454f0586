#include "engine/engine.h"

#include <algorithm>

#include "core/timer.h"

namespace moerack {

Engine::Engine(const ModelConfig& model_config, Executor& executor, const EngineConfig& config,
               const Tokenizer* tokenizer)
    : model_config_(model_config),
      executor_(executor),
      config_(config),
      tokenizer_(tokenizer),
      scheduler_(config.scheduler) {
  CHECK_GT(config_.max_model_len, 0);
  // A sequence can never outgrow the whole KV cache: it would preempt itself
  // forever. It ends with FinishReason::kLength there instead.
  config_.max_model_len = std::min(
      config_.max_model_len, config.scheduler.num_blocks * config.scheduler.block_size);
}

StatusOr<SeqId> Engine::AddRequest(std::vector<int32_t> prompt, const SamplingParams& params) {
  if (prompt.empty()) return Error("the prompt is empty");
  for (int32_t t : prompt) {
    if (t < 0 || t >= model_config_.vocab_size) {
      return Error("token id " + std::to_string(t) + " is out of range [0, " +
                   std::to_string(model_config_.vocab_size) + ")");
    }
  }
  if (static_cast<int64_t>(prompt.size()) > config_.max_model_len) {
    return Error("prompt of " + std::to_string(prompt.size()) +
                 " tokens is longer than --max-model-len " + std::to_string(config_.max_model_len));
  }
  if (params.max_tokens < 1) return Error("max_tokens must be >= 1");
  const SeqId id = next_id_++;
  MR_RETURN_IF_ERROR(scheduler_.Add(id, static_cast<int64_t>(prompt.size())));
  Sequence& s = seqs_[id];
  s.params = params;
  s.rng.seed(params.seed);
  s.tokens = prompt;
  s.result.prompt = std::move(prompt);
  return id;
}

bool Engine::Append(Sequence& s, int32_t token) {
  const auto& eos = model_config_.generation.eos_token_ids;
  const auto& stop_ids = s.params.stop_token_ids;
  if ((!s.params.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) ||
      std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end()) {
    s.result.finish = FinishReason::kStop;
    return true;
  }
  s.tokens.push_back(token);
  s.result.output.push_back(token);
  if (tokenizer_ != nullptr) {
    const size_t before = s.result.text.size();
    s.result.text += tokenizer_->TokenBytes(token);
    for (const std::string& stop : s.params.stop) {
      if (stop.empty()) continue;
      // Only a match that ends in the new bytes is new.
      const size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
      const size_t at = s.result.text.find(stop, from);
      if (at != std::string::npos) {
        s.result.text.resize(at);
        s.result.finish = FinishReason::kStop;
        return true;
      }
    }
  }
  if (static_cast<int>(s.result.output.size()) >= s.params.max_tokens ||
      static_cast<int64_t>(s.tokens.size()) >= config_.max_model_len) {
    s.result.finish = FinishReason::kLength;
    return true;
  }
  return false;
}

std::vector<SeqId> Engine::Step() {
  std::vector<SeqId> finished;
  const StepPlan plan = scheduler_.Schedule();
  stats_.num_preemptions += static_cast<int64_t>(plan.preempted.size());
  CHECK(!plan.empty() || !HasWork()) << "scheduler made no progress";
  if (plan.empty()) return finished;
  StepInput input;
  for (const ScheduledChunk& c : plan.chunks) {
    const Sequence& s = seqs_.at(c.seq);
    SequenceChunk chunk;
    chunk.tokens = std::span<const int32_t>(s.tokens).subspan(static_cast<size_t>(c.start),
                                                              static_cast<size_t>(c.num_tokens));
    chunk.start_pos = c.start;
    chunk.block_table = scheduler_.BlockTable(c.seq);
    chunk.logits = c.samples ? SequenceChunk::Logits::kLast : SequenceChunk::Logits::kNone;
    input.batch.seqs.push_back(chunk);
  }
  Timer timer;  // the forward pass and the sampling of its tokens
  const StepOutput out = executor_.Execute(input);
  scheduler_.OnStepDone(plan);

  size_t row = 0;
  for (const ScheduledChunk& c : plan.chunks) {
    if (!c.samples) continue;
    Sequence& s = seqs_.at(c.seq);
    const float* logits = out.logits.data() + row++ * static_cast<size_t>(model_config_.vocab_size);
    const int32_t token = SampleToken(logits, model_config_.vocab_size, s.params, s.rng);
    if (Append(s, token)) {
      scheduler_.Remove(c.seq);
      finished.push_back(c.seq);
    } else {
      scheduler_.AppendToken(c.seq);
    }
  }
  const double dt = timer.Seconds();
  const int64_t prefill = plan.num_prefill_tokens(), decode = plan.num_decode_tokens();
  stats_.prefill_tokens += prefill;
  stats_.decode_tokens += decode;
  stats_.prefill_s += dt * static_cast<double>(prefill) / static_cast<double>(prefill + decode);
  stats_.decode_s += dt * static_cast<double>(decode) / static_cast<double>(prefill + decode);
  ++stats_.num_steps;
  return finished;
}

}  // namespace moerack
