// Matrix multiplication with weights in the HF Linear layout: y = x · Wᵀ,
// x [rows, K] f32, W [N, K] in any LinearWeight format (f32, bf16, fp8,
// nvfp4, mxfp4; quantized ones dequantized inside the inner loop),
// y [rows, N] f32. GroupedMatMul runs many independent problems (one per
// expert) as one parallel job: it is the grouped expert GEMM of the MoE layer.
//
// Reduction order: each y[m, n] is a fixed set of SIMD-lane accumulations over K
// (for packed formats over a fixed permutation of K that matches how the packed
// bytes unpack into lanes) followed by a fixed lane reduction and a scalar tail,
// whatever the number of rows, the tiling and the thread count (DESIGN.md
// principle 2). The order depends only on K, the format and the SIMD target.
// Thread-safety: calls are independent; each uses the pool it is given.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "kernels/linear_weight.h"

namespace moerack {

struct GemmProblem {
  const float* x = nullptr;  // [rows, K], row stride x_stride (floats)
  int64_t x_stride = 0;
  int64_t rows = 0;
  LinearWeight w;      // [N, K]
  float* y = nullptr;  // [rows, N], row stride y_stride (floats)
  int64_t y_stride = 0;
};

// Activation precision of the matmuls a thread starts. kF32 (the default) keeps x
// as it is; kBF16 rounds x to bf16 (RNE) first and, on CPUs with AVX512-BF16,
// multiplies with VDPBF16PS for bf16/nvfp4/mxfp4 weights (about twice the
// unpacking throughput); elsewhere the f32 kernel runs on the rounded x.
// kInt8 (W4A8) quantizes x to int8 per 32 values along K for NVFP4/MXFP4
// weights (symmetric, d = amax/127, round half to even: llama.cpp's Q8_0
// activations with an f32 scale) and sums exact integer products per 8
// weights (matmul_int8.cc); other weights see x as it is (f32).
// Models set it for the duration of a forward pass (ActDTypeScope).
enum class ActDType : uint8_t { kF32, kBF16, kInt8 };
class ActDTypeScope {
 public:
  explicit ActDTypeScope(ActDType t);
  ~ActDTypeScope();
  ActDTypeScope(const ActDTypeScope&) = delete;
  ActDTypeScope& operator=(const ActDTypeScope&) = delete;

 private:
  ActDType previous_;
};
// "f32", "bf16" or "int8"; an error naming the flag value otherwise.
StatusOr<ActDType> ParseActDType(const std::string& name);

void MatMul(const GemmProblem& p, ThreadPool& pool);
void GroupedMatMul(std::span<const GemmProblem> problems, ThreadPool& pool);

// Calibration hook: while an observer is set, every matmul first reports the
// max |x| over its input rows with the weight it multiplies (`moerack quantize`
// derives static activation scales, ModelOpt's input_scale, from these). Set it
// only while no matmul runs; Observe is called on the calling thread.
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  virtual void Observe(const LinearWeight& w, float input_amax) = 0;
};
void SetActivationObserver(ActivationObserver* observer);

// Scalar reference: f64 accumulation over LinearWeight::DequantizeRange, for tests.
void MatMulReference(const GemmProblem& p);

// ActDType::kInt8's kernels (FP4 weights only), which give the same bits: the
// portable one, AVX2 and AVX-512 VNNI; MatMul runs the last this CPU supports.
// For tests and benchmarks: the ones this CPU runs, and one of them on one
// thread (CHECK-fails on a kernel the CPU lacks); x[0, K) quantized to int8 and
// back (q · d).
enum class Int8Kernel : uint8_t { kPortable, kAvx2, kAvx512Vnni };
std::vector<Int8Kernel> SupportedInt8Kernels();
const char* Int8KernelName(Int8Kernel k);
void MatMulInt8(const GemmProblem& p, Int8Kernel kernel);
void QuantizeDequantizeInt8(const float* x, int64_t K, float* out);

}  // namespace moerack
