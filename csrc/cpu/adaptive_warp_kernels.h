// The vectorised CPU kernels of adaptive_warp (csrc/cpu/vectorized/adaptive_warp_kernels.cpp),
// declared once per CPU capability (see cpu/capability.h), and the views they work on.
#pragma once

#include <ATen/OpMathType.h>

#include <cstdint>

#include "cpu/capability.h"
#include "memc/strided.h"

namespace memc {

// The tensors of one adaptive_warp call. `image` is read in opmath_t (a float32 copy for half
// types, converted once rather than at each of its K*K reads) and its (H, W) plane offsets fit
// the vector index type (int32 for float32 and the half types, int64 for float64), so that taps
// are gathered with 32-bit indices. Views a pass does not use are left null.
template <typename scalar_t>
struct AdaptiveWarpViews {
  using opmath_t = at::opmath_type<scalar_t>;
  Strided4d<const opmath_t> image;
  Strided4d<const scalar_t> flow, kernel, grad_output;
  Strided4d<scalar_t> output, grad_flow, grad_kernel;
  int64_t channels, height, width;
  int kernel_size;
};

// Rows are numbered n * height + y.
//   adaptive_warp_forward_rows: output of rows [row_begin, row_end).
//   adaptive_warp_kernel_flow_grad_rows: grad_flow and grad_kernel of rows [row_begin, row_end).
//   adaptive_warp_image_grad_row: adds what row (n, y)'s pixels scatter to the image gradient
//     of channels [channel_begin, channel_end) into grad_image (an opmath_t buffer whose row 0 is
//     the image's row row_origin, holding every row the pixels reach; adding to each element in
//     the order of a pixel-by-pixel loop, each pixel's taps in tap order, as
//     adaptive_warp_image_grad_pixel); with kernel_flow_grads, also writes the row's grad_flow and
//     grad_kernel (those views not null), as adaptive_warp_kernel_flow_grad_rows: one pass over
//     the row's flow, kernel and output gradient instead of two.
#define MEMC_DECLARE_ADAPTIVE_WARP_KERNELS(CAPABILITY)                                                              \
  namespace CAPABILITY {                                                                                           \
  template <typename scalar_t>                                                                                     \
  void adaptive_warp_forward_rows(const AdaptiveWarpViews<scalar_t>& views, int64_t row_begin, int64_t row_end);  \
  template <typename scalar_t>                                                                                     \
  void adaptive_warp_kernel_flow_grad_rows(const AdaptiveWarpViews<scalar_t>& views, int64_t row_begin,           \
                                           int64_t row_end);                                                       \
  template <typename scalar_t>                                                                                     \
  void adaptive_warp_image_grad_row(const AdaptiveWarpViews<scalar_t>& views,                                      \
                                    const Strided4d<at::opmath_type<scalar_t>>& grad_image, int64_t row_origin,    \
                                    int64_t n, int64_t channel_begin, int64_t channel_end, int64_t y,              \
                                    bool kernel_flow_grads);                                                       \
  }

MEMC_FOR_EACH_CPU_CAPABILITY(MEMC_DECLARE_ADAPTIVE_WARP_KERNELS)

#undef MEMC_DECLARE_ADAPTIVE_WARP_KERNELS

}  // namespace memc
