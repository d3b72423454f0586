#include "engine/kv_cache.h"

namespace moerack {

KvCache::KvCache(int num_layers, int64_t num_blocks, int block_size, int64_t floats_per_token) {
  const int64_t n = int64_t{num_layers} * num_blocks * block_size * floats_per_token;
  data_.reset(
      new float[static_cast<size_t>(n)]);  // uninitialised: every slot is written before it is read
  view_ = KvCacheView{data_.get(), num_blocks, block_size, floats_per_token};
}

}  // namespace moerack
