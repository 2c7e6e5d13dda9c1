// The vectorised CPU kernel of the bicubic warp (csrc/cpu/vectorized/bicubic_warp_kernels.cpp),
// declared once per CPU capability (see cpu/capability.h), and the views it works on.
#pragma once

#include <ATen/OpMathType.h>

#include <cstdint>

#include "cpu/capability.h"
#include "memc/strided.h"

namespace memc {

// The tensors of one bicubic_warp call. `image` is read in opmath_t (a float32 copy for half
// types) and its (H, W) plane offsets fit the vector index type (see cpu/opmath_image.h).
template <typename scalar_t>
struct BicubicWarpViews {
  using opmath_t = at::opmath_type<scalar_t>;
  Strided4d<const opmath_t> image;
  Strided4d<const scalar_t> flow;
  Strided4d<scalar_t> output;
  int64_t channels, height, width;
};

// bicubic_warp_forward_rows: the output of rows [row_begin, row_end), numbered n * height + y.
#define MEMC_DECLARE_BICUBIC_WARP_KERNELS(CAPABILITY)                                                      \
  namespace CAPABILITY {                                                                                 \
  template <typename scalar_t>                                                                           \
  void bicubic_warp_forward_rows(const BicubicWarpViews<scalar_t>& views, int64_t row_begin, int64_t row_end); \
  }

MEMC_FOR_EACH_CPU_CAPABILITY(MEMC_DECLARE_BICUBIC_WARP_KERNELS)

#undef MEMC_DECLARE_BICUBIC_WARP_KERNELS

}  // namespace memc
