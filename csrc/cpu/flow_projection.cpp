// CPU kernels of the flow projection layer: loops over pixels and lines calling the shared math
// in memc/flow_projection.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>
#include <vector>

#include "common.h"
#include "cpu/parallel.h"
#include "memc/flow_projection.h"

namespace memc {
namespace {

std::tuple<at::Tensor, at::Tensor> flow_projection_cpu(const at::Tensor& flow, const std::optional<at::Tensor>& weight,
                                                       bool fill_holes, bool fill_from_below) {
  check_flow_projection_inputs("flow_projection", flow, weight);
  const bool weighted = has_tensor(weight);
  const int64_t batch = flow.size(0), height = flow.size(2), width = flow.size(3);
  at::Tensor output = at::empty_like(flow);
  const auto opmath_dtype = at::toOpMathType(flow.scalar_type());
  if (output.numel() == 0) {
    return {output, at::zeros({batch, 3, height, width}, flow.options().dtype(opmath_dtype))};
  }
  // A source can land anywhere in its image: the splat runs in bands of source rows per image,
  // each into its band's private copy of the sums (see scatter_bands), summed in band order.
  const int64_t bands = scatter_bands(batch, height);
  const std::vector<at::Tensor> band_sums =
      zeroed_band_copies(bands, {batch, 3, height, width}, flow.options().dtype(opmath_dtype));
  at::Tensor projected;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "flow_projection_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto flow_view = view4d<const scalar_t>(flow);
    const auto weight_view = optional_view4d<const scalar_t>(weight);
    const auto band_sum_views = band_views<opmath_t>(band_sums);
    for_each_band_row(batch, bands, height, width, [&](int64_t n, int64_t band, int64_t y) {
      for (int64_t x = 0; x < width; ++x) {
        flow_projection_splat_pixel<scalar_t, opmath_t>(flow_view, weight_view, weighted, band_sum_views[band], height,
                                                        width, n, y, x, PlainAdd{});
      }
    });
    projected = sum_band_copies(band_sums);
    const auto projected_view = view4d<opmath_t>(projected);
    const auto output_view = view4d<scalar_t>(output);
    for_each_row(batch, height, width, [&](int64_t n, int64_t y) {
      for (int64_t x = 0; x < width; ++x) {
        flow_projection_average_pixel<scalar_t, opmath_t>(projected_view, output_view, fill_holes, n, y, x);
      }
    });
    if (!fill_holes) {
      return;
    }
    at::Tensor row_extents = at::empty({batch, height, 2}, flow.options().dtype(at::kLong));
    const LineExtents rows{row_extents.data_ptr<int64_t>(), height};
    for_each_row(batch, height, width, [&](int64_t n, int64_t y) {
      RowFillVisitor<opmath_t> visit{projected_view};
      scan_line(projected_view, image_row(n, y, width), visit, rows.at(n, y));
    });
    for_each_column(batch, height, width, [&](int64_t n, int64_t x) {
      ColumnFillVisitor<scalar_t, opmath_t> visit{projected_view, output_view, rows, fill_from_below};
      int64_t column_extent[2];
      scan_line(projected_view, image_column(n, x, height), visit, column_extent);
    });
  });
  return {output, projected};
}

std::tuple<at::Tensor, at::Tensor> flow_projection_backward_cpu(const at::Tensor& grad_output, const at::Tensor& flow,
                                                                const std::optional<at::Tensor>& weight,
                                                                const at::Tensor& projected, bool fill_holes,
                                                                bool fill_from_below, std::array<bool, 2> output_mask) {
  check_flow_projection_backward_inputs(grad_output, flow, weight, projected);
  const bool weighted = has_tensor(weight);
  const bool want_flow = output_mask[0], want_weight = weighted && output_mask[1];
  const int64_t batch = flow.size(0), height = flow.size(2), width = flow.size(3);
  at::Tensor grad_flow = want_flow ? at::empty_like(flow) : at::empty({0}, flow.options());
  at::Tensor grad_weight = want_weight ? at::empty_like(*weight) : at::empty({0}, flow.options());
  // Gradient with respect to each pixel's average: its own output gradient, plus (with hole
  // filling) the shares of the holes that took their value from it.
  at::Tensor grad_average = at::empty({batch, 2, height, width}, projected.options());
  grad_average.copy_(grad_output);
  if (flow.numel() == 0 || !(want_flow || want_weight)) {
    return {grad_flow, grad_weight};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "flow_projection_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto grad_output_view = view4d<const scalar_t>(grad_output);
    const auto flow_view = view4d<const scalar_t>(flow);
    const auto weight_view = optional_view4d<const scalar_t>(weight);
    const auto projected_view = view4d<const opmath_t>(projected);
    const auto grad_average_view = view4d<opmath_t>(grad_average);
    if (fill_holes) {
      // Rows, then columns, then rows again: each pass owns its lines, so plain adds are race-free.
      at::Tensor row_extents = at::empty({batch, height, 2}, flow.options().dtype(at::kLong));
      at::Tensor column_extents = at::empty({batch, width, 2}, flow.options().dtype(at::kLong));
      const LineExtents rows{row_extents.data_ptr<int64_t>(), height};
      const LineExtents columns{column_extents.data_ptr<int64_t>(), width};
      for_each_row(batch, height, width, [&](int64_t n, int64_t y) {
        ExtentVisitor visit;
        scan_line(projected_view, image_row(n, y, width), visit, rows.at(n, y));
      });
      for_each_column(batch, height, width, [&](int64_t n, int64_t x) {
        FillGradVisitor<scalar_t, opmath_t> visit{grad_output_view, grad_average_view, rows, false, fill_from_below};
        scan_line(projected_view, image_column(n, x, height), visit, columns.at(n, x));
      });
      for_each_row(batch, height, width, [&](int64_t n, int64_t y) {
        FillGradVisitor<scalar_t, opmath_t> visit{grad_output_view, grad_average_view, columns, true, fill_from_below};
        int64_t row_extent[2];
        scan_line(projected_view, image_row(n, y, width), visit, row_extent);
      });
    }
    const auto grad_flow_view = optional_view4d<scalar_t>(want_flow ? std::optional<at::Tensor>(grad_flow)
                                                                    : std::nullopt);
    const auto grad_weight_view = optional_view4d<scalar_t>(want_weight ? std::optional<at::Tensor>(grad_weight)
                                                                        : std::nullopt);
    const auto grad_average_read = view4d<const opmath_t>(grad_average);
    for_each_row(batch, height, width, [&](int64_t n, int64_t y) {
      for (int64_t x = 0; x < width; ++x) {
        flow_projection_grad_pixel<scalar_t, opmath_t>(flow_view, weight_view, weighted, projected_view,
                                                       grad_average_read, grad_flow_view, grad_weight_view, want_flow,
                                                       want_weight, height, width, n, y, x);
      }
    });
  });
  return {grad_flow, grad_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CPU, m) {
  m.impl("flow_projection", &flow_projection_cpu);
  m.impl("flow_projection_backward", &flow_projection_backward_cpu);
}

}  // namespace memc
