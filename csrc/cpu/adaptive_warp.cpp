// CPU kernels of the adaptive warping layer: loops over pixels calling the shared math in
// memc/adaptive_warp.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "common.h"
#include "cpu/parallel.h"
#include "memc/adaptive_warp.h"

namespace memc {
namespace {

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
        for (int64_t x = 0; x < width; ++x) {
          adaptive_warp_forward_pixel<K, scalar_t, opmath_t>(image_view, flow_view, kernel_view, output_view,
                                                             channels, height, width, n, y, x);
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
  // Image gradients are scattered: each task owns one (batch, channel) plane and one band of its
  // source rows, and adds into its band's private copy of the gradient, so plain adds are
  // race-free; the copies are summed at the end. With fewer planes than threads the planes are
  // cut into bands to keep every thread busy. Half types accumulate in float32, rounded once.
  const int64_t planes = batch * channels;
  const int64_t threads = at::get_num_threads();
  const int64_t bands = planes >= threads || height == 0 ? 1 : std::min<int64_t>((threads + planes - 1) / planes, height);
  const auto opmath_dtype = at::toOpMathType(image.scalar_type());
  at::Tensor band_grads = at::zeros({bands, batch, channels, height, width}, image.options().dtype(opmath_dtype));
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
        for (int64_t x = 0; x < width; ++x) {
          adaptive_warp_kernel_flow_grad_pixel<K, scalar_t, opmath_t>(grad_output_view, image_view, flow_view,
                                                                      kernel_view, grad_flow_view, grad_kernel_view,
                                                                      channels, height, width, n, y, x);
        }
      });
      const auto first_band_view = view4d<opmath_t>(band_grads[0]);
      const int64_t band_pixels = height * width / bands;
      const int64_t tasks_per_chunk = lines_per_task(band_pixels);
      at::parallel_for(0, planes * bands, tasks_per_chunk, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
          const int64_t plane = task / bands, band = task % bands;
          const int64_t n = plane / channels, ch = plane % channels;
          Strided4d<opmath_t> grad_image_view = first_band_view;
          grad_image_view.data += band * band_grads.stride(0);
          for (int64_t y = band * height / bands; y < (band + 1) * height / bands; ++y) {
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
  at::Tensor grad_image = bands == 1 ? band_grads[0] : band_grads.sum(0);
  return {grad_image.to(image.scalar_type()), grad_flow, grad_kernel};
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CPU, m) {
  m.impl("adaptive_warp", &adaptive_warp_cpu);
  m.impl("adaptive_warp_backward", &adaptive_warp_backward_cpu);
}

}  // namespace memc
