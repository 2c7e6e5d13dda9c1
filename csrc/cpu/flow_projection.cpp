// CPU kernels of the flow projection layer: loops over rows calling the shared math in
// memc/flow_projection.h.
//
// Every pass walks memory in rows. Inputs are read a row at a time (float32 rows of stride 1 in
// place, others converted into opmath scratch, half types a vector at a time); the splat adds into
// a private ring of interleaved sums holding only the target rows its band can still reach, and
// finishes each target row (averages, output, the row pass of the fill) as soon as it is complete;
// the column sweeps of the hole fill walk all columns of a stripe together, row after row,
// carrying each column's nearest average and skipping the rows without holes. With as many
// images as threads a task does one image's whole forward (or backward): one parallel loop; with
// fewer, bands of rows and stripes of columns keep every thread busy.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <limits>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common.h"
#include "cpu/convert_rows.h"
#include "cpu/flow_projection_rows.h"
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

// Writes `row` (width values) into row y of channel c of image n from column x_begin on.
template <typename scalar_t, typename opmath_t>
void store_row(const Strided4d<scalar_t>& tensor, int64_t n, int64_t c, int64_t y, int64_t width,
               const opmath_t* row, int64_t x_begin = 0) {
  scalar_t* target = &tensor(n, c, y, x_begin);
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

// Row y of channel c of image n in opmath: the tensor's own memory where it already is one (opmath
// dtype, stride 1), else converted into `scratch` (width values).
template <typename scalar_t, typename opmath_t>
const opmath_t* read_row(const Strided4d<const scalar_t>& tensor, int64_t n, int64_t c, int64_t y, int64_t width,
                         opmath_t* scratch) {
  if constexpr (std::is_same_v<scalar_t, opmath_t>) {
    if (tensor.stride_x == 1) {
      return &tensor(n, c, y, 0);
    }
  }
  load_row(tensor, n, c, y, width, scratch);
  return scratch;
}

// Where to compute row y of channel c of image n in opmath: in the tensor itself where it is one
// (opmath dtype, stride 1), else in `scratch`, which write_row then stores.
template <typename scalar_t, typename opmath_t>
opmath_t* row_to_write(const Strided4d<scalar_t>& tensor, int64_t n, int64_t c, int64_t y, opmath_t* scratch) {
  if constexpr (std::is_same_v<scalar_t, opmath_t>) {
    if (tensor.stride_x == 1) {
      return &tensor(n, c, y, 0);
    }
  }
  return scratch;
}

template <typename scalar_t, typename opmath_t>
void write_row(const Strided4d<scalar_t>& tensor, int64_t n, int64_t c, int64_t y, int64_t width,
               const opmath_t* row) {
  if (static_cast<const void*>(row) != static_cast<const void*>(&tensor(n, c, y, 0))) {
    store_row(tensor, n, c, y, width, row);
  }
}

// A source row's flow (and weight: 1 when unweighted) in opmath.
template <typename scalar_t, typename opmath_t>
struct SourceRow {
  std::vector<opmath_t> scratch_x, scratch_y, scratch_weight;
  const opmath_t *flow_x = nullptr, *flow_y = nullptr, *weight = nullptr;

  explicit SourceRow(int64_t width) : scratch_x(width), scratch_y(width), scratch_weight(width, opmath_t(1)) {
    weight = scratch_weight.data();
  }

  void load(const Strided4d<const scalar_t>& flow, const Strided4d<const scalar_t>& weights, bool weighted,
            int64_t n, int64_t y, int64_t width) {
    flow_x = read_row(flow, n, 0, y, width, scratch_x.data());
    flow_y = read_row(flow, n, 1, y, width, scratch_y.data());
    if (weighted) {
      weight = read_row(weights, n, 0, y, width, scratch_weight.data());
    }
  }
};

// A cell's kCellValues sums, added to element by element (double; float32 has the vector
// versions of cpu/flow_projection_rows.h).
template <typename T>
struct CellValues {
  T values[kCellValues];
};

template <typename T>
C10_ALWAYS_INLINE CellValues<T> make_cell(T x, T y, T share) {
  return {{x, y, share, T(0)}};
}

template <typename T>
C10_ALWAYS_INLINE void add_to_cell(T* cell, const CellValues<T>& cell_values) {
  for (int k = 0; k < kCellValues; ++k) {
    cell[k] += cell_values.values[k];
  }
}

// The target rows [first, last] a source row's splat reaches (first > last: none).
struct RowSpan {
  int64_t first = std::numeric_limits<int64_t>::max(), last = -1;

  bool empty() const { return first > last; }
};

// Whether the float32 row kernels (cpu/flow_projection_rows.h) take a frame of this size.
template <typename opmath_t>
bool use_row_kernels(int64_t height, int64_t width) {
  return std::is_same_v<opmath_t, float> && height < kMaxRowKernelSize && width < kMaxRowKernelSize;
}

// The target rows a source row's splat reaches (widen_target_rows over the row).
template <typename opmath_t>
RowSpan target_rows(const opmath_t* flow_y, int64_t y, int64_t height, int64_t width) {
  RowSpan span;
  if constexpr (std::is_same_v<opmath_t, float>) {
    if (use_row_kernels<opmath_t>(height, width)) {
      MEMC_CPU_KERNEL(target_row_span)(flow_y, y, height, width, &span.first, &span.last);
      return span;
    }
  }
  for (int64_t x = 0; x < width; ++x) {
    widen_target_rows(y, flow_y[x], height, span.first, span.last);
  }
  return span;
}

// How many pixels of a row of total weights received nothing.
template <typename opmath_t>
int64_t count_holes(const opmath_t* total, int64_t width) {
  if constexpr (std::is_same_v<opmath_t, float>) {
    if (width < kMaxRowKernelSize) {
      return width - MEMC_CPU_KERNEL(count_received_row)(total, width);
    }
  }
  int64_t holes = 0;
  for (int64_t x = 0; x < width; ++x) {
    holes += is_received(total[x]) ? 0 : 1;
  }
  return holes;
}

// Whether the backward's gather goes by the float32 row kernels, reading each cell's sum with its
// neighbours right, below and below right (four_cell_sums_row, made once per cell rather than per
// source that reads it) with 32-bit indices.
template <typename opmath_t>
bool gathers_four_cell_sums(int64_t height, int64_t width, int64_t cell_values) {
  return use_row_kernels<opmath_t>(height, width) &&
         height * width * cell_values <= std::numeric_limits<int32_t>::max();
}

// A row of the backward's cells made four-cell sums (the float32 row kernel; only where
// gathers_four_cell_sums), the row below (nullptr: none) still as it was.
template <typename opmath_t>
void four_cell_sums(opmath_t* cells, const opmath_t* below, int64_t cell_values, int64_t width) {
  if constexpr (std::is_same_v<opmath_t, float>) {
    MEMC_CPU_KERNEL(four_cell_sums_row)(cells, below, cell_values, width);
  }
}

// The backward's gather of a source row: each source's gradient from its cells (source_gradient),
// by the float32 row kernel from the four-cell sums where gathers_four_cell_sums.
template <typename opmath_t>
void gather_source_row(const opmath_t* flow_x, const opmath_t* flow_y, const opmath_t* weight, int64_t y,
                       int64_t height, int64_t width, const opmath_t* cells, int64_t cell_values,
                       opmath_t* grad_flow_x, opmath_t* grad_flow_y, opmath_t* grad_weight) {
  const int64_t row_values = width * cell_values;
  if constexpr (std::is_same_v<opmath_t, float>) {
    if (gathers_four_cell_sums<opmath_t>(height, width, cell_values)) {
      MEMC_CPU_KERNEL(gather_row)(SourceRowView{flow_x, flow_y, weight, y, height, width},
                                  GatherTargets{cells, cell_values, row_values, grad_flow_x, grad_flow_y, grad_weight});
      return;
    }
  }
  for (int64_t x = 0; x < width; ++x) {
    const SourceGradient<opmath_t> gradient =
        source_gradient(y, x, flow_x[x], flow_y[x], weight != nullptr ? weight[x] : opmath_t(1), height, width, cells,
                        row_values, cell_values);
    grad_flow_x[x] = gradient.flow_x;
    grad_flow_y[x] = gradient.flow_y;
    grad_weight[x] = gradient.weight;
  }
}

// cell_flow_gradient over a row of two-value cells where settles_in_row_pass holds (rows
// total_above, total_below; nullptr: none); the other cells keep their values.
template <typename opmath_t>
void flow_cell_gradients(opmath_t* cells, const opmath_t* total, const opmath_t* total_above,
                         const opmath_t* total_below, int64_t width) {
  if constexpr (std::is_same_v<opmath_t, float>) {
    MEMC_CPU_KERNEL(flow_cell_gradients_row)(cells, total, total_above, total_below, width);
  } else {
    const opmath_t* const above = total_above != nullptr ? total_above : total;
    const opmath_t* const below = total_below != nullptr ? total_below : total;
    for (int64_t x = 0; x < width; ++x) {
      cell_flow_gradient<opmath_t>(cells[2 * x], cells[2 * x + 1], total[x],
                                   settles_in_row_pass(total[x], above[x], below[x]));
    }
  }
}

// The backward's first values of a row's cells (cell_values per pixel): the output gradient (and
// zeros after it in four-value cells, where q is written only at received pixels).
template <typename opmath_t>
void interleave_gradients(const opmath_t* grad_x, const opmath_t* grad_y, opmath_t* cells, int64_t cell_values,
                          int64_t width) {
  if constexpr (std::is_same_v<opmath_t, float>) {
    if (cell_values == 2) {
      MEMC_CPU_KERNEL(interleave_row)(grad_x, grad_y, cells, width);
      return;
    }
  }
  for (int64_t x = 0; x < width; ++x) {
    cells[x * cell_values] = grad_x[x];
    cells[x * cell_values + 1] = grad_y[x];
    for (int64_t k = 2; k < cell_values; ++k) {
      cells[x * cell_values + k] = opmath_t(0);
    }
  }
}

// Each hole's cell of a row of the backward's cells made its share (make_hole_share), in lanes for
// float.
template <typename opmath_t>
void hole_shares(opmath_t* cells, const opmath_t* total, int64_t cell_values, int64_t width) {
  if constexpr (std::is_same_v<opmath_t, float>) {
    MEMC_CPU_KERNEL(hole_shares_row)(cells, total, cell_values, width);
  } else {
    for (int64_t x = 0; x < width; ++x) {
      hole_share(cells[x * cell_values], cells[x * cell_values + 1], total[x]);
    }
  }
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

// The forward's inputs and outputs, and its per-row bookkeeping.
template <typename scalar_t, typename opmath_t>
struct ForwardPass {
  Strided4d<const scalar_t> flow, weight;
  Strided4d<scalar_t> output;
  ProjectedRows<opmath_t> rows;
  bool weighted, fill_holes, fill_from_below;
  int64_t batch, height, width;
  int64_t* hole_count;  // per row of the batch: its holes before filling

  bool use_row_kernels() const { return memc::use_row_kernels<opmath_t>(height, width); }

  // spans[i]: the target rows of source row y_begin + i of image n.
  void find_spans(int64_t n, int64_t y_begin, int64_t y_end, RowSpan* spans, std::vector<opmath_t>& scratch) const {
    scratch.resize(width);
    for (int64_t y = y_begin; y < y_end; ++y) {
      spans[y - y_begin] = target_rows(read_row(flow, n, 1, y, width, scratch.data()), y, height, width);
    }
  }

  // Row r of image n from its interleaved sums (kCellValues per pixel): the averages and totals in
  // `projected`, the output (0 at holes), the hole count and the row pass of the fill.
  void finish_row(int64_t n, int64_t r, const opmath_t* sums) const {
    opmath_t* const row_x = rows.x(n, r);
    opmath_t* const row_y = rows.y(n, r);
    opmath_t* const row_total = rows.total(n, r);
    if constexpr (std::is_same_v<opmath_t, float>) {
      MEMC_CPU_KERNEL(average_row)(sums, row_x, row_y, row_total, width);
    } else {
      for (int64_t x = 0; x < width; ++x) {
        const opmath_t* cell = sums + x * kCellValues;
        const ProjectedPixel<opmath_t> pixel = average_pixel(cell[0], cell[1], cell[2]);
        row_x[x] = pixel.x;
        row_y[x] = pixel.y;
        row_total[x] = pixel.total;
      }
    }
    finish_row_pass(n, r, count_holes(row_total, width));
  }

  // A row nothing reached: all holes.
  void finish_empty_row(int64_t n, int64_t r) const {
    std::fill_n(rows.x(n, r), width, opmath_t(0));
    std::fill_n(rows.y(n, r), width, opmath_t(0));
    std::fill_n(rows.total(n, r), width, opmath_t(0));
    finish_row_pass(n, r, width);
  }

  void finish_row_pass(int64_t n, int64_t r, int64_t holes) const {
    hole_count[n * height + r] = holes;
    if (fill_holes && holes > 0) {  // the last column sweep writes the whole row's output
      fill_row_from_sides(rows.x(n, r), rows.y(n, r), rows.total(n, r), width);
      return;
    }
    // (Without filling, holes are written as 0.)
    store_row(output, n, 0, r, width, rows.x(n, r));
    store_row(output, n, 1, r, width, rows.y(n, r));
  }

  // The splat of source rows [y_begin, y_end) of image n (their target rows: spans), into a ring
  // of interleaved sums that holds only the target rows still open: a target row is handed to
  // done(r, sums) once no later source row of the band reaches it, every row in
  // [first target row, last target row] in order. For smooth flows the ring holds a few rows and
  // stays in cache; a flow that sends every row anywhere needs all of them.
  template <typename Done>
  void splat_band(int64_t n, int64_t y_begin, int64_t y_end, const RowSpan* spans,
                  SourceRow<scalar_t, opmath_t>& source, std::vector<opmath_t>& ring,
                  std::vector<opmath_t*>& row_table, const Done& done) const {
    constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
    const int64_t count = y_end - y_begin;
    std::vector<int64_t> later_first(count + 1, kNone);  // the first target row of source rows i and after
    for (int64_t i = count - 1; i >= 0; --i) {
      later_first[i] = std::min(later_first[i + 1], spans[i].empty() ? kNone : spans[i].first);
    }
    const int64_t first = later_first[0];
    if (first == kNone) {
      return;
    }
    int64_t last = -1, capacity = 1;  // capacity: the most target rows open at once
    for (int64_t i = 0; i < count; ++i) {
      if (!spans[i].empty()) {
        last = std::max(last, spans[i].last);
        capacity = std::max(capacity, last - later_first[i] + 1);
      }
    }
    // Each ring row has a spare cell after the last column and the ring a spare row: there a
    // source at the last column or row sends the nominal cells that clamping merged into others
    // (whose share its merged cells already carry), so that every source makes four adds.
    const int64_t row_values = (width + 1) * kCellValues;
    ring.resize((capacity + 1) * row_values);
    row_table.resize(last - first + 2);
    for (int64_t r = first; r <= last; ++r) {
      row_table[r - first] = ring.data() + (r - first) % capacity * row_values;
    }
    row_table[last + 1 - first] = ring.data() + capacity * row_values;  // the row below row H - 1
    auto table = [&](int64_t r) { return row_table[r - first]; };  // target row r's sums
    int64_t next_zero = first, next_done = first;
    auto finish_rows_before = [&](int64_t limit) {
      for (; next_done < limit; ++next_done) {
        if (next_done == next_zero) {  // a row no source reaches
          std::fill_n(table(next_zero++), row_values, opmath_t(0));
        }
        done(next_done, table(next_done));
      }
    };
    for (int64_t i = 0; i < count; ++i) {
      finish_rows_before(std::min(later_first[i], last + 1));
      if (spans[i].empty()) {
        continue;
      }
      for (; next_zero <= spans[i].last; ++next_zero) {
        std::fill_n(table(next_zero), row_values, opmath_t(0));
      }
      const int64_t y = y_begin + i;
      source.load(flow, weight, weighted, n, y, width);
      if constexpr (std::is_same_v<opmath_t, float>) {
        if (use_row_kernels()) {
          MEMC_CPU_KERNEL(splat_row)(SourceRowView{source.flow_x, source.flow_y, weighted ? source.weight : nullptr, y,
                                                   height, width},
                                     SplatTargets{row_table.data(), first});
          continue;
        }
      }
      for (int64_t x = 0; x < width; ++x) {
        const SourceSplat<opmath_t> splat =
            source_splat(y, x, source.flow_x[x], source.flow_y[x], source.weight[x], height, width);
        if (!splat.cells.projected) {
          continue;
        }
        // The four cells in splat_source's order; each receives this source's one add.
        const auto values = make_cell(splat.value_x, splat.value_y, splat.share);
        const int64_t column = splat.cells.cols[0] * kCellValues;
        opmath_t* const top = table(splat.cells.rows[0]) + column;
        opmath_t* const bottom = table(splat.cells.rows[0] + 1) + column;
        add_to_cell(top, values);
        add_to_cell(top + kCellValues, values);
        add_to_cell(bottom, values);
        add_to_cell(bottom + kCellValues, values);
      }
    }
    finish_rows_before(last + 1);
  }

  // The averages of the nearest received pixel passed in each column of a stripe, and 1 where
  // there is one (0 before the first).
  struct Nearest {
    std::vector<opmath_t> x, y, found;
  };

  // One column sweep of the hole fill over columns [x_begin, x_end) of image n: each hole gains the
  // average of its nearest received pixel below (step -1: the sweep runs upwards) or above (step +1:
  // downwards), and with `finish` (the last sweep) its final value and output. The sweep carries
  // each column's nearest average along (no lookups of other rows) and its loop has no branches,
  // so that it runs in SIMD lanes (sweep_row for float); rows without holes are skipped, the last
  // one passed becoming every column's nearest.
  template <bool finish>
  void sweep_columns(int64_t n, int64_t x_begin, int64_t x_end, int64_t step, Nearest& nearest) const {
    const int64_t columns = x_end - x_begin;
    const int64_t* const holes = hole_count + n * height;
    nearest.x.assign(columns, opmath_t(0));
    nearest.y.assign(columns, opmath_t(0));
    nearest.found.assign(columns, opmath_t(0));
    opmath_t *near_x = nearest.x.data(), *near_y = nearest.y.data(), *found = nearest.found.data();
    int64_t full_row = -1;  // a row without holes passed since the last row with holes
    for (int64_t y = step > 0 ? 0 : height - 1; y >= 0 && y < height; y += step) {
      if (holes[y] == 0) {
        full_row = y;
        continue;
      }
      if (full_row >= 0) {
        std::copy_n(rows.x(n, full_row) + x_begin, columns, near_x);
        std::copy_n(rows.y(n, full_row) + x_begin, columns, near_y);
        std::fill_n(found, columns, opmath_t(1));
        full_row = -1;
      }
      opmath_t* const row_x = rows.x(n, y) + x_begin;
      opmath_t* const row_y = rows.y(n, y) + x_begin;
      opmath_t* const row_total = rows.total(n, y) + x_begin;
      int64_t i = 0;
      if constexpr (std::is_same_v<opmath_t, float>) {
        i = MEMC_CPU_KERNEL(sweep_row)(row_x, row_y, row_total, near_x, near_y, found, columns, finish);
      }
      for (; i < columns; ++i) {
        const opmath_t x = row_x[i], y = row_y[i], total = row_total[i], neighbour_x = near_x[i],
                       neighbour_y = near_y[i];
        const bool received = is_received(total);
        opmath_t hole_x = x, hole_y = y, hole_total = total;
        add_fill_neighbour(hole_x, hole_y, hole_total, neighbour_x, neighbour_y);
        const bool add = !received & (found[i] > opmath_t(0));
        hole_x = add ? hole_x : x;
        hole_y = add ? hole_y : y;
        hole_total = add ? hole_total : total;
        if constexpr (finish) {
          finish_fill(hole_x, hole_y, hole_total);
        }
        near_x[i] = received ? x : neighbour_x;
        near_y[i] = received ? y : neighbour_y;
        found[i] = received ? opmath_t(1) : found[i];
        row_x[i] = received ? x : hole_x;
        row_y[i] = received ? y : hole_y;
        row_total[i] = received ? total : hole_total;
      }
      if constexpr (finish) {  // the row's output (the row pass wrote none)
        store_row(output, n, 0, y, columns, row_x, x_begin);
        store_row(output, n, 1, y, columns, row_y, x_begin);
      }
    }
  }

  // The column sweeps: the neighbour below (upwards), then the one above (downwards).
  void fill_columns(int64_t n, int64_t x_begin, int64_t x_end) const {
    Nearest nearest;
    if (fill_from_below) {
      sweep_columns<false>(n, x_begin, x_end, -1, nearest);
    }
    sweep_columns<true>(n, x_begin, x_end, +1, nearest);
  }
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
  std::vector<int64_t> hole_count(batch * height, 0);
  // A source can land anywhere in its image: the splat runs in bands of source rows, each adding
  // into its own sums (see scatter_bands). With as many images as threads a band is a whole image,
  // and one task does all of that image's work: one parallel loop in all.
  const int64_t bands = scatter_bands(batch, height);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "flow_projection_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const ForwardPass<scalar_t, opmath_t> pass{view4d<const scalar_t>(flow),
                                               optional_view4d<const scalar_t>(weight),
                                               view4d<scalar_t>(output),
                                               {projected.data_ptr<opmath_t>(), height, width},
                                               weighted,
                                               fill_holes,
                                               fill_from_below,
                                               batch,
                                               height,
                                               width,
                                               hole_count.data()};
    if (bands == 1) {
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        SourceRow<scalar_t, opmath_t> source(width);
        std::vector<opmath_t> scratch, ring;
        std::vector<opmath_t*> row_table;
        std::vector<RowSpan> spans(height);
        for (int64_t n = begin; n < end; ++n) {
          pass.find_spans(n, 0, height, spans.data(), scratch);
          int64_t next = 0;  // rows before it are finished
          pass.splat_band(n, 0, height, spans.data(), source, ring, row_table, [&](int64_t r, const opmath_t* sums) {
            for (; next < r; ++next) {
              pass.finish_empty_row(n, next);
            }
            pass.finish_row(n, r, sums);
            ++next;
          });
          for (; next < height; ++next) {
            pass.finish_empty_row(n, next);
          }
          if (fill_holes) {
            pass.fill_columns(n, 0, width);
          }
        }
      });
      return;
    }

    // Fewer images than threads: several bands per image. A target row that only one band reaches
    // is finished by that band; the others (reached by several or none) after all bands, summing
    // the bands' sums in band order.
    const int64_t tasks = batch * bands;
    auto band_rows = [&](int64_t band) {
      return std::pair<int64_t, int64_t>{band * height / bands, (band + 1) * height / bands};
    };
    std::vector<RowSpan> spans(batch * height), band_span(tasks);
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> scratch;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / bands;
        const auto [y_begin, y_end] = band_rows(task % bands);
        pass.find_spans(n, y_begin, y_end, spans.data() + n * height + y_begin, scratch);
        for (int64_t y = y_begin; y < y_end; ++y) {
          const RowSpan& span = spans[n * height + y];
          band_span[task].first = std::min(band_span[task].first, span.first);
          band_span[task].last = std::max(band_span[task].last, span.last);
        }
      }
    });
    // Per target row: how many bands reach it; per band, a slot for each row it shares.
    std::vector<int64_t> reach(batch * height, 0), shared_slot(batch * height * bands, -1), slot_offset(tasks + 1, 0);
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t n = task / bands;
      for (int64_t r = band_span[task].first; r <= band_span[task].last; ++r) {
        ++reach[n * height + r];
      }
    }
    std::vector<int64_t> leftover_rows;  // (n * height + r) of the rows finished after the bands
    for (int64_t row = 0; row < batch * height; ++row) {
      if (reach[row] != 1) {
        leftover_rows.push_back(row);
      }
    }
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t n = task / bands;
      int64_t slots = 0;
      for (int64_t r = band_span[task].first; r <= band_span[task].last; ++r) {
        if (reach[n * height + r] > 1) {
          shared_slot[(n * height + r) * bands + task % bands] = slots++;
        }
      }
      slot_offset[task + 1] = slot_offset[task] + slots * width * kCellValues;
    }
    at::Tensor shared_sums = at::empty({slot_offset[tasks]}, flow.options().dtype(opmath_dtype));
    opmath_t* const shared = shared_sums.data_ptr<opmath_t>();
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      SourceRow<scalar_t, opmath_t> source(width);
      std::vector<opmath_t> ring;
      std::vector<opmath_t*> row_table;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / bands, band = task % bands;
        const auto [y_begin, y_end] = band_rows(band);
        pass.splat_band(n, y_begin, y_end, spans.data() + n * height + y_begin, source, ring, row_table,
                        [&](int64_t r, const opmath_t* sums) {
                          const int64_t slot = shared_slot[(n * height + r) * bands + band];
                          if (slot < 0) {
                            pass.finish_row(n, r, sums);
                          } else {
                            std::copy_n(sums, width * kCellValues,
                                        shared + slot_offset[task] + slot * width * kCellValues);
                          }
                        });
      }
    });
    const int64_t leftover_count = static_cast<int64_t>(leftover_rows.size());
    at::parallel_for(0, leftover_count, lines_per_task(width), [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> sums(width * kCellValues);
      for (int64_t i = begin; i < end; ++i) {
        const int64_t row = leftover_rows[i], n = row / height, r = row % height;
        bool any_band = false;
        for (int64_t band = 0; band < bands; ++band) {
          const int64_t slot = shared_slot[row * bands + band];
          if (slot < 0) {
            continue;
          }
          const opmath_t* band_sums = shared + slot_offset[n * bands + band] + slot * width * kCellValues;
          for (int64_t k = 0; k < width * kCellValues; ++k) {
            sums[k] = any_band ? sums[k] + band_sums[k] : band_sums[k];
          }
          any_band = true;
        }
        if (any_band) {
          pass.finish_row(n, r, sums.data());
        } else {
          pass.finish_empty_row(n, r);
        }
      }
    });
    if (fill_holes) {
      for_each_column_stripe(batch, width, [&](int64_t n, int64_t x_begin, int64_t x_end) {
        pass.fill_columns(n, x_begin, x_end);
      });
    }
  });
  return {output, projected};
}

