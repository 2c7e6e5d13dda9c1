// CUDA kernels of the adaptive warping layer: one thread per output pixel, calling the shared math
// in memc/adaptive_warp.h. Built only when the CUDA extension is compiled.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "common.h"
#include "cuda/launch.cuh"
#include "memc/adaptive_warp.h"

namespace memc {
namespace {

template <int K, typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) adaptive_warp_forward_kernel(Strided4d<const scalar_t> image, Strided4d<const scalar_t> flow,
                                             Strided4d<const scalar_t> kernel, Strided4d<scalar_t> output,
                                             int64_t batch, int64_t channels, int64_t height, int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t pixels = batch * height * width;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / (width * height);
    adaptive_warp_forward_pixel<K, scalar_t, opmath_t>(image, flow, kernel, output, channels, height, width, n, y, x);
  }
}

// Null views (a null data pointer) mark the gradients not asked for: the flow gradient, the kernel
// gradient (each skipped by adaptive_warp_kernel_flow_grad_pixel), or the image gradient's scatter.
template <int K, typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) adaptive_warp_backward_kernel(Strided4d<const scalar_t> grad_output, Strided4d<const scalar_t> image,
                                              Strided4d<const scalar_t> flow, Strided4d<const scalar_t> kernel,
                                              Strided4d<scalar_t> grad_flow, Strided4d<scalar_t> grad_kernel,
                                              Strided4d<at::opmath_type<scalar_t>> grad_image, int64_t batch,
                                              int64_t channels, int64_t height, int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t pixels = batch * height * width;
  const bool want_flow_or_kernel = grad_flow.data != nullptr || grad_kernel.data != nullptr;
  const bool want_image = grad_image.data != nullptr;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / (width * height);
    if (want_flow_or_kernel) {
      adaptive_warp_kernel_flow_grad_pixel<K, scalar_t, opmath_t>(grad_output, image, flow, kernel, grad_flow,
                                                                  grad_kernel, channels, height, width, n, y, x);
    }
    if (want_image) {
      adaptive_warp_image_grad_pixel<K, scalar_t, opmath_t>(grad_output, flow, kernel, grad_image, 0, channels,
                                                            height, width, n, y, x, AtomicAdd{});
    }
  }
}

template <typename T>
Strided4d<T> view4d_or_null(const at::Tensor& tensor) {
  return tensor.defined() ? view4d<T>(tensor) : Strided4d<T>{nullptr, 0, 0, 0, 0};
}

at::Tensor adaptive_warp_cuda(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& kernel) {
  const int kernel_size = check_adaptive_warp_inputs(image, flow, kernel);
  const c10::cuda::CUDAGuard device_guard(image.device());
  at::Tensor output = at::empty_like(image);
  const int64_t batch = image.size(0), channels = image.size(1), height = image.size(2), width = image.size(3);
  const int64_t pixels = batch * height * width;
  if (output.numel() == 0) return output;  // no pixels, or no channels (whose planes have no data to point to)
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "adaptive_warp_cuda", [&] {
    dispatch_kernel_size(kernel_size, [&](auto kernel_size_constant) {
      constexpr int K = decltype(kernel_size_constant)::value;
      adaptive_warp_forward_kernel<K, scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(
          view4d<const scalar_t>(image), view4d<const scalar_t>(flow), view4d<const scalar_t>(kernel),
          view4d<scalar_t>(output), batch, channels, height, width);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return output;
}

// Returns (grad_image, grad_flow, grad_kernel), those output_mask does not ask for undefined
// (None), as ATen's backward ops do, and not computed.
std::tuple<at::Tensor, at::Tensor, at::Tensor> adaptive_warp_backward_cuda(const at::Tensor& grad_output,
                                                                           const at::Tensor& image,
                                                                           const at::Tensor& flow,
                                                                           const at::Tensor& kernel,
                                                                           std::array<bool, 3> output_mask) {
  const int kernel_size = check_adaptive_warp_inputs(image, flow, kernel);
  check_adaptive_warp_grad_output(grad_output, image);
  const c10::cuda::CUDAGuard device_guard(image.device());
  const bool want_image = output_mask[0], want_flow = output_mask[1], want_kernel = output_mask[2];
  const int64_t batch = image.size(0), channels = image.size(1), height = image.size(2), width = image.size(3);
  const int64_t pixels = batch * height * width;
  at::Tensor grad_flow = want_flow ? at::empty_like(flow) : at::Tensor();
  at::Tensor grad_kernel = want_kernel ? at::empty_like(kernel) : at::Tensor();
  at::Tensor grad_image_acc;
  // Half-precision image gradients are accumulated in float32 (precise, fast atomics), then
  // rounded once; laid out like the image, so the gradient has its memory format.
  const auto opmath_dtype = at::toOpMathType(image.scalar_type());
  if (want_image) {
    grad_image_acc = at::zeros_like(image, image.options().dtype(opmath_dtype));
  }
  if (pixels == 0 || channels == 0) {
    // Nothing to gather (an image without channels has no data to point to): the outputs do not
    // depend on the flow and kernel.
    if (want_flow) {
      grad_flow.zero_();
    }
    if (want_kernel) {
      grad_kernel.zero_();
    }
  } else if (want_flow || want_kernel || want_image) {
    if (want_image) {
      at::globalContext().alertNotDeterministic("adaptive_warp_backward_cuda");
    }
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "adaptive_warp_backward_cuda", [&] {
      using opmath_t = at::opmath_type<scalar_t>;
      dispatch_kernel_size(kernel_size, [&](auto kernel_size_constant) {
        constexpr int K = decltype(kernel_size_constant)::value;
        adaptive_warp_backward_kernel<K, scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(
            view4d<const scalar_t>(grad_output), view4d<const scalar_t>(image), view4d<const scalar_t>(flow),
            view4d<const scalar_t>(kernel), view4d_or_null<scalar_t>(grad_flow), view4d_or_null<scalar_t>(grad_kernel),
            view4d_or_null<opmath_t>(grad_image_acc), batch, channels, height, width);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  at::Tensor grad_image;
  if (want_image) {
    grad_image = grad_image_acc.scalar_type() == image.scalar_type() ? grad_image_acc
                                                                      : grad_image_acc.to(image.scalar_type());
  }
  return {grad_image, grad_flow, grad_kernel};
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CUDA, m) {
  m.impl("adaptive_warp", &adaptive_warp_cuda);
  m.impl("adaptive_warp_backward", &adaptive_warp_backward_cuda);
}

}  // namespace memc
