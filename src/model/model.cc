#include "model/model.h"

#include <algorithm>

#include "core/check.h"

namespace moerack {

void Model::Forward(const ForwardBatch& batch, const KvCacheView& cache, ThreadPool& pool,
                    std::vector<float>* logits) {
  ActDTypeScope act(act_dtype_);
  if (stats_ != nullptr) stats_->num_forward += 1;
  bool empty = true;
  for (const SequenceChunk& s : batch.seqs) empty = empty && s.tokens.empty();
  if (empty && !expert_parallel()) return;  // EP ranks join every layer's all-to-alls
  ForwardImpl(batch, cache, pool, logits);
}

void Model::set_communicator(Communicator* comm) {
  CHECK(comm == nullptr || comm->size() == ep_size_)
      << "communicator of " << comm->size() << " ranks for a model loaded for " << ep_size_;
  CHECK(comm == nullptr || comm->rank() == ep_rank_)
      << "communicator rank " << comm->rank() << " for a model loaded as rank " << ep_rank_;
  comm_ = comm;
}

void Model::set_expert_placement(int num_experts, int num_layers, const ModelLoadOptions& options) {
  CHECK(options.ep_size >= 1 && options.ep_rank >= 0 && options.ep_rank < options.ep_size);
  expert_maps_.assign(static_cast<size_t>(num_layers),
                      ExpertMap::Contiguous(num_experts, options.ep_size));
  ep_rank_ = options.ep_rank;
  ep_size_ = options.ep_size;
}

void Model::set_expert_maps(std::vector<ExpertMap> maps) {
  CHECK_EQ(maps.size(), expert_maps_.size());
  for (const ExpertMap& m : maps) CHECK_EQ(m.ep_size, ep_size_);
  expert_maps_ = std::move(maps);
}

void Model::RunMoe(const MoeLayer& moe, int layer_index, const float* x, int64_t num_tokens,
                   int64_t hidden, float* out, ThreadPool& pool) {
  MoeLayer layer = moe;
  layer.dispatch_dtype = dispatch_dtype_;
  layer.overlap = overlap_;
  layer.stats = stats_;
  layer.layer_index = layer_index;
  if (!expert_parallel()) return RunMoeLayer(layer, x, num_tokens, hidden, out, pool);
  CHECK(comm_ != nullptr) << "expert-parallel model without a communicator";
  if (!failure_.ok()) {  // an earlier layer failed: the collectives are gone
    std::fill_n(out, num_tokens * hidden, 0.0f);
    return;
  }
  const Status st = RunEpMoeLayer(layer, expert_maps_[static_cast<size_t>(layer_index)], *comm_, x,
                                  num_tokens, hidden, out, pool);
  if (!st.ok()) {
    failure_ = st.WithContext("expert-parallel MoE layer " + std::to_string(layer_index));
    comm_->Abort(failure_);
    std::fill_n(out, num_tokens * hidden, 0.0f);
  }
}

}  // namespace moerack