// The backward's column sweep (downwards, row(y) for each row, then finish()) over a stripe of
// columns [x_begin, x_end) of one image: the shares of each run of holes go to the received pixels
// above and (with fill_from_below) below it, which it settles (the pixels that the pass along the
// rows left). Rows without holes end every pending run.
template <typename opmath_t>
struct ColumnSweep {
  ProjectedRows<const opmath_t> rows;
  int64_t n, height, x_begin, columns_count;
  const int64_t* holes;  // per row of the image
  opmath_t* image_cells;
  int64_t cell_values;
  bool want_weight, fill_from_below;

  // Per column: the pixel above its pending run (ColumnShares::above), the run's summed shares and
  // whether a run is pending, column by column (SIMD lanes add a row's holes). Per block of kBlock
  // columns: how many have a run pending. A row's block whose pixels all received and that has
  // none pending has nothing to do (the usual block of a smooth flow); one whose pixels are all
  // holes continuing runs only adds their shares (the usual block of a large hole).
  static constexpr int64_t kBlock = 16;
  std::vector<int64_t> above;
  std::vector<opmath_t> share_x, share_y;
  std::vector<char> pending_column;
  std::vector<int64_t> pending_in_block;
  int64_t pending = 0;  // in all

  ColumnSweep(const ProjectedRows<const opmath_t>& rows, int64_t n, int64_t height, int64_t x_begin, int64_t x_end,
              const int64_t* holes, opmath_t* image_cells, int64_t cell_values, bool want_weight,
              bool fill_from_below)
      : rows(rows), n(n), height(height), x_begin(x_begin), columns_count(x_end - x_begin), holes(holes),
        image_cells(image_cells), cell_values(cell_values), want_weight(want_weight),
        fill_from_below(fill_from_below), above(columns_count, -1), share_x(columns_count, opmath_t(0)),
        share_y(columns_count, opmath_t(0)), pending_column(columns_count, 0),
        pending_in_block((columns_count + kBlock - 1) / kBlock, 0) {}

