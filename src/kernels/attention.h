// Causal attention of new tokens over a paged KV cache.
//
// The cache is a pool of fixed-size blocks per layer; a sequence's block table
// maps its token positions to blocks (position p lives in block
// table[p / block_size], slot p % block_size). Each token slot holds
// `floats_per_token` floats whose meaning the architecture defines (for GQA:
// K heads then V heads). The engine owns the memory (engine/kv_cache.h); the
// model and kernels see it through KvCacheView.
//
// Each query attends keys [max(0, pos - window + 1), pos] in position order,
// with a two-pass softmax; a query's result depends only on its own position
// and the cache, so chunked and whole prefill, and any batch, agree exactly.
// q·k is a SIMD dot product (per-lane FMA chains, one fixed lane-sum tree) and
// the weighted sum of V an elementwise FMA over the value dimension, key by key
// in order. Work is split into tiles of up to 64 query rows (a kv group's heads
// for consecutive tokens of one sequence) that share each read of the keys and
// values; the tiling never changes a result.
// Thread-safety: one call per layer at a time; tiles run on the pool.
#pragma once

#include <cstdint>
#include <span>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace moerack {

struct KvCacheView {
  void* base = nullptr;  // [num_layers][num_blocks][block_size][floats_per_token] elements
  DType dtype = DType::kF32;  // kF32, or kFP8E4M3 (value = fp8 * the tensor's scale)
  int64_t num_blocks = 0;
  int block_size = 0;
  int64_t floats_per_token = 0;  // elements per token slot

  int64_t layer_stride() const { return num_blocks * block_size * floats_per_token; }
  // Element index of a token's slot.
  int64_t SlotIndex(int layer, std::span<const int32_t> block_table, int64_t pos) const {
    const int64_t block = block_table[static_cast<size_t>(pos / block_size)];
    return layer * layer_stride() + (block * block_size + pos % block_size) * floats_per_token;
  }
  // Writes `n` values into a token's slot from element `offset`; an FP8 cache
  // stores E4M3(value / scale), `scale` being the tensor's per-tensor scale
  // (ModelOpt's k_scale / v_scale; ignored by an f32 cache).
  void Store(int layer, std::span<const int32_t> block_table, int64_t pos, int64_t offset,
             const float* src, int64_t n, float scale = 1.0f) const;
  // Pointer to `n` values of a token's slot from element `offset`, as f32: into
  // the cache for an f32 cache, else decoded (fp8 * scale) into `scratch` (n floats).
  const float* Load(int layer, std::span<const int32_t> block_table, int64_t pos, int64_t offset,
                    int64_t n, float* scratch, float scale = 1.0f) const;
  // Asks the CPU to bring the slots of tokens [pos, pos + n) of `layer` into
  // its caches for writing (up to 256 KB), so that a later Store does not
  // wait on memory: a slot last touched long ago (a 4 KB f32 slot of a
  // decoded token) took ~3.5 us to Store cold, ~1% of a decoded token per
  // layer. The models call it before the projections that produce K and V.
  void PrefetchForWrite(int layer, std::span<const int32_t> block_table, int64_t pos,
                        int64_t n) const;
};

// One sequence's share of a batch: `num_tokens` consecutive query rows starting
// at row `first_row`, at positions start_pos, start_pos + 1, ...
struct AttentionSeq {
  int64_t first_row = 0;
  int64_t num_tokens = 0;
  int64_t start_pos = 0;
  std::span<const int32_t> block_table;
};

struct AttentionParams {
  const float* q = nullptr;  // [rows, num_heads * head_dim], row stride q_stride
  int64_t q_stride = 0;
  float* out = nullptr;  // [rows, num_heads * v_head_dim], row stride out_stride
  int64_t out_stride = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;        // query/key dim
  int v_head_dim = 0;      // value dim
  int64_t k_offset = 0;    // where K head 0 starts in a token slot (floats)
  int64_t v_offset = 0;    // where V head 0 starts in a token slot (floats)
  float scale = 1.0f;      // softmax scale applied to q·k
  float k_scale = 1.0f;    // per-tensor scales of K and V in an FP8 cache
  float v_scale = 1.0f;
  int sliding_window = 0;  // 0: unlimited
  int layer = 0;
};

void PagedAttention(const AttentionParams& p, std::span<const AttentionSeq> seqs,
                    const KvCacheView& cache, ThreadPool& pool);

}  // namespace moerack
