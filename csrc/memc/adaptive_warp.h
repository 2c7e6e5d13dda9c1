// The per-pixel math of the adaptive warping layer, compiled by both g++ (CPU kernels) and
// nvcc (CUDA kernels), so that both backends compute the same function: the same branches and
// the same sums in the same order (nvcc may fuse a multiply and add, so the last bits can differ).
//
// For output pixel x = (x, y) with flow f = (f_x, f_y) and target x' = x + f:
//   * valid when x' lies in [0, W-1] x [0, H-1], |f_x| < W/2 and |f_y| < H/2;
//   * (i, j) = floor(x'), (a, b) = x' - (i, j);
//   * the K x K window has columns i+1-K/2 .. i+K/2 and rows j+1-K/2 .. j+K/2, its samples
//     clamped to the border; tap t = (row - first row) * K + (column - first column);
//   * the taps in the left half (columns <= i) are weighted by 1-a, the right half by a, the top
//     half (rows <= j) by 1-b, the bottom half by b, times the learned kernel coefficient;
//   * output = sum over taps of weight * image sample.
// An invalid pixel copies the input pixel at x itself.
#pragma once

#include <c10/macros/Macros.h>
#include <cmath>

#include "memc/strided.h"

namespace memc {

// Unrolls the next loop over a window's taps completely, on every compiler that takes a pragma for
// it. g++ leaves loops with large bodies (a vector of pixels per tap) rolled, which keeps a
// window's K*K sums in memory, indexed by the loop counter, rather than in registers.
#if defined(__CUDACC__) || defined(__clang__)
#define MEMC_UNROLL_TAPS _Pragma("unroll")
#elif defined(__GNUC__)
#define MEMC_UNROLL_TAPS _Pragma("GCC unroll 16")
#else
#define MEMC_UNROLL_TAPS
#endif

template <typename T>
struct WarpWindow {
  bool valid;
  int64_t first_row, first_col;  // top-left tap, before clamping to the frame
  T frac_y, frac_x;              // b and a: position of the target inside its pixel
};

// The bounds a target and a flow must keep, in the arithmetic type T.
template <typename T>
struct WarpLimits {
  T last_row, last_col;         // H - 1, W - 1
  T half_height, half_width;    // H / 2, W / 2
};

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE WarpLimits<T> warp_limits(int64_t height, int64_t width) {
  return WarpLimits<T>{T(height - 1), T(width - 1), T(0.5) * T(height), T(0.5) * T(width)};
}

// Whether target (target_y, target_x) = pixel + (flow_y, flow_x) is warped: inside the frame and
// a flow under half the frame size. V is the scalar T (the result converts to bool) or a SIMD
// vector of T, whose comparisons give lane masks that & combines, so that the CPU's vectorised
// kernels apply this very rule lane by lane. Every comparison is false for NaN, so a NaN flow
// lands in the copy-through branch.
template <typename V, typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE auto window_is_valid(const V& target_y, const V& target_x, const V& flow_y, const V& flow_x,
                                                       const WarpLimits<T>& limits) {
  const auto inside = (target_x >= V(T(0))) & (target_x <= V(limits.last_col)) & (target_y >= V(T(0))) &
                      (target_y <= V(limits.last_row));
  const auto small = (flow_x < V(limits.half_width)) & (flow_x > V(-limits.half_width)) &
                     (flow_y < V(limits.half_height)) & (flow_y > V(-limits.half_height));
  return inside & small;
}

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE WarpWindow<T> locate_window(
    int64_t y, int64_t x, T flow_y, T flow_x, int64_t height, int64_t width, int kernel_size) {
  WarpWindow<T> window{false, 0, 0, T(0), T(0)};
  const T target_y = T(y) + flow_y;
  const T target_x = T(x) + flow_x;
  if (!window_is_valid(target_y, target_x, flow_y, flow_x, warp_limits<T>(height, width))) {
    return window;
  }
  const T floor_y = ::floor(target_y);
  const T floor_x = ::floor(target_x);
  window.valid = true;
  window.first_row = static_cast<int64_t>(floor_y) + 1 - kernel_size / 2;
  window.first_col = static_cast<int64_t>(floor_x) + 1 - kernel_size / 2;
  window.frac_y = target_y - floor_y;
  window.frac_x = target_x - floor_x;
  return window;
}

// Bilinear weight of the window half that tap offset `offset` (0 .. K-1) lies in. This and the
// tap-weight and gradient helpers below take T a scalar or a SIMD vector of scalars (lane by lane).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE T bilinear_weight(int offset, int kernel_size, T frac) {
  return offset < kernel_size / 2 ? T(1) - frac : frac;
}

// d(bilinear_weight)/d(frac): -1 in the first half, +1 in the second.
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE T bilinear_weight_slope(int offset, int kernel_size) {
  return offset < kernel_size / 2 ? T(-1) : T(1);
}

