// Sampling: greedy, temperature, top-k, top-p, from one row of logits, with a
// per-sequence random generator so a fixed seed gives the same tokens whatever
// else is in the batch.
// Thread-safety: pure functions; the generator belongs to the sequence.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace moerack {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax, lowest id on ties)
  int top_k = 0;             // 0: all
  float top_p = 1.0f;        // nucleus mass in (0, 1]
  uint64_t seed = 0;
  int max_tokens = 16;
  std::vector<std::string> stop;        // stop strings (not included in the output)
  std::vector<int32_t> stop_token_ids;  // end the sequence like EOS (not included)
  bool ignore_eos = false;
};

int32_t SampleToken(const float* logits, int vocab_size, const SamplingParams& params,
                    std::mt19937_64& rng);

}  // namespace moerack
