// CPU kernels of the adaptive warping layer: loops over pixels calling the shared math in
// memc/adaptive_warp.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "common.h"
#include "memc/adaptive_warp.h"

namespace memc {
namespace {

// Roughly how many pixel visits make a task worth handing to another thread.
constexpr int64_t kPixelsPerTask = 2048;

int64_t rows_per_task(int64_t width) {
  return std::max<int64_t>(1, kPixelsPerTask / std::max<int64_t>(1, width));
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
      at::parallel_for(0, batch * height, rows_per_task(width), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t n = row / height, y = row % height;
          for (int64_t x = 0; x < width; ++x) {
            adaptive_warp_forward_pixel<K, scalar_t, opmath_t>(image_view, flow_view, kernel_view, output_view,
                                                               channels, height, width, n, y, x);
          }
        }
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
  // Half-precision image gradients are accumulated in float32, then rounded once.
  const auto opmath_dtype = at::toOpMathType(image.scalar_type());
  at::Tensor grad_image_acc = at::zeros_like(image, image.options().dtype(opmath_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "adaptive_warp_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto grad_output_view = view4d<const scalar_t>(grad_output);
    const auto image_view = view4d<const scalar_t>(image);
    const auto flow_view = view4d<const scalar_t>(flow);
    const auto kernel_view = view4d<const scalar_t>(kernel);
    const auto grad_flow_view = view4d<scalar_t>(grad_flow);
    const auto grad_kernel_view = view4d<scalar_t>(grad_kernel);
    const auto grad_image_view = view4d<opmath_t>(grad_image_acc);
    dispatch_kernel_size(kernel_size, [&](auto kernel_size_constant) {
      constexpr int K = decltype(kernel_size_constant)::value;
      // Flow and kernel gradients belong to their pixel: parallel over pixels.
      at::parallel_for(0, batch * height, rows_per_task(width), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t n = row / height, y = row % height;
          for (int64_t x = 0; x < width; ++x) {
            adaptive_warp_kernel_flow_grad_pixel<K, scalar_t, opmath_t>(grad_output_view, image_view, flow_view,
                                                                        kernel_view, grad_flow_view, grad_kernel_view,
                                                                        channels, height, width, n, y, x);
          }
        }
      });
      // Image gradients are scattered within a (batch, channel) plane: one thread owns each plane,
      // so plain adds are race-free and the result is deterministic.
      const int64_t plane_pixels = height * width;
      const int64_t planes_per_task = std::max<int64_t>(1, kPixelsPerTask / std::max<int64_t>(1, plane_pixels));
      at::parallel_for(0, batch * channels, planes_per_task, [&](int64_t begin, int64_t end) {
        for (int64_t plane = begin; plane < end; ++plane) {
          const int64_t n = plane / channels, ch = plane % channels;
          for (int64_t y = 0; y < height; ++y) {
            for (int64_t x = 0; x < width; ++x) {
              adaptive_warp_image_grad_pixel<K, scalar_t, opmath_t>(grad_output_view, flow_view, kernel_view,
                                                                    grad_image_view, ch, ch + 1, height, width, n,
                                                                    y, x, PlainAdd{});
            }
          }
        }
      });
    });
  });
  at::Tensor grad_image = grad_image_acc.scalar_type() == image.scalar_type() ? grad_image_acc
                                                                              : grad_image_acc.to(image.scalar_type());
  return {grad_image, grad_flow, grad_kernel};
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CPU, m) {
  m.impl("adaptive_warp", &adaptive_warp_cpu);
  m.impl("adaptive_warp_backward", &adaptive_warp_backward_cpu);
}

}  // namespace memc
