// CPU kernels of the flow projection layer: loops over rows calling the shared math in
// memc/flow_projection.h.
//
// Every pass walks memory in rows. Inputs are read a row at a time into opmath scratch (so half
// types are converted once per value, in a loop the compiler vectorises, and any strides are
// handled in one place); the splat adds into private interleaved sums that cover only the rows
// its band's sources reach; the column sweeps of the hole fill walk all columns of a stripe
// together, row after row, and skip the rows without holes. Rows (and stripes of columns) are the
// parallel unit, so one image keeps every thread busy.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common.h"
#include "cpu/convert_rows.h"
#include "cpu/parallel.h"
#include "memc/flow_projection.h"

namespace memc {
namespace {

// float16 and bfloat16: rows converted by the vectorised kernels of cpu/convert_rows.h.
template <typename scalar_t>
constexpr bool kIsHalfType = std::is_same_v<scalar_t, c10::Half> || std::is_same_v<scalar_t, c10::BFloat16>;

// Row y of channel c of image n, converted into `row` (width values).
template <typename scalar_t, typename opmath_t>
void load_row(const Strided4d<const scalar_t>& tensor, int64_t n, int64_t c, int64_t y, int64_t width,
              opmath_t* row) {
  const scalar_t* source = &tensor(n, c, y, 0);
  const int64_t step = tensor.stride_x;
  if constexpr (kIsHalfType<scalar_t>) {
    MEMC_CPU_KERNEL(half_row_to_float<scalar_t>)(source, step, row, width);
  } else if (step == 1) {
    std::copy(source, source + width, row);
  } else {
    for (int64_t x = 0; x < width; ++x) {
      row[x] = static_cast<opmath_t>(source[x * step]);
    }
  }
}

template <typename scalar_t, typename opmath_t>
void store_row(const Strided4d<scalar_t>& tensor, int64_t n, int64_t c, int64_t y, int64_t width,
               const opmath_t* row) {
  scalar_t* target = &tensor(n, c, y, 0);
  const int64_t step = tensor.stride_x;
  if constexpr (kIsHalfType<scalar_t>) {
    MEMC_CPU_KERNEL(float_row_to_half<scalar_t>)(row, target, step, width);
  } else if (step == 1) {
    std::copy(row, row + width, target);
  } else {
    for (int64_t x = 0; x < width; ++x) {
      target[x * step] = static_cast<scalar_t>(row[x]);
    }
  }
}

// A source row's flow (and weight: 1 when unweighted) in opmath.
template <typename scalar_t, typename opmath_t>
struct SourceRow {
  std::vector<opmath_t> flow_x, flow_y, weight;

  explicit SourceRow(int64_t width) : flow_x(width), flow_y(width), weight(width, opmath_t(1)) {}

  void load(const Strided4d<const scalar_t>& flow, const Strided4d<const scalar_t>& weights, bool weighted,
            int64_t n, int64_t y, int64_t width) {
    load_row(flow, n, 0, y, width, flow_x.data());
    load_row(flow, n, 1, y, width, flow_y.data());
    if (weighted) {
      load_row(weights, n, 0, y, width, weight.data());
    }
  }
};

// Calls f(begin, end) over ranges of the batch's rows (image-major), in parallel.
template <typename F>
void for_row_ranges(int64_t batch, int64_t height, int64_t width, const F& f) {
  at::parallel_for(0, batch * height, lines_per_task(width), f);
}

// Stripes of columns per image for the column sweeps: enough to give every thread work, none
// narrower than a few cache lines.
inline int64_t column_stripes(int64_t batch, int64_t width) {
  constexpr int64_t kMinStripeWidth = 64;
  const int64_t threads = at::get_num_threads();
  const int64_t wanted = (threads + batch - 1) / batch;
  return std::max<int64_t>(1, std::min<int64_t>(wanted, width / kMinStripeWidth));
}

// Calls f(n, first_column, end_column) for every stripe of every image, in parallel.
template <typename F>
void for_each_column_stripe(int64_t batch, int64_t width, const F& f) {
  const int64_t stripes = column_stripes(batch, width);
  at::parallel_for(0, batch * stripes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / stripes, stripe = task % stripes;
      f(n, stripe * width / stripes, (stripe + 1) * width / stripes);
    }
  });
}

// The three channels of `projected` (contiguous (B, 3, H, W)) at row y of image n.
template <typename T>
struct ProjectedRows {
  T* data;
  int64_t height, width;

