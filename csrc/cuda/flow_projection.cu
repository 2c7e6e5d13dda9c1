// CUDA kernels of the flow projection layer, calling the shared math in memc/flow_projection.h:
// one thread per source pixel for splatting (atomics), averaging and the gradient (a gather, no
// atomics); one thread per row for the row pass of the hole fill and one per column for the
// column sweeps (neighbouring threads read neighbouring columns of a row, so their loads coalesce).
// Built only when the CUDA extension is compiled.
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

// Adds a source's share to one cell of `projected` (contiguous (B, 3, H, W)) with atomics.
template <typename T>
struct AtomicCellAdd {
  T* image;  // channel 0 of the source's image
  int64_t plane, width;

  __device__ __forceinline__ void operator()(int64_t row, int64_t col, T value_x, T value_y, T share) const {
    T* cell = image + row * width + col;
    gpuAtomicAdd(cell, value_x);
    gpuAtomicAdd(cell + plane, value_y);
    gpuAtomicAdd(cell + kTotalWeightChannel * plane, share);
  }
};

template <typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) splat_kernel(Strided4d<const scalar_t> flow, Strided4d<const scalar_t> weight,
                                                                 bool weighted, at::opmath_type<scalar_t>* projected,
                                                                 int64_t batch, int64_t height, int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width, pixels = batch * plane;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / plane;
    const opmath_t w = weighted ? static_cast<opmath_t>(weight(n, 0, y, x)) : opmath_t(1);
    AtomicCellAdd<opmath_t> add{projected + n * 3 * plane, plane, width};
    splat_source(y, x, static_cast<opmath_t>(flow(n, 0, y, x)), static_cast<opmath_t>(flow(n, 1, y, x)), w, height,
                 width, add);
  }
}

// Averages, and the output of received pixels (0 at holes: the column sweep writes filled ones).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) average_kernel(at::opmath_type<scalar_t>* projected, Strided4d<scalar_t> output,
                                                                   int64_t batch, int64_t height, int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width, pixels = batch * plane;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / plane;
    opmath_t* sums = projected + n * 3 * plane + y * width + x;
    const ProjectedPixel<opmath_t> average = average_pixel(sums[0], sums[plane], sums[kTotalWeightChannel * plane]);
    sums[0] = average.x;
    sums[plane] = average.y;
    sums[kTotalWeightChannel * plane] = average.total;
    output(n, 0, y, x) = static_cast<scalar_t>(average.x);
    output(n, 1, y, x) = static_cast<scalar_t>(average.y);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock) fill_rows_kernel(T* projected, int64_t batch, int64_t height, int64_t width) {
  const int64_t plane = height * width;
  for (int64_t line = first_thread(); line < batch * height; line += thread_stride()) {
    T* row = projected + (line / height) * 3 * plane + (line % height) * width;
    fill_row_from_sides(row, row + plane, row + kTotalWeightChannel * plane, width);
  }
}

// One sweep along a column of image n (column, column_y, column_total: its pixel (0, x) in the
// three channels of `projected`, rows `width` apart): each hole gains the average of its nearest
// received pixel below (step -1: the sweep runs upwards) or above (step +1: downwards), and with
// `finish` (the last sweep) its final value and output.
template <bool finish, typename scalar_t, typename opmath_t>
__device__ __forceinline__ void sweep_column(opmath_t* column, opmath_t* column_y, opmath_t* column_total,
                                             const Strided4d<scalar_t>& output, int64_t n, int64_t x, int64_t height,
                                             int64_t width, int64_t step) {
  int64_t nearest = -1;
  for (int64_t y = step > 0 ? 0 : height - 1; y >= 0 && y < height; y += step) {
    const int64_t at = y * width;
    if (is_received(column_total[at])) {
      nearest = at;
      continue;
    }
    if (nearest >= 0) {
      add_fill_neighbour(column[at], column_y[at], column_total[at], column[nearest], column_y[nearest]);
    }
    if constexpr (finish) {
      finish_fill(column[at], column_y[at], column_total[at]);
      output(n, 0, y, x) = static_cast<scalar_t>(column[at]);
      output(n, 1, y, x) = static_cast<scalar_t>(column_y[at]);
    }
  }
}

