// TensorView: a non-owning view of memory with a shape, row-major strides (in
// elements) and a dtype. Views never copy; whoever made the memory (an mmap'd
// file, an arena, a std::vector) owns it and must outlive the view.
// Thread-safety: a view is a value; concurrent reads of the data are safe.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/check.h"
#include "core/dtype.h"

namespace moerack {

inline constexpr int kMaxDims = 4;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> strides{};  // in elements; for fp4, in elements along the last dim

  TensorView() = default;
  TensorView(void* d, DType t, std::initializer_list<int64_t> dims) : data(d), dtype(t) {
    CHECK_LE(static_cast<int>(dims.size()), kMaxDims);
    for (int64_t n : dims) shape[ndim++] = n;
    SetContiguousStrides();
  }

  void SetContiguousStrides() {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      strides[i] = s;
      s *= shape[i];
    }
  }
  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t nbytes() const { return numel() * DTypeBits(dtype) / 8; }
  bool empty() const { return data == nullptr; }

  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  // Row `i` of the leading dimension, as a view of the remaining dims.
  TensorView Slice0(int64_t i) const {
    CHECK(ndim >= 1 && i >= 0 && i < shape[0]) << "index " << i;
    TensorView v;
    v.dtype = dtype;
    v.ndim = ndim - 1;
    for (int d = 1; d < ndim; ++d) {
      v.shape[d - 1] = shape[d];
      v.strides[d - 1] = strides[d];
    }
    v.data = static_cast<char*>(data) + i * strides[0] * DTypeBits(dtype) / 8;
    return v;
  }
  std::string ShapeString() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

}  // namespace moerack