  T* x(int64_t n, int64_t y) const { return data + ((n * 3) * height + y) * width; }
  T* y(int64_t n, int64_t y) const { return data + ((n * 3 + 1) * height + y) * width; }
  T* total(int64_t n, int64_t y) const { return data + ((n * 3 + kTotalWeightChannel) * height + y) * width; }
};

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
  at::Tensor projected = at::empty({batch, 3, height, width}, flow.options().dtype(opmath_dtype));
  // A source can land anywhere in its image: the splat runs in bands of source rows per image, each
  // adding into its band's private sums (see scatter_bands), summed in band order. A band's sums
  // cover only the rows its sources reach: for the usual, smooth flows one image's worth in all.
  const int64_t bands = scatter_bands(batch, height);
  const int64_t tasks = batch * bands;
  auto band_rows = [&](int64_t band) {
    return std::pair<int64_t, int64_t>{band * height / bands, (band + 1) * height / bands};
  };
  std::vector<int64_t> first_row(tasks, height), last_row(tasks, -1), hole_count(batch * height, 0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "flow_projection_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto flow_view = view4d<const scalar_t>(flow);
    const auto weight_view = optional_view4d<const scalar_t>(weight);
    const auto output_view = view4d<scalar_t>(output);
    const ProjectedRows<opmath_t> rows{projected.data_ptr<opmath_t>(), height, width};

    // 1. The target rows each band reaches.
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> flow_y(width);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / bands;
        const auto [y_begin, y_end] = band_rows(task % bands);
        for (int64_t y = y_begin; y < y_end; ++y) {
          load_row(flow_view, n, 1, y, width, flow_y.data());
          for (int64_t x = 0; x < width; ++x) {
            widen_target_rows(y, flow_y[x], height, first_row[task], last_row[task]);
          }
        }
      }
    });
    std::vector<int64_t> offset(tasks + 1, 0);
    for (int64_t task = 0; task < tasks; ++task) {
      offset[task + 1] = offset[task] + std::max<int64_t>(0, last_row[task] - first_row[task] + 1) * width * kCellValues;
    }
    // One allocation made here, not per task: the allocator recycles it from call to call.
    at::Tensor band_sums = at::empty({offset[tasks]}, flow.options().dtype(opmath_dtype));
    opmath_t* const sums = band_sums.data_ptr<opmath_t>();

    // 2. The splat: interleaved (x, y, total) sums per cell, so a source's four cells are two
    // short runs of memory.
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      SourceRow<scalar_t, opmath_t> source(width);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / bands;
        opmath_t* const own = sums + offset[task];
        std::fill(own, sums + offset[task + 1], opmath_t(0));
        const int64_t first = first_row[task];
        auto add = [&](int64_t row, int64_t col, opmath_t value_x, opmath_t value_y, opmath_t share) {
          opmath_t* cell = own + ((row - first) * width + col) * kCellValues;
          cell[0] += value_x;
          cell[1] += value_y;
          cell[2] += share;
        };
        const auto [y_begin, y_end] = band_rows(task % bands);
        for (int64_t y = y_begin; y < y_end; ++y) {
          source.load(flow_view, weight_view, weighted, n, y, width);
          for (int64_t x = 0; x < width; ++x) {
            splat_source(y, x, source.flow_x[x], source.flow_y[x], source.weight[x], height, width, add);
          }
        }
      }
    });

    // 3. Per row: the bands' sums in band order, the averages, the output, the row pass of the fill.
    for_row_ranges(batch, height, width, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / height, y = row % height;
        opmath_t* const row_x = rows.x(n, y);
        opmath_t* const row_y = rows.y(n, y);
        opmath_t* const row_total = rows.total(n, y);
        bool any_band = false;
        for (int64_t band = 0; band < bands; ++band) {
          const int64_t task = n * bands + band;
          if (y < first_row[task] || y > last_row[task]) {
            continue;
          }
          const opmath_t* cell = sums + offset[task] + (y - first_row[task]) * width * kCellValues;
          for (int64_t x = 0; x < width; ++x, cell += kCellValues) {
            row_x[x] = any_band ? row_x[x] + cell[0] : cell[0];
            row_y[x] = any_band ? row_y[x] + cell[1] : cell[1];
            row_total[x] = any_band ? row_total[x] + cell[2] : cell[2];
          }
          any_band = true;
        }
        int64_t holes = width;
        if (any_band) {
          // Separate loops without branches: the compiler runs them in SIMD lanes.
          for (int64_t x = 0; x < width; ++x) {
            const ProjectedPixel<opmath_t> pixel = average_pixel(row_x[x], row_y[x], row_total[x]);
            row_x[x] = pixel.x;
            row_y[x] = pixel.y;
            row_total[x] = pixel.total;
          }
          int64_t received = 0;
          for (int64_t x = 0; x < width; ++x) {
            received += is_received(row_total[x]) ? 1 : 0;
          }
          holes = width - received;
        } else {
          std::fill(row_x, row_x + width, opmath_t(0));
          std::fill(row_y, row_y + width, opmath_t(0));
          std::fill(row_total, row_total + width, opmath_t(0));
        }
        // Holes are written as 0 here; with filling the column sweep writes their values.
        store_row(output_view, n, 0, y, width, row_x);
        store_row(output_view, n, 1, y, width, row_y);
        hole_count[row] = holes;
        if (fill_holes && holes > 0) {
          fill_row_from_sides(row_x, row_y, row_total, width);
        }
      }
    });
    if (!fill_holes) {
      return;
    }

    // 4. The column sweeps: the neighbour below (upwards), then the one above (downwards), which
    // also finishes each hole. Rows without holes only move the nearest received row.
    for_each_column_stripe(batch, width, [&](int64_t n, int64_t x_begin, int64_t x_end) {
      const int64_t* const holes = hole_count.data() + n * height;
      std::vector<int64_t> nearest(x_end - x_begin);
      if (fill_from_below) {
        std::fill(nearest.begin(), nearest.end(), height);
        int64_t last_full_row = height;
        for (int64_t y = height - 1; y >= 0; --y) {
          if (holes[y] == 0) {
            last_full_row = y;
            continue;
          }
          opmath_t *row_x = rows.x(n, y), *row_y = rows.y(n, y), *row_total = rows.total(n, y);
          for (int64_t x = x_begin; x < x_end; ++x) {
            int64_t& below = nearest[x - x_begin];
            if (is_received(row_total[x])) {
              below = y;
              continue;
            }
            const int64_t neighbour = std::min(below, last_full_row);
            if (neighbour < height) {
              add_fill_neighbour(row_x[x], row_y[x], row_total[x], rows.x(n, neighbour)[x], rows.y(n, neighbour)[x]);
            }
          }
        }
      }
      std::fill(nearest.begin(), nearest.end(), -1);
      int64_t last_full_row = -1;
      for (int64_t y = 0; y < height; ++y) {
        if (holes[y] == 0) {
          last_full_row = y;
          continue;
        }
        opmath_t *row_x = rows.x(n, y), *row_y = rows.y(n, y), *row_total = rows.total(n, y);
        for (int64_t x = x_begin; x < x_end; ++x) {
          int64_t& above = nearest[x - x_begin];
          if (is_received(row_total[x])) {
            above = y;
            continue;
          }
          const int64_t neighbour = std::max(above, last_full_row);
          if (neighbour >= 0) {
            add_fill_neighbour(row_x[x], row_y[x], row_total[x], rows.x(n, neighbour)[x], rows.y(n, neighbour)[x]);
          }
          finish_fill(row_x[x], row_y[x], row_total[x]);
          output_view(n, 0, y, x) = static_cast<scalar_t>(row_x[x]);
          output_view(n, 1, y, x) = static_cast<scalar_t>(row_y[x]);
        }
      }
    });
  });
  return {output, projected};
}

