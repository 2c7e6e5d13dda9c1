// Strided 4-D views over raw tensor memory, used by both the CPU and CUDA kernels.
//
// The kernels index through the tensor's own strides, so contiguous, channels-last and
// other strided layouts are read in place without a copy.
#pragma once

#include <c10/macros/Macros.h>
#include <cstdint>

// Unrolls the next loop under nvcc; g++ decides by itself (and would warn on the pragma).
#if defined(__CUDACC__)
#define MEMC_UNROLL _Pragma("unroll")
#else
#define MEMC_UNROLL
#endif

namespace memc {

template <typename T>
struct Strided4d {
  T* data;
  int64_t stride_n, stride_c, stride_y, stride_x;

  C10_HOST_DEVICE C10_ALWAYS_INLINE T& operator()(int64_t n, int64_t c, int64_t y, int64_t x) const {
    return data[n * stride_n + c * stride_c + y * stride_y + x * stride_x];
  }
};

// Index of the nearest pixel inside [0, size - 1]: samples outside the frame take the border.
C10_HOST_DEVICE C10_ALWAYS_INLINE int64_t clamp_index(int64_t index, int64_t size) {
  return index < 0 ? 0 : (index > size - 1 ? size - 1 : index);
}

// Adds `value` to `*target` without synchronisation: for code where one thread owns the target.
struct PlainAdd {
  template <typename T>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void operator()(T* target, T value) const {
    *target += value;
  }
};

}  // namespace memc
