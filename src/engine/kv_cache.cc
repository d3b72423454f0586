#include "engine/kv_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>

namespace moerack {

StatusOr<DType> ParseKvDType(const std::string& name) {
  if (name == "f32" || name == "auto") return DType::kF32;
  if (name == "fp8" || name == "fp8_e4m3") return DType::kFP8E4M3;
  return Error("--kv-dtype: '" + name + "' is not supported (f32 or fp8)");
}

KvCache::KvCache(int num_layers, int64_t num_blocks, int block_size, int64_t floats_per_token,
                 DType dtype) {
  CHECK(dtype == DType::kF32 || dtype == DType::kFP8E4M3);
  const int64_t n = int64_t{num_layers} * num_blocks * block_size * floats_per_token;
  // Uninitialised: every slot is written before it is read.
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t bytes = static_cast<size_t>(n * DTypeBits(dtype) / 8);
  const size_t len = std::max<size_t>(1, (bytes + kHugePage - 1) / kHugePage) * kHugePage;
  data_.reset(static_cast<uint8_t*>(std::aligned_alloc(kHugePage, len)));
  CHECK(data_ != nullptr) << "KV cache: cannot allocate " << len << " bytes";
  ::madvise(data_.get(), len, MADV_HUGEPAGE);  // advice only: 4 KB pages if refused
  view_ = KvCacheView{data_.get(), dtype, num_blocks, block_size, floats_per_token};
}

void KvCache::FreeDeleter::operator()(uint8_t* p) const { std::free(p); }

}  // namespace moerack
