// The per-pixel math of the bicubic warp, compiled by both g++ (CPU kernels) and nvcc (CUDA
// kernels): adaptive_warp with K = 4 and the coefficients that make it bicubic, computed from the
// flow instead of read from a (B, 16, H, W) kernel tensor.
//
// Validity, window and clamping are adaptive_warp's (memc/adaptive_warp.h, K = 4): for a valid
// pixel with target x' = x + f, (i, j) = floor(x') and (a, b) = x' - (i, j), the window has
// columns i-1 .. i+2 and rows j-1 .. j+2, its samples clamped to the border; an invalid pixel
// copies the input pixel at x. The weight of tap (r, c) is cubic(b)[r] * cubic(a)[c], Keys' cubic
// convolution weights (a = -0.5) of the offsets -1, 0, 1, 2 (see cubic_weights): the same
// function as adaptive_warp's quadrant weights times the bicubic coefficients (which are these
// weights divided by the quadrant factors), computed separably, rows of columns.
#pragma once

#include <c10/macros/Macros.h>

#include "memc/adaptive_warp.h"
#include "memc/strided.h"

namespace memc {

constexpr int kBicubicSize = 4;

// Keys' cubic convolution weights (a = -0.5) of the samples at offsets -1, 0, 1, 2 from floor(x')
// for the fraction `frac` = x' - floor(x') in [0, 1], with g = 1 - frac:
//   -frac g^2 / 2,  g (1 + frac (1 - 1.5 frac)),  frac (1 + g (1 - 1.5 g)),  -frac^2 g / 2
// (each of Keys' polynomials factored; they sum to 1, and frac = 0 gives (0, 1, 0, 0)). T is the
// arithmetic type or a SIMD vector of it (lane by lane).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void cubic_weights(T frac, T (&weights)[kBicubicSize]) {
  const T g = T(1) - frac;
  const T half_frac_g = T(0.5) * frac * g;
  weights[0] = -half_frac_g * g;
  weights[1] = g * (T(1) + frac * (T(1) - T(1.5) * frac));
  weights[2] = frac * (T(1) + g * (T(1) - T(1.5) * g));
  weights[3] = -half_frac_g * frac;
}

// The window of pixel (n, y, x) with its clamped rows and columns and per-axis weights.
template <typename opmath_t>
struct BicubicWindow {
  bool valid;
  int64_t rows[kBicubicSize];
  int64_t cols[kBicubicSize];
  opmath_t weight_y[kBicubicSize];
  opmath_t weight_x[kBicubicSize];
};

template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE BicubicWindow<opmath_t> locate_bicubic_window(
    const Strided4d<const scalar_t>& flow, int64_t n, int64_t y, int64_t x, int64_t height, int64_t width) {
  BicubicWindow<opmath_t> result;
  const auto window = locate_pixel_window<kBicubicSize, scalar_t, opmath_t>(flow, n, y, x, height, width);
  result.valid = window.valid;
  if (window.valid) {
    clamp_window<kBicubicSize>(window, height, width, result.rows, result.cols);
    cubic_weights(window.frac_y, result.weight_y);
    cubic_weights(window.frac_x, result.weight_x);
  }
  return result;
}

// The bicubic sums of `LANES` channels at one window, with the per-axis weights of
// cubic_weights: each row r of the window sums weight_x[c] * sample(r, c, j) over c in order,
// from 0, and sums[j] adds weight_y[r] times channel j's row sums over r in order, from 0. T is
// the arithmetic type or a SIMD vector of it (each lane a pixel: the CPU's vectorised kernel,
// which so computes this very order of operations, bit for bit; the CUDA kernel uses one lane,
// in the same order, with the multiply-adds nvcc fuses).
template <int LANES, typename T, typename Sample>
C10_HOST_DEVICE C10_ALWAYS_INLINE void bicubic_window_sums(const T (&weight_y)[kBicubicSize],
                                                           const T (&weight_x)[kBicubicSize], const Sample& sample,
                                                           T (&sums)[LANES]) {
MEMC_UNROLL
  for (int j = 0; j < LANES; ++j) {
    sums[j] = T(0);
  }
MEMC_UNROLL
  for (int r = 0; r < kBicubicSize; ++r) {
    T row_sums[LANES];
MEMC_UNROLL
    for (int j = 0; j < LANES; ++j) {
      row_sums[j] = T(0);
    }
MEMC_UNROLL
    for (int c = 0; c < kBicubicSize; ++c) {
MEMC_UNROLL
      for (int j = 0; j < LANES; ++j) {
        row_sums[j] += weight_x[c] * sample(r, c, j);
      }
    }
MEMC_UNROLL
    for (int j = 0; j < LANES; ++j) {
      sums[j] += weight_y[r] * row_sums[j];
    }
  }
}

// The bicubic sum of one channel plane read through strides.
template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE opmath_t bicubic_sum(const BicubicWindow<opmath_t>& window, const scalar_t* plane,
                                                       int64_t stride_y, int64_t stride_x) {
  opmath_t sum[1];
  bicubic_window_sums<1>(
      window.weight_y, window.weight_x,
      [&](int r, int c, int) {
        return static_cast<opmath_t>(plane[window.rows[r] * stride_y + window.cols[c] * stride_x]);
      },
      sum);
  return sum[0];
}

// Forward: output(n, :, y, x) for every channel.
template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void bicubic_warp_forward_pixel(
    const Strided4d<const scalar_t>& image, const Strided4d<const scalar_t>& flow, const Strided4d<scalar_t>& output,
    int64_t channels, int64_t height, int64_t width, int64_t n, int64_t y, int64_t x) {
  const auto window = locate_bicubic_window<scalar_t, opmath_t>(flow, n, y, x, height, width);
  if (!window.valid) {
    for (int64_t ch = 0; ch < channels; ++ch) {
      output(n, ch, y, x) = image(n, ch, y, x);
    }
    return;
  }
  for (int64_t ch = 0; ch < channels; ++ch) {
    output(n, ch, y, x) =
        static_cast<scalar_t>(bicubic_sum(window, &image(n, ch, 0, 0), image.stride_y, image.stride_x));
  }
}

}  // namespace memc
