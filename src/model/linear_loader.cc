#include "model/linear_loader.h"

#include <cmath>
#include <cstdio>

#include "quant/mxfp4.h"
#include "quant/nvfp4.h"

namespace moerack {

StatusOr<float> ReadScalarF32(const WeightStore& store, const std::string& name) {
  MR_ASSIGN_OR_RETURN(TensorView t, store.Get(name));
  if (t.numel() != 1 || t.ndim > 1 || t.dtype != DType::kF32) {
    return Error("tensor '" + name + "': expected an F32 scalar ([] or [1]), got " +
                 std::string(DTypeName(t.dtype)) + " " + t.ShapeString());
  }
  const float v = *t.as<float>();
  if (!std::isfinite(v) || v <= 0) return Error("tensor '" + name + "': scale must be finite and > 0");
  return v;
}

StatusOr<float> ReadKvScale(const WeightStore& store, const std::string& prefix,
                            const std::string& which) {
  for (const std::string& name : {prefix + which + "_proj." + which + "_scale",
                                  prefix + which + "_scale"}) {
    if (store.Has(name)) return ReadScalarF32(store, name);
  }
  return 1.0f;
}

namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

Status CheckBlock(const std::string& name, int64_t K, int64_t block) {
  if (K % block != 0) {
    return Error("tensor '" + name + "': K = " + std::to_string(K) +
                 " is not a multiple of the block size " + std::to_string(block));
  }
  return Status::Ok();
}

// Block scales the kernels can read: E4M3 bytes positive or zero and not NaN
// (the AVX2 kernels take byte << 20 as f32 bits, which holds for those only;
// ModelOpt and compressed-tensors write no others), E8M0 bytes not NaN.
Status CheckBlockScales(const std::string& name, const TensorView& scale, bool nv) {
  const auto* s = static_cast<const uint8_t*>(scale.data);
  const auto bad = [nv](uint8_t b) {
    return nv ? (b & 0x80) != 0 || (b & 0x7f) == 0x7f : b == kE8M0NaN;
  };
  for (int64_t i = 0; i < scale.numel(); ++i) {
    if (!bad(s[i])) continue;
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x", s[i]);
    return Error("tensor '" + name + "': block scale " + std::to_string(i) + " is " + hex +
                 (nv ? ", a negative or NaN E4M3 scale (NVFP4 block scales are >= 0)"
                     : ", the E8M0 NaN (MXFP4 scales are powers of two)"));
  }
  return Status::Ok();
}

StatusOr<LinearWeight> LoadPackedFp4(const WeightStore& store, const std::string& prefix,
                                     const std::string& packed_name, int64_t N, int64_t K,
                                     bool compressed_tensors) {
  LinearWeight w;
  w.rows = N;
  w.cols = K;
  const std::string scale_name = prefix + ".weight_scale";
  MR_ASSIGN_OR_RETURN(TensorView scale, store.Get(scale_name));
  const bool nv = scale.dtype == DType::kFP8E4M3;
  if (!nv && !(compressed_tensors && (scale.dtype == DType::kU8 || scale.dtype == DType::kFP8E8M0))) {
    return Error("tensor '" + scale_name + "': dtype " + std::string(DTypeName(scale.dtype)) +
                 " is neither F8_E4M3 (NVFP4) nor U8/F8_E8M0 (MXFP4)");
  }
  const int64_t block = nv ? kNvfp4BlockSize : kMxfp4BlockSize;
  MR_RETURN_IF_ERROR(CheckBlock(packed_name, K, block));
  MR_ASSIGN_OR_RETURN(TensorView packed, store.Get(packed_name, {N, K / 2}, {DType::kU8}));
  MR_ASSIGN_OR_RETURN(scale, store.Get(scale_name, {N, K / block}, {scale.dtype}));
  MR_RETURN_IF_ERROR(CheckBlockScales(scale_name, scale, nv));
  w.format = nv ? WeightFormat::kNvfp4 : WeightFormat::kMxfp4;
  w.data = packed.data;
  w.scales = scale.data;
  if (nv && compressed_tensors) {
    MR_ASSIGN_OR_RETURN(w.global_scale, ReadScalarF32(store, prefix + ".weight_global_scale"));
    w.global_divides = true;
    if (store.Has(prefix + ".input_global_scale")) {
      MR_ASSIGN_OR_RETURN(const float ig, ReadScalarF32(store, prefix + ".input_global_scale"));
      w.input_scale = 1.0f / ig;
    }
  } else if (nv) {
    MR_ASSIGN_OR_RETURN(w.global_scale, ReadScalarF32(store, prefix + ".weight_scale_2"));
  }
  return w;
}

}  // namespace