  opmath_t* cell(int64_t y, int64_t x) const { return image_cells + (y * rows.width + x) * cell_values; }

  // p (and q) of the received pixel (y, x), once its gradient is final.
  void settle(int64_t y, int64_t x) const {
    const opmath_t total = rows.total(n, y)[x];
    if (want_weight) {
      cell_gradient(cell(y, x), rows.x(n, y) + x, rows.y(n, y) + x, total, true);
    } else {
      opmath_t* const p = cell(y, x);
      cell_flow_gradient<opmath_t>(p[0], p[1], total, true);
    }
  }

  // Column i's run ends: its shares are handed out, after which the pixel above it is final and
  // the one below it too unless another run starts under it (that run's end settles it).
  void end_run(int64_t i, int64_t below) {
    const int64_t x = x_begin + i, top = above[i];
    hand_out_run_shares(share_x[i], share_y[i], top >= 0 ? cell(top, x) : nullptr,
                        below >= 0 ? cell(below, x) : nullptr, fill_from_below);
    share_x[i] = opmath_t(0);
    share_y[i] = opmath_t(0);
    pending_column[i] = 0;
    --pending_in_block[i / kBlock];
    --pending;
    if (top >= 0) {
      settle(top, x);
    }
    if (below >= 0 && (below + 1 == rows.height || is_received(rows.total(n, below + 1)[x]))) {
      settle(below, x);
    }
  }

