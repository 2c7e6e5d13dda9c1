// CPU kernels of the adaptive warping layer: loops over pixels calling the shared math in
// memc/adaptive_warp.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "common.h"
#include "cpu/parallel.h"
#include "memc/adaptive_warp.h"

namespace memc {
namespace {

// Pixels of a row handled together: their tap weights are gathered first, one kernel plane at a
// time.
constexpr int64_t kChunk = 64;

// Locates the windows of pixels x0 .. x0+count-1 of row (n, y) and computes their tap weights,
// weights[t][i], one kernel plane at a time: reading the K*K planes pixel by pixel touches K*K
// lines a multiple of 4 KiB apart, which share one set of the L1 cache and evict each other
// before the next pixel reuses them.
template <int K, typename scalar_t, typename opmath_t>
C10_ALWAYS_INLINE void locate_chunk(const Strided4d<const scalar_t>& flow, const Strided4d<const scalar_t>& kernel,
                                    int64_t height, int64_t width, int64_t n, int64_t y, int64_t x0, int64_t count,
                                    WarpWindow<opmath_t> (&windows)[kChunk], opmath_t (&weights)[K * K][kChunk]) {
  for (int64_t i = 0; i < count; ++i) {
    windows[i] = locate_pixel_window<K, scalar_t, opmath_t>(flow, n, y, x0 + i, height, width);
  }
  for (int r = 0; r < K; ++r) {
    for (int c = 0; c < K; ++c) {
      const scalar_t* coefficients = &kernel(n, r * K + c, y, x0);
      for (int64_t i = 0; i < count; ++i) {
        weights[r * K + c][i] =
            tap_weight<K>(static_cast<opmath_t>(coefficients[i * kernel.stride_x]), r, c, windows[i]);
      }
    }
  }
}

// Writes output channels ch .. ch+LANES-1 of pixel (n, y, x) from its window's clamped rows and
// columns and its tap weights, weight[t * kChunk].
template <int LANES, int K, typename scalar_t, typename opmath_t>
C10_ALWAYS_INLINE void warp_channels(const int64_t (&rows)[K], const int64_t (&cols)[K], const opmath_t* weight,
                                     const Strided4d<const scalar_t>& image, const Strided4d<scalar_t>& output,
                                     int64_t n, int64_t ch, int64_t y, int64_t x) {
  opmath_t sums[LANES];
  window_sums<LANES>(rows, cols, weight, kChunk, &image(n, ch, 0, 0), image.stride_c, image.stride_y,
                     image.stride_x, sums);
  for (int j = 0; j < LANES; ++j) {
    output(n, ch + j, y, x) = static_cast<scalar_t>(sums[j]);
  }
}

// The forward of one image row, computing what adaptive_warp_forward_pixel does, bit for bit, in
// an order that suits a CPU:
//   * the tap weights of a chunk of pixels are computed one kernel plane at a time (locate_chunk);
//   * the channels are summed four at a time: one channel's sum is a chain of K*K dependent adds,
//     and independent chains keep the CPU busy.
template <int K, typename scalar_t, typename opmath_t>
void adaptive_warp_forward_row(const Strided4d<const scalar_t>& image, const Strided4d<const scalar_t>& flow,
                               const Strided4d<const scalar_t>& kernel, const Strided4d<scalar_t>& output,
                               int64_t channels, int64_t height, int64_t width, int64_t n, int64_t y) {
  constexpr int kLanes = 4;
  WarpWindow<opmath_t> windows[kChunk];
  opmath_t weights[K * K][kChunk];
  for (int64_t x0 = 0; x0 < width; x0 += kChunk) {
    const int64_t count = std::min(kChunk, width - x0);
    locate_chunk<K>(flow, kernel, height, width, n, y, x0, count, windows, weights);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t x = x0 + i;
      if (!windows[i].valid) {
        for (int64_t ch = 0; ch < channels; ++ch) {
          output(n, ch, y, x) = image(n, ch, y, x);
        }
        continue;
      }
      int64_t rows[K], cols[K];
      clamp_window<K>(windows[i], height, width, rows, cols);
      const opmath_t* weight = &weights[0][i];
      int64_t ch = 0;
      for (; ch + kLanes <= channels; ch += kLanes) {
        warp_channels<kLanes>(rows, cols, weight, image, output, n, ch, y, x);
      }
      switch (channels - ch) {
        case 3: warp_channels<3>(rows, cols, weight, image, output, n, ch, y, x); break;
        case 2: warp_channels<2>(rows, cols, weight, image, output, n, ch, y, x); break;
        case 1: warp_channels<1>(rows, cols, weight, image, output, n, ch, y, x); break;
        default: break;
      }
    }
  }
}

// The kernel and flow gradients of one image row, computing what
// adaptive_warp_kernel_flow_grad_pixel does, bit for bit: the tap products of a chunk of pixels
// are summed pixel by pixel, then the K*K kernel gradient planes are written (and read) one plane
// at a time, for the same reason as in locate_chunk. Each pixel's flow gradients still add the
// taps in tap order.
template <int K, typename scalar_t, typename opmath_t>
void adaptive_warp_kernel_flow_grad_row(const Strided4d<const scalar_t>& grad_output,
                                        const Strided4d<const scalar_t>& image, const Strided4d<const scalar_t>& flow,
                                        const Strided4d<const scalar_t>& kernel, const Strided4d<scalar_t>& grad_flow,
                                        const Strided4d<scalar_t>& grad_kernel, int64_t channels, int64_t height,
                                        int64_t width, int64_t n, int64_t y) {
  WarpWindow<opmath_t> windows[kChunk];
  opmath_t products[K * K][kChunk];
  opmath_t grad_flow_x[kChunk], grad_flow_y[kChunk];
  for (int64_t x0 = 0; x0 < width; x0 += kChunk) {
    const int64_t count = std::min(kChunk, width - x0);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t x = x0 + i;
      windows[i] = locate_pixel_window<K, scalar_t, opmath_t>(flow, n, y, x, height, width);
      grad_flow_x[i] = 0;
      grad_flow_y[i] = 0;
      if (!windows[i].valid) {
        continue;
      }
      int64_t rows[K], cols[K];
      clamp_window<K>(windows[i], height, width, rows, cols);
      opmath_t pixel_products[K * K];
      window_tap_products<K>(rows, cols, &grad_output(n, 0, y, x), grad_output.stride_c, &image(n, 0, 0, 0),
                             image.stride_c, image.stride_y, image.stride_x, channels, pixel_products);
      for (int t = 0; t < K * K; ++t) {
        products[t][i] = pixel_products[t];
      }
    }
    for (int r = 0; r < K; ++r) {
      for (int c = 0; c < K; ++c) {
        const scalar_t* coefficients = &kernel(n, r * K + c, y, x0);
        scalar_t* grads = &grad_kernel(n, r * K + c, y, x0);
        for (int64_t i = 0; i < count; ++i) {
          // An invalid pixel's gradients are zero (its products were never computed).
          grads[i * grad_kernel.stride_x] =
              windows[i].valid ? static_cast<scalar_t>(tap_grads<K>(
                                     static_cast<opmath_t>(coefficients[i * kernel.stride_x]), products[r * K + c][i],
                                     r, c, windows[i], grad_flow_x[i], grad_flow_y[i]))
                               : scalar_t(0);
        }
      }
    }
    for (int64_t i = 0; i < count; ++i) {
      grad_flow(n, 0, y, x0 + i) = static_cast<scalar_t>(grad_flow_x[i]);
      grad_flow(n, 1, y, x0 + i) = static_cast<scalar_t>(grad_flow_y[i]);
    }
  }
}

