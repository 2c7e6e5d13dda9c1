// CUDA kernel of the bicubic warp: one thread per output pixel, calling the shared math in
// memc/bicubic_warp.h. Built only when the CUDA extension is compiled.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common.h"
#include "cuda/launch.cuh"
#include "memc/bicubic_warp.h"

namespace memc {
namespace {

template <typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) bicubic_warp_forward_kernel(Strided4d<const scalar_t> image,
                                                                                Strided4d<const scalar_t> flow,
                                                                                Strided4d<scalar_t> output,
                                                                                int64_t batch, int64_t channels,
                                                                                int64_t height, int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t pixels = batch * height * width;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / (width * height);
    bicubic_warp_forward_pixel<scalar_t, opmath_t>(image, flow, output, channels, height, width, n, y, x);
  }
}

at::Tensor bicubic_warp_cuda(const at::Tensor& image, const at::Tensor& flow) {
  check_bicubic_warp_inputs(image, flow);
  const c10::cuda::CUDAGuard device_guard(image.device());
  at::Tensor output = at::empty_like(image);
  const int64_t batch = image.size(0), channels = image.size(1), height = image.size(2), width = image.size(3);
  const int64_t pixels = batch * height * width;
  if (output.numel() == 0) return output;  // no pixels, or no channels (whose planes have no data to point to)
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "bicubic_warp_cuda", [&] {
    bicubic_warp_forward_kernel<scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(
        view4d<const scalar_t>(image), view4d<const scalar_t>(flow), view4d<scalar_t>(output), batch, channels,
        height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CUDA, m) {
  m.impl("bicubic_warp", &bicubic_warp_cuda);
}

}  // namespace memc