// The clamped rows and columns of a window, and its taps' combined weights
// (learned coefficient times bilinear weight).
template <int K, typename opmath_t>
struct WindowTaps {
  int64_t rows[K];
  int64_t cols[K];
  opmath_t weight[K * K];
};

template <int K, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void clamp_window(
    const WarpWindow<opmath_t>& window, int64_t height, int64_t width, int64_t (&rows)[K], int64_t (&cols)[K]) {
MEMC_UNROLL
  for (int r = 0; r < K; ++r) {
    rows[r] = clamp_index(window.first_row + r, height);
    cols[r] = clamp_index(window.first_col + r, width);
  }
}

// Weight of tap (r, c): its learned coefficient times the bilinear weights of its row and column.
template <int K, typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE T tap_weight(T coefficient, int r, int c, T frac_y, T frac_x) {
  return coefficient * bilinear_weight(r, K, frac_y) * bilinear_weight(c, K, frac_x);
}

template <int K, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE opmath_t tap_weight(opmath_t coefficient, int r, int c,
                                                      const WarpWindow<opmath_t>& window) {
  return tap_weight<K>(coefficient, r, c, window.frac_y, window.frac_x);
}

template <int K, typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void gather_window_taps(
    const WarpWindow<opmath_t>& window, const Strided4d<const scalar_t>& kernel, int64_t n, int64_t y,
    int64_t x, int64_t height, int64_t width, WindowTaps<K, opmath_t>& taps) {
  clamp_window<K>(window, height, width, taps.rows, taps.cols);
MEMC_UNROLL
  for (int r = 0; r < K; ++r) {
MEMC_UNROLL
    for (int c = 0; c < K; ++c) {
      taps.weight[r * K + c] = tap_weight<K>(static_cast<opmath_t>(kernel(n, r * K + c, y, x)), r, c, window);
    }
  }
}

template <int K, typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE WarpWindow<opmath_t> locate_pixel_window(
    const Strided4d<const scalar_t>& flow, int64_t n, int64_t y, int64_t x, int64_t height, int64_t width) {
  return locate_window<opmath_t>(y, x, static_cast<opmath_t>(flow(n, 1, y, x)),
                                 static_cast<opmath_t>(flow(n, 0, y, x)), height, width, K);
}

// The forward sums of `LANES` channels at one window: sums[j] adds weight(t) * sample(r, c, j) over
// the taps t = r * K + c in tap order, starting from 0, for channel j of the group. T is the
// arithmetic type or a SIMD vector of it (then each lane is a pixel). The channels' sums are
// independent chains of adds, so a CPU overlaps them instead of waiting on each add of a single
// channel (the CUDA kernel uses one lane).
template <int LANES, int K, typename T, typename Weight, typename Sample>
C10_HOST_DEVICE C10_ALWAYS_INLINE void window_sums(const Weight& weight, const Sample& sample, T (&sums)[LANES]) {
MEMC_UNROLL
  for (int j = 0; j < LANES; ++j) {
    sums[j] = T(0);
  }
MEMC_UNROLL
  for (int r = 0; r < K; ++r) {
MEMC_UNROLL
    for (int c = 0; c < K; ++c) {
      const T tap = weight(r * K + c);
MEMC_UNROLL
      for (int j = 0; j < LANES; ++j) {
        sums[j] += tap * sample(r, c, j);
      }
    }
  }
}

// window_sums over image samples read through strides: channel j's sample of tap (r, c) is
// image[rows[r] * stride_y + cols[c] * stride_x + j * stride_c], its weight weight[t * weight_stride].
template <int LANES, int K, typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void window_sums(const int64_t (&rows)[K], const int64_t (&cols)[K],
                                                   const opmath_t* weight, int64_t weight_stride,
                                                   const scalar_t* image, int64_t stride_c, int64_t stride_y,
                                                   int64_t stride_x, opmath_t (&sums)[LANES]) {
  window_sums<LANES, K>([&](int t) { return weight[t * weight_stride]; },
                        [&](int r, int c, int j) {
                          return static_cast<opmath_t>(image[rows[r] * stride_y + cols[c] * stride_x + j * stride_c]);
                        },
                        sums);
}

// Forward: output(n, :, y, x) for every channel.
template <int K, typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void adaptive_warp_forward_pixel(
    const Strided4d<const scalar_t>& image, const Strided4d<const scalar_t>& flow,
    const Strided4d<const scalar_t>& kernel, const Strided4d<scalar_t>& output, int64_t channels,
    int64_t height, int64_t width, int64_t n, int64_t y, int64_t x) {
  const auto window = locate_pixel_window<K, scalar_t, opmath_t>(flow, n, y, x, height, width);
  if (!window.valid) {
    for (int64_t ch = 0; ch < channels; ++ch) {
      output(n, ch, y, x) = image(n, ch, y, x);
    }
    return;
  }
  WindowTaps<K, opmath_t> taps;
  gather_window_taps<K>(window, kernel, n, y, x, height, width, taps);
  for (int64_t ch = 0; ch < channels; ++ch) {
    opmath_t sum[1];
    window_sums<1>(taps.rows, taps.cols, taps.weight, 1, &image(n, ch, 0, 0), image.stride_c, image.stride_y,
                   image.stride_x, sum);
    output(n, ch, y, x) = static_cast<scalar_t>(sum[0]);
  }
}

