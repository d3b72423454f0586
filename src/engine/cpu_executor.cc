#include "engine/executor.h"

namespace moerack {

CpuExecutor::CpuExecutor(Model& model, int64_t num_blocks, int block_size, int num_threads,
                         DType kv_dtype)
    : model_(model),
      cache_(model.config().num_layers, num_blocks, block_size, model.kv_floats_per_token(),
             kv_dtype),
      pool_(num_threads) {}

StepOutput CpuExecutor::Execute(const StepInput& input) {
  StepOutput out;
  model_.Forward(input.batch, cache_.view(), pool_, &out.logits);
  return out;
}

}  // namespace moerack
