// CUDA kernels of the flow projection layer, calling the shared math in memc/flow_projection.h:
// one thread per source pixel for splatting (atomics) and for the gradient (a gather, no
// atomics), one thread per row or column for the O(length) hole-filling scans. Built only when
// the CUDA extension is compiled.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>

#include "common.h"
#include "cuda/launch.cuh"
#include "memc/flow_projection.h"

namespace memc {
namespace {

template <typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) splat_kernel(Strided4d<const scalar_t> flow, Strided4d<const scalar_t> weight, bool weighted,
                             Strided4d<at::opmath_type<scalar_t>> projected, int64_t batch, int64_t height,
                             int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t pixels = batch * height * width;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / (width * height);
    flow_projection_splat_pixel<scalar_t, opmath_t>(flow, weight, weighted, projected, height, width, n, y, x,
                                                    AtomicAdd{});
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) average_kernel(Strided4d<at::opmath_type<scalar_t>> projected, Strided4d<scalar_t> output,
                               bool fill_holes, int64_t batch, int64_t height, int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t pixels = batch * height * width;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / (width * height);
    flow_projection_average_pixel<scalar_t, opmath_t>(projected, output, fill_holes, n, y, x);
  }
}

// One thread per row (along_rows) or column of every image. When `extents.data` is set, each
// line's extent is stored there.
template <typename T, typename Visitor>
__global__ void __launch_bounds__(kThreadsPerBlock) scan_lines_kernel(Strided4d<T> projected, Visitor visitor, LineExtents extents, bool along_rows,
                                  int64_t batch, int64_t height, int64_t width) {
  const int64_t lines_per_image = along_rows ? height : width;
  const int64_t lines = batch * lines_per_image;
  for (int64_t line = first_thread(); line < lines; line += thread_stride()) {
    const int64_t n = line / lines_per_image, index = line % lines_per_image;
    const PlaneLine plane_line = along_rows ? image_row(n, index, width) : image_column(n, index, height);
    int64_t scratch[2];
    int64_t* extent = extents.data != nullptr ? extents.at(n, index) : scratch;
    Visitor visit = visitor;
    scan_line(projected, plane_line, visit, extent);
  }
}

template <typename T, typename Visitor>
void launch_scan_lines(const Strided4d<T>& projected, const Visitor& visitor, const LineExtents& extents,
                       bool along_rows, int64_t batch, int64_t height, int64_t width, cudaStream_t stream) {
  const int64_t lines = batch * (along_rows ? height : width);
  // There are few lines (about a thousand per image) and each is a long serial walk: small blocks
  // spread them over all multiprocessors instead of piling them onto a handful.
  constexpr int kThreadsPerLineBlock = 32;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((lines + kThreadsPerLineBlock - 1) / kThreadsPerLineBlock, 1 << 30));
  scan_lines_kernel<T, Visitor><<<blocks, kThreadsPerLineBlock, 0, stream>>>(projected, visitor, extents, along_rows,
                                                                             batch, height, width);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) grad_kernel(Strided4d<const scalar_t> flow, Strided4d<const scalar_t> weight, bool weighted,
                            Strided4d<const at::opmath_type<scalar_t>> projected,
                            Strided4d<const at::opmath_type<scalar_t>> grad_average, Strided4d<scalar_t> grad_flow,
                            Strided4d<scalar_t> grad_weight, bool want_flow, bool want_weight, int64_t batch,
                            int64_t height, int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t pixels = batch * height * width;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / (width * height);
    flow_projection_grad_pixel<scalar_t, opmath_t>(flow, weight, weighted, projected, grad_average, grad_flow,
                                                   grad_weight, want_flow, want_weight, height, width, n, y, x);
  }
}