// Channel sums of grad_output times the image sample at each tap of a window: products[t] adds
// grad(ch) * sample(r, c, ch) over the channels in order, starting from 0, for t = r * K + c.
// T is the arithmetic type or a SIMD vector of it (then each lane is a pixel).
template <int K, typename T, typename Grad, typename Sample>
C10_HOST_DEVICE C10_ALWAYS_INLINE void window_tap_products(int64_t channels, const Grad& grad, const Sample& sample,
                                                           T (&products)[K * K]) {
MEMC_UNROLL
  for (int t = 0; t < K * K; ++t) {
    products[t] = T(0);
  }
  for (int64_t ch = 0; ch < channels; ++ch) {
    const T g = grad(ch);
    const auto add_tap = [&](int r, int c) { products[r * K + c] += g * sample(r, c, ch); };
    if constexpr (K <= 4) {
      // Up to 16 sums, which stay in registers where the loops are unrolled.
MEMC_UNROLL_TAPS
      for (int r = 0; r < K; ++r) {
MEMC_UNROLL_TAPS
        for (int c = 0; c < K; ++c) {
          add_tap(r, c);
        }
      }
    } else {
MEMC_UNROLL
      for (int r = 0; r < K; ++r) {
MEMC_UNROLL
        for (int c = 0; c < K; ++c) {
          add_tap(r, c);
        }
      }
    }
  }
}

// window_tap_products over tensors read through strides: channel ch's gradient is
// grad[ch * grad_stride_c], its sample of tap (r, c) image[ch * stride_c + rows[r] * stride_y +
// cols[c] * stride_x].
template <int K, typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void window_tap_products(const int64_t (&rows)[K], const int64_t (&cols)[K],
                                                           const scalar_t* grad, int64_t grad_stride_c,
                                                           const scalar_t* image, int64_t stride_c, int64_t stride_y,
                                                           int64_t stride_x, int64_t channels,
                                                           opmath_t (&products)[K * K]) {
  window_tap_products<K>(
      channels, [&](int64_t ch) { return static_cast<opmath_t>(grad[ch * grad_stride_c]); },
      [&](int r, int c, int64_t ch) {
        return static_cast<opmath_t>(image[ch * stride_c + rows[r] * stride_y + cols[c] * stride_x]);
      },
      products);
}

// The gradients that tap (r, c) with channel-summed product `product` (see window_tap_products)
// contributes, in two parts so that a backward asked for one of them skips the other:
// tap_kernel_grad returns its kernel coefficient's gradient; add_tap_flow_grads adds its terms of
// the flow gradients to grad_flow_x and grad_flow_y.
template <int K, typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE T tap_kernel_grad(T product, int r, int c, T frac_y, T frac_x) {
  return bilinear_weight(r, K, frac_y) * bilinear_weight(c, K, frac_x) * product;
}

template <int K, typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void add_tap_flow_grads(T coefficient, T product, int r, int c, T frac_y,
                                                          T frac_x, T& grad_flow_x, T& grad_flow_y) {
  const T weight_y = bilinear_weight(r, K, frac_y);
  const T slope_y = bilinear_weight_slope<T>(r, K);
  const T weight_x = bilinear_weight(c, K, frac_x);
  const T slope_x = bilinear_weight_slope<T>(c, K);
  grad_flow_x += coefficient * weight_y * slope_x * product;
  grad_flow_y += coefficient * slope_y * weight_x * product;
}