// The image gradients of channels channel_begin .. channel_end-1 from one image row, adding what
// adaptive_warp_image_grad_pixel adds, in the same order within each channel: pixel by pixel,
// each pixel's taps in tap order. The tap weights are computed ahead, a chunk at a time
// (locate_chunk), once for all the channels.
template <int K, typename scalar_t, typename opmath_t>
void adaptive_warp_image_grad_row(const Strided4d<const scalar_t>& grad_output, const Strided4d<const scalar_t>& flow,
                                  const Strided4d<const scalar_t>& kernel, const Strided4d<opmath_t>& grad_image,
                                  int64_t height, int64_t width, int64_t n, int64_t channel_begin,
                                  int64_t channel_end, int64_t y) {
  WarpWindow<opmath_t> windows[kChunk];
  opmath_t weights[K * K][kChunk];
  for (int64_t x0 = 0; x0 < width; x0 += kChunk) {
    const int64_t count = std::min(kChunk, width - x0);
    locate_chunk<K>(flow, kernel, height, width, n, y, x0, count, windows, weights);
    for (int64_t ch = channel_begin; ch < channel_end; ++ch) {
      opmath_t* target = &grad_image(n, ch, 0, 0);
      for (int64_t i = 0; i < count; ++i) {
        const int64_t x = x0 + i;
        const opmath_t grad = static_cast<opmath_t>(grad_output(n, ch, y, x));
        if (!windows[i].valid) {
          grad_image(n, ch, y, x) += grad;
          continue;
        }
        int64_t rows[K], cols[K];
        clamp_window<K>(windows[i], height, width, rows, cols);
        scatter_window<K>(rows, cols, &weights[0][i], kChunk, grad, target, grad_image.stride_y,
                          grad_image.stride_x, PlainAdd{});
      }
    }
  }
}

