// KvCache: the memory of the paged KV cache, [layers][blocks][block_size][elements
// per token], handed to the model as a KvCacheView. Which block belongs to
// which sequence is the scheduler's business (BlockAllocator); this only owns
// the memory. Elements are f32, or FP8 E4M3 with a per-tensor scale
// (`--kv-dtype fp8`: a quarter of the bytes). Pages are touched lazily by the
// OS as blocks are first written, on 2 MB transparent huge pages where the
// kernel offers them (core/huge_pages.h): attention reads one kv head's key and
// value from every token slot, slots a few KB apart, one 4 KB page each.
// Thread-safety: the view may be written by one forward pass at a time.
#pragma once

#include <cstdint>
#include <string>

#include "core/huge_pages.h"
#include "core/status.h"
#include "kernels/attention.h"

namespace moerack {

// "f32" or "fp8"; errors name the flag value.
StatusOr<DType> ParseKvDType(const std::string& name);

class KvCache {
 public:
  KvCache(int num_layers, int64_t num_blocks, int block_size, int64_t floats_per_token,
          DType dtype = DType::kF32);
  KvCacheView view() const { return view_; }

 private:
  HugePageBuffer data_;
  KvCacheView view_;
};

}  // namespace moerack