// Backward, the part owned by the pixel: gradients of its K*K kernel coefficients and its flow.
// With P_t = sum over channels of grad_output * image sample at tap t:
//   d/d kernel_t = bilinear_y * bilinear_x * P_t
//   d/d flow_x  = sum_t kernel_t * bilinear_y * slope_x * P_t   (a moves with f_x, i does not)
//   d/d flow_y  = sum_t kernel_t * slope_y * bilinear_x * P_t
// An invalid pixel copies the image, which does not depend on flow or kernel: both are zero.
// A view with a null data pointer is a gradient not asked for, neither computed nor written.
template <int K, typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void adaptive_warp_kernel_flow_grad_pixel(
    const Strided4d<const scalar_t>& grad_output, const Strided4d<const scalar_t>& image,
    const Strided4d<const scalar_t>& flow, const Strided4d<const scalar_t>& kernel,
    const Strided4d<scalar_t>& grad_flow, const Strided4d<scalar_t>& grad_kernel, int64_t channels,
    int64_t height, int64_t width, int64_t n, int64_t y, int64_t x) {
  const bool want_flow = grad_flow.data != nullptr, want_kernel = grad_kernel.data != nullptr;
  const auto window = locate_pixel_window<K, scalar_t, opmath_t>(flow, n, y, x, height, width);
  if (!window.valid) {
    if (want_flow) {
      grad_flow(n, 0, y, x) = scalar_t(0);
      grad_flow(n, 1, y, x) = scalar_t(0);
    }
    if (want_kernel) {
      for (int t = 0; t < K * K; ++t) {
        grad_kernel(n, t, y, x) = scalar_t(0);
      }
    }
    return;
  }
  int64_t rows[K];
  int64_t cols[K];
  clamp_window<K>(window, height, width, rows, cols);
  opmath_t tap_products[K * K];
  window_tap_products<K>(rows, cols, &grad_output(n, 0, y, x), grad_output.stride_c, &image(n, 0, 0, 0),
                         image.stride_c, image.stride_y, image.stride_x, channels, tap_products);
  opmath_t grad_flow_x = 0;
  opmath_t grad_flow_y = 0;
MEMC_UNROLL
  for (int r = 0; r < K; ++r) {
MEMC_UNROLL
    for (int c = 0; c < K; ++c) {
      const opmath_t product = tap_products[r * K + c];
      if (want_kernel) {
        grad_kernel(n, r * K + c, y, x) =
            static_cast<scalar_t>(tap_kernel_grad<K>(product, r, c, window.frac_y, window.frac_x));
      }
      if (want_flow) {
        add_tap_flow_grads<K>(static_cast<opmath_t>(kernel(n, r * K + c, y, x)), product, r, c, window.frac_y,
                              window.frac_x, grad_flow_x, grad_flow_y);
      }
    }
  }
  if (want_flow) {
    grad_flow(n, 0, y, x) = static_cast<scalar_t>(grad_flow_x);
    grad_flow(n, 1, y, x) = static_cast<scalar_t>(grad_flow_y);
  }
}

// Adds grad * weight[t * weight_stride] to the gradient plane `target` at each tap t of a window
// with clamped rows and columns `rows`, `cols` (or their offsets, with unit strides), in tap order.
template <int K, typename index_t, typename opmath_t, typename AddOp>
C10_HOST_DEVICE C10_ALWAYS_INLINE void scatter_window(const index_t (&rows)[K], const index_t (&cols)[K],
                                                      const opmath_t* weight, int64_t weight_stride, opmath_t grad,
                                                      opmath_t* target, int64_t stride_y, int64_t stride_x,
                                                      AddOp add) {
MEMC_UNROLL
  for (int r = 0; r < K; ++r) {
    opmath_t* row = target + rows[r] * stride_y;
MEMC_UNROLL
    for (int c = 0; c < K; ++c) {
      add(row + cols[c] * stride_x, weight[(r * K + c) * weight_stride] * grad);
    }
  }
}

// Backward, the scattered part: pixel (y, x) adds grad_output * tap weight to the image gradient
// at each of its taps (or grad_output to its own position when invalid), for channels
// [channel_begin, channel_end). `add` is a plain add where one thread owns the gradient plane and
// an atomic add where pixels of one plane run concurrently.
template <int K, typename scalar_t, typename opmath_t, typename AddOp>
C10_HOST_DEVICE C10_ALWAYS_INLINE void adaptive_warp_image_grad_pixel(
    const Strided4d<const scalar_t>& grad_output, const Strided4d<const scalar_t>& flow,
    const Strided4d<const scalar_t>& kernel, const Strided4d<opmath_t>& grad_image,
    int64_t channel_begin, int64_t channel_end, int64_t height, int64_t width, int64_t n, int64_t y,
    int64_t x, AddOp add) {
  const auto window = locate_pixel_window<K, scalar_t, opmath_t>(flow, n, y, x, height, width);
  if (!window.valid) {
    for (int64_t ch = channel_begin; ch < channel_end; ++ch) {
      add(&grad_image(n, ch, y, x), static_cast<opmath_t>(grad_output(n, ch, y, x)));
    }
    return;
  }
  WindowTaps<K, opmath_t> taps;
  gather_window_taps<K>(window, kernel, n, y, x, height, width, taps);
  for (int64_t ch = channel_begin; ch < channel_end; ++ch) {
    scatter_window<K>(taps.rows, taps.cols, taps.weight, 1, static_cast<opmath_t>(grad_output(n, ch, y, x)),
                      &grad_image(n, ch, 0, 0), grad_image.stride_y, grad_image.stride_x, add);
  }
}

}  // namespace memc
