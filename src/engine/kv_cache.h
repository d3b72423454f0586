// KvCache: the memory of the paged KV cache, [layers][blocks][block_size][floats
// per token], handed to the model as a KvCacheView. Which block belongs to
// which sequence is the scheduler's business (BlockAllocator); this only owns
// the floats. Pages are touched lazily by the OS as blocks are first written.
// Thread-safety: the view may be written by one forward pass at a time.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/attention.h"

namespace moerack {

class KvCache {
 public:
  KvCache(int num_layers, int64_t num_blocks, int block_size, int64_t floats_per_token);
  KvCacheView view() const { return view_; }
  static int64_t BytesPerBlock(int num_layers, int block_size, int64_t floats_per_token) {
    return int64_t{num_layers} * block_size * floats_per_token *
           static_cast<int64_t>(sizeof(float));
  }

 private:
  std::unique_ptr<float[]> data_;
  KvCacheView view_;
};

}  // namespace moerack