StatusOr<LinearWeight> LoadLinear(const WeightStore& store, const QuantConfig& quant,
                                  const std::string& name, int64_t N, int64_t K) {
  const std::string suffix = ".weight";
  CHECK(name.size() > suffix.size() && name.ends_with(suffix)) << name;
  const std::string prefix = name.substr(0, name.size() - suffix.size());
  StatusOr<LinearWeight> result = [&]() -> StatusOr<LinearWeight> {
    if (!store.Has(name) && store.Has(prefix + ".weight_packed")) {
      return LoadPackedFp4(store, prefix, prefix + ".weight_packed", N, K, true);
    }
    MR_ASSIGN_OR_RETURN(TensorView raw, store.Get(name));
    switch (raw.dtype) {
      case DType::kBF16:
      case DType::kF32: {
        MR_ASSIGN_OR_RETURN(TensorView v, store.Get(name, {N, K}, {raw.dtype}));
        return LinearWeight(v);
      }
      case DType::kU8:
        return LoadPackedFp4(store, prefix, name, N, K, false);
      case DType::kFP8E4M3: {
        MR_ASSIGN_OR_RETURN(TensorView v, store.Get(name, {N, K}, {DType::kFP8E4M3}));
        LinearWeight w;
        w.format = WeightFormat::kFp8;
        w.rows = N;
        w.cols = K;
        w.data = v.data;
        if (store.Has(name + "_scale_inv")) {  // DeepSeek block FP8
          w.block_n = quant.fp8_block_n;
          w.block_k = quant.fp8_block_k;
          MR_ASSIGN_OR_RETURN(TensorView s, store.Get(name + "_scale_inv",
                                                      {CeilDiv(N, w.block_n), CeilDiv(K, w.block_k)},
                                                      {DType::kF32}));
          w.scales = s.data;
        } else {
          const std::string scale_name = prefix + ".weight_scale";
          MR_ASSIGN_OR_RETURN(TensorView s, store.Get(scale_name));
          if (s.dtype != DType::kF32)
            return Error("tensor '" + scale_name + "': FP8 scales must be F32");
          if (s.numel() == 1) {
            w.block_n = N;
            w.block_k = K;
          } else if (s.numel() == N && (s.ndim == 1 || (s.ndim == 2 && s.shape[1] == 1))) {
            w.block_n = 1;
            w.block_k = K;
          } else {
            return Error("tensor '" + scale_name + "': shape " + s.ShapeString() +
                         " is neither per-tensor ([] / [1]) nor per-channel ([N] / [N, 1])");
          }
          w.scales = s.data;
        }
        if (store.Has(prefix + ".input_scale")) {
          MR_ASSIGN_OR_RETURN(w.input_scale, ReadScalarF32(store, prefix + ".input_scale"));
        }
        return w;
      }
      case DType::kF16:
      case DType::kFP8E5M2:
      case DType::kFP8E8M0:
      case DType::kFP4E2M1:
      case DType::kI32:
      case DType::kI64:
        return Error("tensor '" + name + "' in " + store.FileOf(name) + ": dtype " +
                     std::string(DTypeName(raw.dtype)) +
                     ", expected BF16, F32, F8_E4M3 (with scales) or U8 (packed NVFP4/MXFP4)");
    }
    return Error("tensor '" + name + "': unknown dtype");
  }();
  if (!result.ok()) return result;
  LinearWeight& w = result.value();
  if (w.format == WeightFormat::kNvfp4 && store.Has(prefix + ".input_scale")) {
    MR_ASSIGN_OR_RETURN(w.input_scale, ReadScalarF32(store, prefix + ".input_scale"));
  }
  const std::string invalid = ValidateLinearWeight(w);
  if (!invalid.empty()) return Error("tensor '" + name + "': " + invalid);
  return result;
}

}  // namespace moerack