// The column sweeps of one column: the neighbour below (upwards, with fill_from_below), then the
// one above (downwards), finishing each hole and writing its output.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) fill_columns_kernel(at::opmath_type<scalar_t>* projected, Strided4d<scalar_t> output,
                                                                        bool fill_from_below, int64_t batch, int64_t height,
                                                                        int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width;
  for (int64_t line = first_thread(); line < batch * width; line += thread_stride()) {
    const int64_t n = line / width, x = line % width;
    opmath_t* column = projected + n * 3 * plane + x;  // pixel (y, x) of channel c: column[c * plane + y * width]
    opmath_t* column_y = column + plane;
    opmath_t* column_total = column + kTotalWeightChannel * plane;
    if (fill_from_below) {
      sweep_column<false>(column, column_y, column_total, output, n, x, height, width, -1);
    }
    sweep_column<true>(column, column_y, column_total, output, n, x, height, width, +1);
  }
}

// Backward: cells (B, H, W, kCellValues) start as the output gradient.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) load_grad_kernel(Strided4d<const scalar_t> grad_output, at::opmath_type<scalar_t>* cells,
                                                                     int64_t batch, int64_t height, int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width, pixels = batch * plane;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / plane;
    cells[pixel * kCellValues] = static_cast<opmath_t>(grad_output(n, 0, y, x));
    cells[pixel * kCellValues + 1] = static_cast<opmath_t>(grad_output(n, 1, y, x));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock) share_rows_kernel(const T* projected, T* cells, int64_t batch, int64_t height,
                                                                      int64_t width) {
  const int64_t plane = height * width;
  for (int64_t line = first_thread(); line < batch * height; line += thread_stride()) {
    const int64_t n = line / height, y = line % height;
    share_row_gradients(cells + line * width * kCellValues,
                        projected + (n * 3 + kTotalWeightChannel) * plane + y * width, width);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock) share_columns_kernel(const T* projected, T* cells, bool fill_from_below,
                                                                         int64_t batch, int64_t height, int64_t width) {
  const int64_t plane = height * width;
  for (int64_t line = first_thread(); line < batch * width; line += thread_stride()) {
    const int64_t n = line / width, x = line % width;
    const T* column_total = projected + (n * 3 + kTotalWeightChannel) * plane + x;
    T* column_cells = cells + (n * plane + x) * kCellValues;  // pixel y: column_cells[y * width * kCellValues]
    const int64_t cell_row = width * kCellValues;
    ColumnShares<T> shares;
    shares.start();
    for (int64_t y = 0; y < height; ++y) {
      T* cell = column_cells + y * cell_row;
      if (is_received(column_total[y * width])) {
        if (shares.pending) {
          shares.end_run(shares.above >= 0 ? column_cells + shares.above * cell_row : nullptr, cell, fill_from_below);
        }
        shares.above = y;
      } else {
        shares.hole(cell, column_total[y * width]);
      }
    }
    if (shares.pending) {
      shares.end_run(shares.above >= 0 ? column_cells + shares.above * cell_row : nullptr, nullptr, fill_from_below);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock) cell_gradient_kernel(const T* projected, T* cells, bool want_weight, int64_t batch,
                                                                         int64_t height, int64_t width) {
  const int64_t plane = height * width, pixels = batch * plane;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const T* average = projected + (pixel / plane) * 3 * plane + pixel % plane;
    cell_gradient(cells + pixel * kCellValues, average, average + plane, average[kTotalWeightChannel * plane],
                  want_weight);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreadsPerBlock) grad_kernel(Strided4d<const scalar_t> flow, Strided4d<const scalar_t> weight, bool weighted,
                                                                const at::opmath_type<scalar_t>* cells, Strided4d<scalar_t> grad_flow,
                                                                Strided4d<scalar_t> grad_weight, bool want_flow, bool want_weight,
                                                                int64_t batch, int64_t height, int64_t width) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width, pixels = batch * plane;
  for (int64_t pixel = first_thread(); pixel < pixels; pixel += thread_stride()) {
    const int64_t x = pixel % width, y = (pixel / width) % height, n = pixel / plane;
    const opmath_t w = weighted ? static_cast<opmath_t>(weight(n, 0, y, x)) : opmath_t(1);
    const SourceGradient<opmath_t> gradient =
        source_gradient(y, x, static_cast<opmath_t>(flow(n, 0, y, x)), static_cast<opmath_t>(flow(n, 1, y, x)), w,
                        height, width, cells + n * plane * kCellValues, width * kCellValues);
    if (want_flow) {
      grad_flow(n, 0, y, x) = static_cast<scalar_t>(gradient.flow_x);
      grad_flow(n, 1, y, x) = static_cast<scalar_t>(gradient.flow_y);
    }
    if (want_weight) {
      grad_weight(n, 0, y, x) = static_cast<scalar_t>(gradient.weight);
    }
  }
}

// Blocks for one thread per line (row or column): there are few lines (about a thousand per image)
// and each is a long serial walk, so small blocks spread them over all multiprocessors.
constexpr int kThreadsPerLineBlock = 32;

inline int64_t line_blocks(int64_t lines) {
  return std::max<int64_t>(1, std::min<int64_t>((lines + kThreadsPerLineBlock - 1) / kThreadsPerLineBlock, 1 << 30));
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
    opmath_t* const projected_data = projected.data_ptr<opmath_t>();
    const auto output_view = view4d<scalar_t>(output);
    splat_kernel<scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(
        view4d<const scalar_t>(flow), optional_view4d<const scalar_t>(weight), weighted, projected_data, batch, height,
        width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    average_kernel<scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(projected_data, output_view, batch,
                                                                                 height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (fill_holes) {
      fill_rows_kernel<opmath_t><<<line_blocks(batch * height), kThreadsPerLineBlock, 0, stream>>>(projected_data, batch,
                                                                                                  height, width);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      fill_columns_kernel<scalar_t><<<line_blocks(batch * width), kThreadsPerLineBlock, 0, stream>>>(
          projected_data, output_view, fill_from_below, batch, height, width);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {output, projected};
}

std::tuple<at::Tensor, at::Tensor> flow_projection_backward_cuda(const at::Tensor& grad_output, const at::Tensor& flow,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 const at::Tensor& projected_in, bool fill_holes,
                                                                 bool fill_from_below, std::array<bool, 2> output_mask) {
  check_flow_projection_backward_inputs(grad_output, flow, weight, projected_in);
  const c10::cuda::CUDAGuard device_guard(flow.device());
  const bool weighted = has_tensor(weight);
  const bool want_flow = output_mask[0], want_weight = weighted && output_mask[1];
  const int64_t batch = flow.size(0), height = flow.size(2), width = flow.size(3);
  at::Tensor grad_flow = want_flow ? at::empty_like(flow) : at::empty({0}, flow.options());
  at::Tensor grad_weight = want_weight ? at::empty_like(*weight) : at::empty({0}, flow.options());
  const int64_t pixels = batch * height * width;
  if (pixels == 0 || !(want_flow || want_weight)) {
    return {grad_flow, grad_weight};
  }
  const at::Tensor projected = projected_in.contiguous();
  at::Tensor cells = at::empty({batch, height, width, kCellValues}, projected.options());
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "flow_projection_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const opmath_t* const projected_data = projected.data_ptr<opmath_t>();
    opmath_t* const cell_data = cells.data_ptr<opmath_t>();
    load_grad_kernel<scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(
        view4d<const scalar_t>(grad_output), cell_data, batch, height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (fill_holes) {
      // Rows, then columns: each thread owns its line, so no atomics are needed.
      share_rows_kernel<opmath_t><<<line_blocks(batch * height), kThreadsPerLineBlock, 0, stream>>>(
          projected_data, cell_data, batch, height, width);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      share_columns_kernel<opmath_t><<<line_blocks(batch * width), kThreadsPerLineBlock, 0, stream>>>(
          projected_data, cell_data, fill_from_below, batch, height, width);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    cell_gradient_kernel<opmath_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(projected_data, cell_data,
                                                                                        want_weight, batch, height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grad_kernel<scalar_t><<<blocks_for(pixels), kThreadsPerBlock, 0, stream>>>(
        view4d<const scalar_t>(flow), optional_view4d<const scalar_t>(weight), weighted, cell_data,
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
