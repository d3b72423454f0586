// Executor: runs one scheduled step. CpuExecutor computes it with a model on
// this machine; the simulator's executor predicts its duration instead. Both
// receive the same StepInput, built by the engine from the scheduler's plan.
// Thread-safety: one Execute at a time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "engine/kv_cache.h"
#include "model/model.h"

namespace moerack {

struct StepInput {
  ForwardBatch batch;  // one chunk per scheduled sequence, in plan order
};

struct StepOutput {
  std::vector<float> logits;  // rows for the chunks that asked for logits, in order
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual StepOutput Execute(const StepInput& input) = 0;
};

class CpuExecutor final : public Executor {
 public:
  // `num_blocks` KV blocks of `block_size` tokens in `kv_dtype` (f32 or fp8);
  // `num_threads` computing threads.
  CpuExecutor(Model& model, int64_t num_blocks, int block_size, int num_threads,
              DType kv_dtype = DType::kF32);
  StepOutput Execute(const StepInput& input) override;
  ThreadPool& pool() { return pool_; }

 private:
  Model& model_;
  KvCache cache_;
  ThreadPool pool_;
};

}  // namespace moerack