  void row(int64_t y) {
    if (holes[y] == 0) {  // every pending run ends here
      for (int64_t i = 0; pending > 0 && i < columns_count; ++i) {
        if (pending_column[i]) {
          end_run(i, y);
        }
      }
      return;
    }
    const opmath_t* row_total = rows.total(n, y) + x_begin;
    opmath_t* const row_cells = cell(y, x_begin);
    for (int64_t block = 0; block * kBlock < columns_count; ++block) {
      const int64_t i_begin = block * kBlock, i_end = std::min(i_begin + kBlock, columns_count);
      if (i_end - i_begin == kBlock && (pending_in_block[block] == 0 || pending_in_block[block] == kBlock)) {
        bool all_received = true, all_holes = true;
        for (int64_t i = i_begin; i < i_end; ++i) {
          const bool received = is_received(row_total[i]);
          all_received &= received;
          all_holes &= !received;
        }
        if (all_received && pending_in_block[block] == 0) {
          continue;
        }
        if (all_holes && pending_in_block[block] == kBlock) {
          add_hole_shares(i_begin, row_cells, row_total);
          continue;
        }
      }
      for (int64_t i = i_begin; i < i_end; ++i) {
        if (is_received(row_total[i])) {
          if (pending_column[i]) {
            end_run(i, y);
          }
        } else {
          if (!pending_column[i]) {  // a run starts: the pixel above it (row -1: none)
            above[i] = y - 1;
            pending_column[i] = 1;
            ++pending_in_block[block];
            ++pending;
          }
          const opmath_t* const hole = row_cells + i * cell_values;
          add_hole_share(share_x[i], share_y[i], hole[0], hole[1], row_total[i]);
        }
      }
    }
  }