std::tuple<at::Tensor, at::Tensor> flow_projection_cuda(const at::Tensor& flow, const std::optional<at::Tensor>& weight,
                                                        bool fill_holes, bool fill_from_below) {
  check_flow_projection_inputs("flow_projection", flow, weight);
  const c10::cuda::CUDAGuard device_guard(flow.device());
  const bool weighted = has_tensor(weight);
  const int64_t batch = flow.size(0), height = flow.size(2), width = flow.size(3);
  at::Tensor output = at::empty_like(flow);
  const auto opmath_dtype = at::toOpMathType(flow.scalar_type());
  at::Tensor projected = at::zeros({batch, 3, height, width}, flow.options().dtype(opmath_dtype));
  const int64_t pixels = batch * height * width;
  if (pixels == 0) {
    return {output, projected};
  }
  // Float atomics sum in arrival order.
  at::globalContext().alertNotDeterministic("flow_projection_cuda");
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "flow_projection_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto projected_view = view4d<opmath_t>(projected);
    const auto output_view = view4d<scalar_t>(output);
    splat_kernel<scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(
        view4d<const scalar_t>(flow), optional_view4d<const scalar_t>(weight), weighted, projected_view, batch,
        height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    average_kernel<scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(projected_view, output_view,
                                                                                 fill_holes, batch, height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (fill_holes) {
      at::Tensor row_extents = at::empty({batch, height, 2}, flow.options().dtype(at::kLong));
      const LineExtents rows{row_extents.data_ptr<int64_t>(), height};
      launch_scan_lines(projected_view, RowFillVisitor<opmath_t>{projected_view}, rows, true, batch, height, width,
                        stream);
      launch_scan_lines(projected_view, ColumnFillVisitor<scalar_t, opmath_t>{projected_view, output_view, rows, fill_from_below},
                        LineExtents{nullptr, width}, false, batch, height, width, stream);
    }
  });
  return {output, projected};
}

std::tuple<at::Tensor, at::Tensor> flow_projection_backward_cuda(const at::Tensor& grad_output, const at::Tensor& flow,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 const at::Tensor& projected, bool fill_holes,
                                                                 bool fill_from_below, std::array<bool, 2> output_mask) {
  check_flow_projection_backward_inputs(grad_output, flow, weight, projected);
  const c10::cuda::CUDAGuard device_guard(flow.device());
  const bool weighted = has_tensor(weight);
  const bool want_flow = output_mask[0], want_weight = weighted && output_mask[1];
  const int64_t batch = flow.size(0), height = flow.size(2), width = flow.size(3);
  at::Tensor grad_flow = want_flow ? at::empty_like(flow) : at::empty({0}, flow.options());
  at::Tensor grad_weight = want_weight ? at::empty_like(*weight) : at::empty({0}, flow.options());
  // Gradient with respect to each pixel's average: its own output gradient, plus (with hole
  // filling) the shares of the holes that took their value from it.
  at::Tensor grad_average = at::empty({batch, 2, height, width}, projected.options());
  grad_average.copy_(grad_output);
  const int64_t pixels = batch * height * width;
  if (pixels == 0 || !(want_flow || want_weight)) {
    return {grad_flow, grad_weight};
  }
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "flow_projection_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto grad_output_view = view4d<const scalar_t>(grad_output);
    const auto projected_view = view4d<const opmath_t>(projected);
    const auto grad_average_view = view4d<opmath_t>(grad_average);
    if (fill_holes) {
      // Rows, then columns, then rows again: each thread owns its line, so no atomics are needed.
      at::Tensor row_extents = at::empty({batch, height, 2}, flow.options().dtype(at::kLong));
      at::Tensor column_extents = at::empty({batch, width, 2}, flow.options().dtype(at::kLong));
      const LineExtents rows{row_extents.data_ptr<int64_t>(), height};
      const LineExtents columns{column_extents.data_ptr<int64_t>(), width};
      launch_scan_lines(projected_view, ExtentVisitor{}, rows, true, batch, height, width, stream);
      launch_scan_lines(projected_view,
                        FillGradVisitor<scalar_t, opmath_t>{grad_output_view, grad_average_view, rows, false, fill_from_below},
                        columns, false, batch, height, width, stream);
      launch_scan_lines(projected_view,
                        FillGradVisitor<scalar_t, opmath_t>{grad_output_view, grad_average_view, columns, true, fill_from_below},
                        LineExtents{nullptr, height}, true, batch, height, width, stream);
    }
    grad_kernel<scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(
        view4d<const scalar_t>(flow), optional_view4d<const scalar_t>(weight), weighted, projected_view,
        view4d<const opmath_t>(grad_average),
        optional_view4d<scalar_t>(want_flow ? std::optional<at::Tensor>(grad_flow) : std::nullopt),
        optional_view4d<scalar_t>(want_weight ? std::optional<at::Tensor>(grad_weight) : std::nullopt), want_flow,
        want_weight, batch, height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_flow, grad_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CUDA, m) {
  m.impl("flow_projection", &flow_projection_cuda);
  m.impl("flow_projection_backward", &flow_projection_backward_cuda);
}

}  // namespace memc
