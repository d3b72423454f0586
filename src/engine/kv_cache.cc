#include "engine/kv_cache.h"

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
  const size_t bytes = static_cast<size_t>(n * DTypeBits(dtype) / 8);
  data_ = HugePageBuffer(bytes);
  CHECK(!data_.empty()) << "KV cache: cannot allocate " << bytes << " bytes";
  view_ = KvCacheView{data_.data(), dtype, num_blocks, block_size, floats_per_token};
}

}  // namespace moerack
