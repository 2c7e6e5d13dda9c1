// Row kernels of the flow projection layer (cpu/flow_projection_rows.h), compiled once per CPU
// capability. A block of sources is located in SIMD lanes with memc/flow_projection.h's rules
// (lands_inside, weight_is_usable, splat_values, gradient_from_sums); the memory each source
// touches (its four cells) is then walked source by source in x order, as the scalar kernels do.
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <limits>

#include "cpu/flow_projection_rows.h"

namespace memc {
namespace CPU_CAPABILITY {

using at::vec::Vectorized;
using Lanes = Vectorized<float>;
constexpr int64_t kLanes = Lanes::size();

namespace {

// Sources [x0, x0 + count) of a row located in lanes: the first cell's row and column where the
// source is projected, row -1 where it is not (locate_projection); the lanes past count are
// never projected (their targets lie past the last column), and their values are not used.
struct LocatedLanes {
  Lanes flow_x, flow_y, weight, projected, multiplicity, first_row, first_column;
  alignas(64) float row[kLanes];
  alignas(64) float column[kLanes];
};

C10_ALWAYS_INLINE void locate_lanes(const SourceRowView& source, int64_t x0, int64_t count, LocatedLanes& lanes) {
  const float last_row = float(source.height - 1), last_col = float(source.width - 1);
  lanes.flow_x = Lanes::loadu(source.flow_x + x0, count);
  lanes.flow_y = Lanes::loadu(source.flow_y + x0, count);
  lanes.weight = source.weight != nullptr ? Lanes::loadu(source.weight + x0, count) : Lanes(1.0f);
  const Lanes target_y = Lanes(float(source.y)) + lanes.flow_y;
  const Lanes target_x = Lanes::arange(float(x0), 1.0f) + lanes.flow_x;
  lanes.projected = lands_inside(target_y, target_x, last_row, last_col) & weight_is_usable<float>(lanes.weight);
  // The targets of projected lanes are >= 0 and at most the last row / column: truncation is
  // floor, and a clamped direction (the first cell in the last row or column) counts twice.
  const Lanes row = target_y.trunc(), column = target_x.trunc(), one(1.0f);
  lanes.multiplicity = (one + ((row == Lanes(last_row)) & one)) * (one + ((column == Lanes(last_col)) & one));
  lanes.first_row = Lanes::blendv(Lanes(-1.0f), row, lanes.projected);
  lanes.first_column = column;
  lanes.first_row.store(lanes.row);
  column.store(lanes.column);
}

}  // namespace

void target_row_span(const float* flow_y, int64_t y, int64_t height, int64_t width, int64_t* first, int64_t* last) {
  const float last_row = float(height - 1);
  const Lanes row_y = Lanes(float(y)), zero = Lanes(0.0f), one = Lanes(1.0f);
  Lanes lowest(std::numeric_limits<float>::infinity()), highest(-1.0f);
  int64_t x = 0;
  for (; x + kLanes <= width; x += kLanes) {  // widen_target_rows in lanes
    const Lanes target_y = row_y + Lanes::loadu(flow_y + x);
    const Lanes inside = (target_y >= zero) & (target_y <= Lanes(last_row));
    const Lanes row = target_y.trunc();
    lowest = at::vec::minimum(lowest, Lanes::blendv(lowest, row, inside));
    highest = at::vec::maximum(highest, Lanes::blendv(highest, at::vec::minimum(row + one, Lanes(last_row)), inside));
  }
  alignas(64) float low[kLanes], high[kLanes];
  lowest.store(low);
  highest.store(high);
  for (int64_t i = 0; i < kLanes; ++i) {
    if (high[i] >= 0.0f) {
      *first = std::min(*first, static_cast<int64_t>(low[i]));
      *last = std::max(*last, static_cast<int64_t>(high[i]));
    }
  }
  for (; x < width; ++x) {
    widen_target_rows(y, flow_y[x], height, *first, *last);
  }
}

// The sources are walked in x order, each adding its values to its four cells. Neighbouring
// sources of a smooth flow mostly share a column of cells (one's right cells are the next one's
// left cells), so the right cells' sums stay in registers until a source goes elsewhere: memory
// then sees each sum once, without waiting on the store just made (the adds and their order are
// those of adding to memory every time).
void splat_row(const SourceRowView& source, const SplatTargets& targets) {
  LocatedLanes lanes;
  alignas(64) float value_x[kLanes], value_y[kLanes], share[kLanes];
  float* held_top = nullptr;  // the cells whose sums are held in registers (held_top: none)
  float* held_bottom = nullptr;
  FloatCell top_sum{}, bottom_sum{};
  for (int64_t x0 = 0; x0 < source.width; x0 += kLanes) {
    const int64_t count = std::min(kLanes, source.width - x0);
    locate_lanes(source, x0, count, lanes);
    Lanes x, y, s;
    splat_values(lanes.flow_x, lanes.flow_y, lanes.weight, lanes.multiplicity, x, y, s);
    x.store(value_x);
    y.store(value_y);
    s.store(share);
    for (int64_t i = 0; i < count; ++i) {
      if (lanes.row[i] < 0.0f) {
        continue;
      }
      // The four cells in splat_source's order; a source at the last row or column also adds to
      // the spare cells (see splat_band), its merged cells carrying the share already.
      const int64_t row = static_cast<int64_t>(lanes.row[i]) - targets.first_row;
      const int64_t column = static_cast<int64_t>(lanes.column[i]) * kCellValues;
      const FloatCell values = make_cell(value_x[i], value_y[i], share[i]);
      float* const top = targets.rows[row] + column;
      float* const bottom = targets.rows[row + 1] + column;
      FloatCell top_left, bottom_left;
      if (top == held_top) {  // the previous source's right cells are this one's left cells
        top_left = add_cells(top_sum, values);
        bottom_left = add_cells(bottom_sum, values);
      } else {
        if (held_top != nullptr) {
          store_cell(held_top, top_sum);
          store_cell(held_bottom, bottom_sum);
        }
        top_left = add_cells(load_cell(top), values);
        bottom_left = add_cells(load_cell(bottom), values);
      }
      store_cell(top, top_left);
      store_cell(bottom, bottom_left);
      held_top = top + kCellValues;
      held_bottom = bottom + kCellValues;
      top_sum = add_cells(load_cell(held_top), values);
      bottom_sum = add_cells(load_cell(held_bottom), values);
    }
  }
  if (held_top != nullptr) {
    store_cell(held_top, top_sum);
    store_cell(held_bottom, bottom_sum);
  }
}

// Each projected source reads the four-cell sums of its first cell (four_cell_sums_row ran over
// the image): one gathered vector per value instead of four cells per source. The others read
// cell 0 and are zeroed after.
void gather_row(const SourceRowView& source, const GatherTargets& targets) {
  using Indices = Vectorized<int32_t>;
  LocatedLanes lanes;
  const Lanes zero(0.0f);
  const Indices row_values(static_cast<int32_t>(targets.row_values)), cell_values(static_cast<int32_t>(targets.cell_values));
  const float* const cells = targets.cells;
  for (int64_t x0 = 0; x0 < source.width; x0 += kLanes) {
    const int64_t count = std::min(kLanes, source.width - x0);
    locate_lanes(source, x0, count, lanes);
    const Indices row = at::vec::convert_to_int_of_same_size(Lanes::blendv(zero, lanes.first_row, lanes.projected));
    const Indices column =
        at::vec::convert_to_int_of_same_size(Lanes::blendv(zero, lanes.first_column, lanes.projected));
    const Indices first = row * row_values + column * cell_values;
    // Loaded one source at a time: faster here than SIMD gathers (slow where a CPU's microcode
    // mitigates Gather Data Sampling).
    alignas(64) int32_t offsets[kLanes];
    alignas(64) float sums_x[kLanes], sums_y[kLanes], sums_q[kLanes];
    first.store(offsets);
    for (int64_t i = 0; i < kLanes; ++i) {
      sums_x[i] = cells[offsets[i]];
      sums_y[i] = cells[offsets[i] + 1];
    }
    if (targets.cell_values == kCellValues) {
      for (int64_t i = 0; i < kLanes; ++i) {
        sums_q[i] = cells[offsets[i] + 2];
      }
    }
    const Lanes sum_x = Lanes::loadu(sums_x), sum_y = Lanes::loadu(sums_y);
    const Lanes sum_q = targets.cell_values == kCellValues ? Lanes::loadu(sums_q) : zero;
    const SourceGradient<Lanes> gradient =
        gradient_from_sums(lanes.multiplicity, lanes.flow_x, lanes.flow_y, lanes.weight, sum_x, sum_y, sum_q);
    Lanes::blendv(zero, gradient.flow_x, lanes.projected).store(targets.grad_flow_x + x0, count);
    Lanes::blendv(zero, gradient.flow_y, lanes.projected).store(targets.grad_flow_y + x0, count);
    if (targets.cell_values == kCellValues) {
      Lanes::blendv(zero, gradient.weight, lanes.projected).store(targets.grad_weight + x0, count);
    }
  }
}

// Value k of pixel i lies at cells[i * cell_values + k] and its right neighbour's cell_values
// further on, so the row is summed as one flat array; the last pixel has no right neighbour (a
// zero cell, as in source_cells).
void four_cell_sums_row(float* cells, const float* below, int64_t cell_values, int64_t width) {
  const int64_t inner = (width - 1) * cell_values, values = width * cell_values;
  int64_t k = 0;
  if (below != nullptr) {
    for (; k + kLanes <= inner; k += kLanes) {
      sum_of_four(Lanes::loadu(cells + k), Lanes::loadu(cells + k + cell_values), Lanes::loadu(below + k),
                  Lanes::loadu(below + k + cell_values))
          .store(cells + k);
    }
    for (; k < inner; ++k) {
      cells[k] = sum_of_four(cells[k], cells[k + cell_values], below[k], below[k + cell_values]);
    }
    for (; k < values; ++k) {
      cells[k] = sum_of_four(cells[k], 0.0f, below[k], 0.0f);
    }
  } else {
    for (; k + kLanes <= inner; k += kLanes) {
      const Lanes zero(0.0f);
      sum_of_four(Lanes::loadu(cells + k), Lanes::loadu(cells + k + cell_values), zero, zero).store(cells + k);
    }
    for (; k < inner; ++k) {
      cells[k] = sum_of_four(cells[k], cells[k + cell_values], 0.0f, 0.0f);
    }
    for (; k < values; ++k) {
      cells[k] = sum_of_four(cells[k], 0.0f, 0.0f, 0.0f);
    }
  }
}

void average_row(const float* sums, float* row_x, float* row_y, float* row_total, int64_t width) {
  int64_t i = 0;
  for (; i + kLanes <= width; i += kLanes) {
    // kLanes cells (x, y, share, 0) into lanes of x, y and share: two rounds of deinterleaving.
    const float* const cells = sums + i * kCellValues;
    const auto [x_share_low, y_low] = at::vec::deinterleave2(Lanes::loadu(cells), Lanes::loadu(cells + kLanes));
    const auto [x_share_high, y_high] =
        at::vec::deinterleave2(Lanes::loadu(cells + 2 * kLanes), Lanes::loadu(cells + 3 * kLanes));
    const auto [x, share] = at::vec::deinterleave2(x_share_low, x_share_high);
    const auto [y, unused] = at::vec::deinterleave2(y_low, y_high);
    const ProjectedPixel<Lanes> pixel = average_pixel(x, y, share);
    pixel.x.store(row_x + i);
    pixel.y.store(row_y + i);
    pixel.total.store(row_total + i);
  }
  for (; i < width; ++i) {
    const float* const cell = sums + i * kCellValues;
    const ProjectedPixel<float> pixel = average_pixel(cell[0], cell[1], cell[2]);
    row_x[i] = pixel.x;
    row_y[i] = pixel.y;
    row_total[i] = pixel.total;
  }
}

void interleave_row(const float* x, const float* y, float* pairs, int64_t width) {
  int64_t i = 0;
  for (; i + kLanes <= width; i += kLanes) {
    const auto [low, high] = at::vec::interleave2(Lanes::loadu(x + i), Lanes::loadu(y + i));
    low.store(pairs + 2 * i);
    high.store(pairs + 2 * i + kLanes);
  }
  for (; i < width; ++i) {
    pairs[2 * i] = x[i];
    pairs[2 * i + 1] = y[i];
  }
}

// cell_flow_gradient in lanes where settles_in_row_pass holds (rows total_above, total_below;
// nullptr: none, which stands in the pixel's own row); the other cells keep their values.
void flow_cell_gradients_row(float* pairs, const float* total, const float* total_above, const float* total_below,
                             int64_t width) {
  const float* const above = total_above != nullptr ? total_above : total;
  const float* const below = total_below != nullptr ? total_below : total;
  int64_t i = 0;
  for (; i + kLanes <= width; i += kLanes) {
    const Lanes t = Lanes::loadu(total + i);
    const Lanes settle = settles_in_row_pass(t, Lanes::loadu(above + i), Lanes::loadu(below + i));
    // The pairs (x, y) of kLanes pixels, deinterleaved into lanes and back.
    auto [x, y] = at::vec::deinterleave2(Lanes::loadu(pairs + 2 * i), Lanes::loadu(pairs + 2 * i + kLanes));
    cell_flow_gradient<float>(x, y, t, settle);
    const auto [low, high] = at::vec::interleave2(x, y);
    low.store(pairs + 2 * i);
    high.store(pairs + 2 * i + kLanes);
  }
  for (; i < width; ++i) {
    cell_flow_gradient<float>(pairs[2 * i], pairs[2 * i + 1], total[i],
                              settles_in_row_pass(total[i], above[i], below[i]));
  }
}

void hole_shares_row(float* cells, const float* total, int64_t cell_values, int64_t width) {
  int64_t i = 0;
  if (cell_values == 2) {
    for (; i + kLanes <= width; i += kLanes) {
      auto [x, y] = at::vec::deinterleave2(Lanes::loadu(cells + 2 * i), Lanes::loadu(cells + 2 * i + kLanes));
      hole_share(x, y, Lanes::loadu(total + i));
      const auto [low, high] = at::vec::interleave2(x, y);
      low.store(cells + 2 * i);
      high.store(cells + 2 * i + kLanes);
    }
  }
  for (; i < width; ++i) {
    hole_share(cells[i * cell_values], cells[i * cell_values + 1], total[i]);
  }
}

void add_hole_shares_row(float* share_x, float* share_y, const float* cells, int64_t cell_values, const float* total,
                         int64_t count) {
  int64_t i = 0;
  if (cell_values == 2) {
    for (; i + kLanes <= count; i += kLanes) {
      const auto [x, y] = at::vec::deinterleave2(Lanes::loadu(cells + 2 * i), Lanes::loadu(cells + 2 * i + kLanes));
      Lanes sum_x = Lanes::loadu(share_x + i), sum_y = Lanes::loadu(share_y + i);
      add_hole_share(sum_x, sum_y, x, y, Lanes::loadu(total + i));
      sum_x.store(share_x + i);
      sum_y.store(share_y + i);
    }
  }
  for (; i < count; ++i) {
    add_hole_share(share_x[i], share_y[i], cells[i * cell_values], cells[i * cell_values + 1], total[i]);
  }
}

int64_t sweep_row(float* row_x, float* row_y, float* row_total, float* near_x, float* near_y, float* found,
                  int64_t columns, bool finish) {
  const Lanes zero(0.0f), one(1.0f);
  int64_t i = 0;
  for (; i + kLanes <= columns; i += kLanes) {
    const Lanes x = Lanes::loadu(row_x + i), y = Lanes::loadu(row_y + i), total = Lanes::loadu(row_total + i);
    const Lanes received = is_received(total);
    if (received.zero_mask() == 0) {  // every column received: it becomes the nearest, the row stays
      x.store(near_x + i);
      y.store(near_y + i);
      one.store(found + i);
      continue;
    }
    const Lanes neighbour_x = Lanes::loadu(near_x + i), neighbour_y = Lanes::loadu(near_y + i);
    const Lanes passed = Lanes::loadu(found + i);
    Lanes hole_x = x, hole_y = y, hole_total = total;
    add_fill_neighbour(hole_x, hole_y, hole_total, neighbour_x, neighbour_y);
    const Lanes add = passed > zero;  // (only holes take hole_x, hole_y, hole_total)
    hole_x = Lanes::blendv(x, hole_x, add);
    hole_y = Lanes::blendv(y, hole_y, add);
    hole_total = Lanes::blendv(total, hole_total, add);
    if (finish) {
      finish_fill(hole_x, hole_y, hole_total);
    }
    Lanes::blendv(neighbour_x, x, received).store(near_x + i);
    Lanes::blendv(neighbour_y, y, received).store(near_y + i);
    Lanes::blendv(passed, one, received).store(found + i);
    Lanes::blendv(hole_x, x, received).store(row_x + i);
    Lanes::blendv(hole_y, y, received).store(row_y + i);
    Lanes::blendv(hole_total, total, received).store(row_total + i);
  }
  return i;
}

int64_t count_received_row(const float* total, int64_t width) {
  // Per lane a count in float, exact below 2^24 (width is, where the row kernels run).
  const Lanes zero(0.0f), one(1.0f);
  Lanes counts(0.0f);
  int64_t i = 0;
  for (; i + kLanes <= width; i += kLanes) {
    counts = counts + Lanes::blendv(zero, one, is_received(Lanes::loadu(total + i)));
  }
  alignas(64) float lane_counts[kLanes];
  counts.store(lane_counts);
  int64_t received = 0;
  for (int64_t lane = 0; lane < kLanes; ++lane) {
    received += static_cast<int64_t>(lane_counts[lane]);
  }
  for (; i < width; ++i) {
    received += is_received(total[i]) ? 1 : 0;
  }
  return received;
}

}  // namespace CPU_CAPABILITY
}  // namespace memc