  // A block of kBlock holes, all continuing runs, from column i_begin on: their shares added.
  void add_hole_shares(int64_t i_begin, const opmath_t* row_cells, const opmath_t* row_total) {
    if constexpr (std::is_same_v<opmath_t, float>) {
      MEMC_CPU_KERNEL(add_hole_shares_row)(share_x.data() + i_begin, share_y.data() + i_begin,
                                           row_cells + i_begin * cell_values, cell_values, row_total + i_begin,
                                           kBlock);
    } else {
      for (int64_t i = i_begin; i < i_begin + kBlock; ++i) {
        const opmath_t* const hole = row_cells + i * cell_values;
        add_hole_share(share_x[i], share_y[i], hole[0], hole[1], row_total[i]);
      }
    }
  }

  // The runs still pending at the bottom of the image end.
  void finish() {
    for (int64_t i = 0; pending > 0 && i < columns_count; ++i) {
      if (pending_column[i]) {
        end_run(i, -1);
      }
    }
  }
};

// Per thread, a buffer kept between calls for the backward's cells of one image (a fresh one would
// page-fault on every call), none kept above kMaxKeptValues values.
// (Every cell is written before it is read: a larger one is left uninitialised, not zeroed.)
template <typename opmath_t>
opmath_t* image_cells_buffer(int64_t values, std::unique_ptr<opmath_t[]>& temporary) {
  constexpr int64_t kMaxKeptValues = int64_t(1) << 21;
  if (values > kMaxKeptValues) {
    temporary.reset(new opmath_t[values]);
    return temporary.get();
  }
  thread_local std::vector<opmath_t> kept;
  if (static_cast<int64_t>(kept.size()) < values) {
    kept.resize(values);
  }
  return kept.data();
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
  // Per pixel: the gradient with respect to its average, then p and q (see cell_gradient); without
  // the weight's gradient only p, two values per pixel (half the memory to stream). Every cell is
  // written before it is read (a projected tensor made by hand, which can make the gather read a
  // cell of a pixel that received nothing, reads the cell's gradient or share, or zeros for q).
  const int64_t cell_values = want_weight ? kCellValues : 2;
  const int64_t row_values = width * cell_values, image_values = height * row_values;
  std::vector<int64_t> hole_count(fill_holes ? batch * height : 0, 0);
  // As many images as threads: one task does an image's whole backward (one parallel loop), in a
  // buffer of its own. Else each pass runs over the whole batch in parallel, one after another.
  const bool task_per_image = scatter_bands(batch, height) == 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "flow_projection_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto grad_output_view = view4d<const scalar_t>(grad_output);
    const auto flow_view = view4d<const scalar_t>(flow);
    const auto weight_view = optional_view4d<const scalar_t>(weight);
    const auto grad_flow_view = optional_view4d<scalar_t>(want_flow ? std::optional<at::Tensor>(grad_flow)
                                                                    : std::nullopt);
    const auto grad_weight_view = optional_view4d<scalar_t>(want_weight ? std::optional<at::Tensor>(grad_weight)
                                                                        : std::nullopt);
    const ProjectedRows<const opmath_t> rows{projected.data_ptr<opmath_t>(), height, width};

    // Per thread: a source row and rows of gradients in opmath.
    struct Scratch {
      SourceRow<scalar_t, opmath_t> source;
      std::vector<opmath_t> x, y, w;
      explicit Scratch(int64_t width) : source(width), x(width), y(width), w(width) {}
    };

    // 1. Row y of image n (cells: the image's): the output gradient, plus the shares of the row's
    // holes (holes: the row's holes, those of the rows above and below; 0 for rows that do not
    // exist). The column sweep gives shares only to the received pixels just above and below a run
    // of holes: every other received pixel's gradient is final here, and its p (and q) computed at
    // once, while the row is in cache (the sweep settles the others). A gap (no source lands) is
    // never read by the gather, so its cell keeps its value.
    auto output_gradient_row = [&](int64_t n, int64_t y, opmath_t* image_cells, const int64_t holes[3],
                                   Scratch& scratch) {
      const opmath_t* grad_row_x = read_row(grad_output_view, n, 0, y, width, scratch.x.data());
      const opmath_t* grad_row_y = read_row(grad_output_view, n, 1, y, width, scratch.y.data());
      opmath_t* const cells = image_cells + y * row_values;
      const opmath_t* const row_total = rows.total(n, y);
      interleave_gradients(grad_row_x, grad_row_y, cells, cell_values, width);
      if (holes[1] > 0) {  // share_row_gradients; in a row of holes no run has an end to hand out to
        hole_shares(cells, row_total, cell_values, width);
        if (holes[1] < width) {
          hand_out_row_shares(cells, row_total, width, cell_values);
        }
      }
      // No holes in the row and the rows above and below: no column shares, every received pixel
      // settles.
      const bool alone = holes[0] == 0 && holes[1] == 0 && holes[2] == 0;
      const opmath_t* const above = !alone && y > 0 ? rows.total(n, y - 1) : nullptr;
      const opmath_t* const below = !alone && y + 1 < height ? rows.total(n, y + 1) : nullptr;
      if (want_weight) {
        const opmath_t *row_x = rows.x(n, y), *row_y = rows.y(n, y);
        for (int64_t x = 0; x < width; ++x) {
          if (settles_in_row_pass(row_total[x], above != nullptr ? above[x] : row_total[x],
                                  below != nullptr ? below[x] : row_total[x])) {
            cell_gradient(cells + x * kCellValues, row_x + x, row_y + x, row_total[x], true);
          }
        }
      } else {
        flow_cell_gradients(cells, row_total, above, below, width);
      }
    };
    auto holes_in_row = [&](int64_t n, int64_t y) { return count_holes(rows.total(n, y), width); };

    // 2b. Where the gather reads them (gathers_four_cell_sums), the cells made four-cell sums once
    // the sweep is done, rows top to bottom.
    const bool sum_cells = gathers_four_cell_sums<opmath_t>(height, width, cell_values);

    // 3. Source row y of image n: the gather over each source's cells.
    auto gradient_row = [&](int64_t n, int64_t y, const opmath_t* image_cells, Scratch& scratch) {
      SourceRow<scalar_t, opmath_t>& source = scratch.source;
      source.load(flow_view, weight_view, weighted, n, y, width);
      opmath_t* const row_x = want_flow ? row_to_write(grad_flow_view, n, 0, y, scratch.x.data()) : scratch.x.data();
      opmath_t* const row_y = want_flow ? row_to_write(grad_flow_view, n, 1, y, scratch.y.data()) : scratch.y.data();
      opmath_t* const row_w =
          want_weight ? row_to_write(grad_weight_view, n, 0, y, scratch.w.data()) : scratch.w.data();
      gather_source_row(source.flow_x, source.flow_y, weighted ? source.weight : nullptr, y, height, width, image_cells,
                        cell_values, row_x, row_y, row_w);
      if (want_flow) {
        write_row(grad_flow_view, n, 0, y, width, row_x);
        write_row(grad_flow_view, n, 1, y, width, row_y);
      }
      if (want_weight) {
        write_row(grad_weight_view, n, 0, y, width, row_w);
      }
    };

    if (task_per_image) {
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        Scratch scratch(width);
        std::unique_ptr<opmath_t[]> temporary;
        opmath_t* const image_cells = image_cells_buffer<opmath_t>(image_values, temporary);
        for (int64_t n = begin; n < end; ++n) {
          int64_t* const holes = fill_holes ? hole_count.data() + n * height : nullptr;
          for (int64_t y = 0; fill_holes && y < height; ++y) {
            holes[y] = holes_in_row(n, y);
          }
          for (int64_t y = 0; y < height; ++y) {
            const int64_t row_holes[3] = {fill_holes && y > 0 ? holes[y - 1] : 0, fill_holes ? holes[y] : 0,
                                          fill_holes && y + 1 < height ? holes[y + 1] : 0};
            output_gradient_row(n, y, image_cells, row_holes, scratch);
          }
          if (fill_holes) {
            ColumnSweep<opmath_t> sweep(rows, n, height, 0, width, holes, image_cells, cell_values, want_weight,
                                        fill_from_below);
            for (int64_t y = 0; y < height; ++y) {
              sweep.row(y);
            }
            sweep.finish();
          }
          if (sum_cells) {
            for (int64_t y = 0; y < height; ++y) {
              four_cell_sums(image_cells + y * row_values, y + 1 < height ? image_cells + (y + 1) * row_values : nullptr,
                             cell_values, width);
            }
          }
          for (int64_t y = 0; y < height; ++y) {
            gradient_row(n, y, image_cells, scratch);
          }
        }
      });
      return;
    }

    at::Tensor cells = at::empty({batch * image_values}, projected.options());
    opmath_t* const cell_data = cells.data_ptr<opmath_t>();
    parallel_rows(batch, height, width, [&](int64_t begin, int64_t end) {
      Scratch scratch(width);
      // holes[row - begin + 1]: the holes of rows begin - 1 to end (0 where a row is not of the image)
      std::vector<int64_t> holes(end - begin + 2, 0);
      const int64_t rows_end = std::min(end + 1, batch * height);
      for (int64_t row = std::max<int64_t>(begin - 1, 0); fill_holes && row < rows_end; ++row) {
        holes[row - begin + 1] = holes_in_row(row / height, row % height);
      }
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / height, y = row % height;
        int64_t* const around = holes.data() + (row - begin);  // rows y - 1, y, y + 1
        if (fill_holes) {
          hole_count[row] = around[1];
        }
        const int64_t row_holes[3] = {y > 0 ? around[0] : 0, around[1], y + 1 < height ? around[2] : 0};
        output_gradient_row(n, y, cell_data + n * image_values, row_holes, scratch);
      }
    });
    // (Frames without holes skip the sweep, which would find nothing to do.)
    if (std::any_of(hole_count.begin(), hole_count.end(), [](int64_t holes) { return holes > 0; })) {
      for_each_column_stripe(batch, width, [&](int64_t n, int64_t x_begin, int64_t x_end) {
        ColumnSweep<opmath_t> sweep(rows, n, height, x_begin, x_end, hole_count.data() + n * height,
                                    cell_data + n * image_values, cell_values, want_weight, fill_from_below);
        for (int64_t y = 0; y < height; ++y) {
          sweep.row(y);
        }
        sweep.finish();
      });
    }
    if (sum_cells) {
      // In chunks of rows, each chunk's first row kept as it was for the chunk above.
      const int64_t lines = batch * height;
      const int64_t chunks = std::min<int64_t>(lines, 4 * at::get_num_threads());
      auto chunk_begin = [&](int64_t chunk) { return chunk * lines / chunks; };
      std::vector<opmath_t> first_rows(chunks * row_values);
      for (int64_t chunk = 1; chunk < chunks; ++chunk) {
        std::copy_n(cell_data + chunk_begin(chunk) * row_values, row_values, first_rows.data() + chunk * row_values);
      }
      at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t chunk = begin; chunk < end; ++chunk) {
          const int64_t last = chunk_begin(chunk + 1) - 1;
          for (int64_t row = chunk_begin(chunk); row <= last; ++row) {
            const bool has_below = (row + 1) % height != 0;
            const opmath_t* const below = !has_below ? nullptr
                                          : row < last ? cell_data + (row + 1) * row_values
                                                       : first_rows.data() + (chunk + 1) * row_values;
            four_cell_sums(cell_data + row * row_values, below, cell_values, width);
          }
        }
      });
    }
    parallel_rows(batch, height, width, [&](int64_t begin, int64_t end) {
      Scratch scratch(width);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / height;
        gradient_row(n, row % height, cell_data + n * image_values, scratch);
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