at::Tensor adaptive_warp_cpu(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& kernel) {
  const int kernel_size = check_adaptive_warp_inputs(image, flow, kernel);
  at::Tensor output = at::empty_like(image);
  const int64_t batch = image.size(0), channels = image.size(1), height = image.size(2), width = image.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "adaptive_warp_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto image_view = view4d<const scalar_t>(image);
    const auto flow_view = view4d<const scalar_t>(flow);
    const auto kernel_view = view4d<const scalar_t>(kernel);
    const auto output_view = view4d<scalar_t>(output);
    dispatch_kernel_size(kernel_size, [&](auto kernel_size_constant) {
      constexpr int K = decltype(kernel_size_constant)::value;
      for_each_row(batch, height, width, [&](int64_t n, int64_t y) {
        adaptive_warp_forward_row<K, scalar_t, opmath_t>(image_view, flow_view, kernel_view, output_view, channels,
                                                         height, width, n, y);
      });
    });
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> adaptive_warp_backward_cpu(const at::Tensor& grad_output,
                                                                          const at::Tensor& image,
                                                                          const at::Tensor& flow,
                                                                          const at::Tensor& kernel) {
  const int kernel_size = check_adaptive_warp_inputs(image, flow, kernel);
  check_adaptive_warp_grad_output(grad_output, image);
  const int64_t batch = image.size(0), channels = image.size(1), height = image.size(2), width = image.size(3);
  at::Tensor grad_flow = at::empty_like(flow);
  at::Tensor grad_kernel = at::empty_like(kernel);
  // Image gradients are scattered: in bands of source rows per (batch, channel) plane, each into
  // its band's private copy (see scatter_bands). Half types accumulate in float32, rounded once.
  const int64_t planes = batch * channels;
  const int64_t bands = scatter_bands(planes, height);
  const auto opmath_dtype = at::toOpMathType(image.scalar_type());
  const std::vector<at::Tensor> band_grads =
      zeroed_band_copies(bands, image.sizes(), image.options().dtype(opmath_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "adaptive_warp_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto grad_output_view = view4d<const scalar_t>(grad_output);
    const auto image_view = view4d<const scalar_t>(image);
    const auto flow_view = view4d<const scalar_t>(flow);
    const auto kernel_view = view4d<const scalar_t>(kernel);
    const auto grad_flow_view = view4d<scalar_t>(grad_flow);
    const auto grad_kernel_view = view4d<scalar_t>(grad_kernel);
    dispatch_kernel_size(kernel_size, [&](auto kernel_size_constant) {
      constexpr int K = decltype(kernel_size_constant)::value;
      // Flow and kernel gradients belong to their pixel: parallel over pixels.
      for_each_row(batch, height, width, [&](int64_t n, int64_t y) {
        adaptive_warp_kernel_flow_grad_row<K, scalar_t, opmath_t>(grad_output_view, image_view, flow_view,
                                                                  kernel_view, grad_flow_view, grad_kernel_view,
                                                                  channels, height, width, n, y);
      });
      const auto grad_image_views = band_views<opmath_t>(band_grads);
      for_each_band_row_of_channels(batch, channels, bands, height, width,
                                    [&](int64_t n, int64_t channel_begin, int64_t channel_end, int64_t band,
                                        int64_t y) {
                                      adaptive_warp_image_grad_row<K, scalar_t, opmath_t>(
                                          grad_output_view, flow_view, kernel_view, grad_image_views[band], height,
                                          width, n, channel_begin, channel_end, y);
                                    });
    });
  });
  const at::Tensor grad_image = sum_band_copies(band_grads);
  return {grad_image.to(image.scalar_type()), grad_flow, grad_kernel};
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CPU, m) {
  m.impl("adaptive_warp", &adaptive_warp_cpu);
  m.impl("adaptive_warp_backward", &adaptive_warp_backward_cpu);
}

}  // namespace memc