std::tuple<at::Tensor, at::Tensor> flow_projection_backward_cpu(const at::Tensor& grad_output, const at::Tensor& flow,
                                                                const std::optional<at::Tensor>& weight,
                                                                const at::Tensor& projected_in, bool fill_holes,
                                                                bool fill_from_below, std::array<bool, 2> output_mask) {
  check_flow_projection_backward_inputs(grad_output, flow, weight, projected_in);
  const bool weighted = has_tensor(weight);
  const bool want_flow = output_mask[0], want_weight = weighted && output_mask[1];
  const int64_t batch = flow.size(0), height = flow.size(2), width = flow.size(3);
  at::Tensor grad_flow = want_flow ? at::empty_like(flow) : at::empty({0}, flow.options());
  at::Tensor grad_weight = want_weight ? at::empty_like(*weight) : at::empty({0}, flow.options());
  if (flow.numel() == 0 || !(want_flow || want_weight)) {
    return {grad_flow, grad_weight};
  }
  const at::Tensor projected = projected_in.contiguous();
  // Per pixel: the gradient with respect to its average, then p and q (see cell_gradient).
  at::Tensor cells = at::empty({batch, height, width, kCellValues}, projected.options());
  std::vector<int64_t> hole_count(fill_holes ? batch * height : 0, 0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "flow_projection_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto grad_output_view = view4d<const scalar_t>(grad_output);
    const ProjectedRows<const opmath_t> rows{projected.data_ptr<opmath_t>(), height, width};
    opmath_t* const cell_data = cells.data_ptr<opmath_t>();
    const int64_t row_values = width * kCellValues;
    auto cells_row = [&](int64_t n, int64_t y) { return cell_data + (n * height + y) * row_values; };
    auto cell_gradients_of_row = [&](int64_t n, int64_t y) {
      opmath_t* cell = cells_row(n, y);
      const opmath_t *row_x = rows.x(n, y), *row_y = rows.y(n, y), *row_total = rows.total(n, y);
      for (int64_t x = 0; x < width; ++x, cell += kCellValues) {
        cell_gradient(cell, row_x + x, row_y + x, row_total[x], want_weight);
      }
    };

    // 1. Per row: the output gradient, plus the shares of the row's holes.
    for_row_ranges(batch, height, width, [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> grad_x(width), grad_y(width);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / height, y = row % height;
        load_row(grad_output_view, n, 0, y, width, grad_x.data());
        load_row(grad_output_view, n, 1, y, width, grad_y.data());
        opmath_t* cell = cells_row(n, y);
        for (int64_t x = 0; x < width; ++x) {
          cell[x * kCellValues] = grad_x[x];
          cell[x * kCellValues + 1] = grad_y[x];
        }
        if (!fill_holes) {
          cell_gradients_of_row(n, y);
          continue;
        }
        const opmath_t* row_total = rows.total(n, y);
        int64_t holes = 0;
        for (int64_t x = 0; x < width; ++x) {
          holes += !is_received(row_total[x]);
        }
        hole_count[row] = holes;
        if (holes > 0) {
          share_row_gradients(cell, row_total, width);
        }
      }
    });

    if (fill_holes) {
      // 2. The column sweep (downwards): the shares of each run of holes go to the received pixels
      // above and (with fill_from_below) below it. Rows without holes end every pending run.
      for_each_column_stripe(batch, width, [&](int64_t n, int64_t x_begin, int64_t x_end) {
        const int64_t* const holes = hole_count.data() + n * height;
        std::vector<ColumnShares<opmath_t>> columns(x_end - x_begin);
        for (auto& column : columns) {
          column.start();
        }
        int64_t last_full_row = -1;
        bool any_pending = false;
        auto end_run = [&](ColumnShares<opmath_t>& column, int64_t x, int64_t below) {
          const int64_t above = std::max(column.above, last_full_row);
          column.end_run(above >= 0 ? cells_row(n, above) + x * kCellValues : nullptr,
                         below >= 0 ? cells_row(n, below) + x * kCellValues : nullptr, fill_from_below);
        };
        for (int64_t y = 0; y < height; ++y) {
          if (holes[y] == 0) {
            if (any_pending) {
              for (int64_t x = x_begin; x < x_end; ++x) {
                if (columns[x - x_begin].pending) {
                  end_run(columns[x - x_begin], x, y);
                }
              }
              any_pending = false;
            }
            last_full_row = y;
            continue;
          }
          const opmath_t* row_total = rows.total(n, y);
          opmath_t* cell = cells_row(n, y);
          for (int64_t x = x_begin; x < x_end; ++x) {
            ColumnShares<opmath_t>& column = columns[x - x_begin];
            if (is_received(row_total[x])) {
              if (column.pending) {
                end_run(column, x, y);
              }
              column.above = y;
            } else {
              column.hole(cell + x * kCellValues, row_total[x]);
              any_pending = true;
            }
          }
        }
        for (int64_t x = x_begin; x < x_end; ++x) {
          if (columns[x - x_begin].pending) {
            end_run(columns[x - x_begin], x, -1);
          }
        }
      });
      // 3. Per row: p and q of each cell.
      for_row_ranges(batch, height, width, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          cell_gradients_of_row(row / height, row % height);
        }
      });
    }

    // 4. Per source row: the gather over each source's cells.
    const auto flow_view = view4d<const scalar_t>(flow);
    const auto weight_view = optional_view4d<const scalar_t>(weight);
    const auto grad_flow_view = optional_view4d<scalar_t>(want_flow ? std::optional<at::Tensor>(grad_flow)
                                                                    : std::nullopt);
    const auto grad_weight_view = optional_view4d<scalar_t>(want_weight ? std::optional<at::Tensor>(grad_weight)
                                                                        : std::nullopt);
    for_row_ranges(batch, height, width, [&](int64_t begin, int64_t end) {
      SourceRow<scalar_t, opmath_t> source(width);
      std::vector<opmath_t> grad_x(width), grad_y(width), grad_w(width);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / height, y = row % height;
        source.load(flow_view, weight_view, weighted, n, y, width);
        const opmath_t* image_cells = cells_row(n, 0);
        for (int64_t x = 0; x < width; ++x) {
          const SourceGradient<opmath_t> gradient =
              source_gradient(y, x, source.flow_x[x], source.flow_y[x], source.weight[x], height, width, image_cells,
                              row_values);
          grad_x[x] = gradient.flow_x;
          grad_y[x] = gradient.flow_y;
          grad_w[x] = gradient.weight;
        }
        if (want_flow) {
          store_row(grad_flow_view, n, 0, y, width, grad_x.data());
          store_row(grad_flow_view, n, 1, y, width, grad_y.data());
        }
        if (want_weight) {
          store_row(grad_weight_view, n, 0, y, width, grad_w.data());
        }
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
