// Row kernels of the flow projection layer for float32 opmath, vectorised per CPU capability
// (csrc/cpu/vectorized/flow_projection_rows.cpp; see cpu/capability.h): each locates a row's
// sources in SIMD lanes with the rules of memc/flow_projection.h and then walks the row's sources
// in order, so that every sum is added in the order of the scalar definition (same bits).
// Callers use them only where H and W are below 2^24, where float holds every row and column
// index exactly (the scalar code's clamp_index never acts there).
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>
#include <cstring>

#include "cpu/capability.h"
#include "memc/flow_projection.h"

namespace memc {

// Rows and columns of a frame that the float32 row kernels take (float holds their indices).
constexpr int64_t kMaxRowKernelSize = int64_t(1) << 24;

// The four sums of a cell (kCellValues), added to as one 128-bit vector where the
// compiler offers GCC's vector extension (GCC and Clang), elsewhere element by element: the same
// sums either way (lane k holds the sums of value k, in the same order). Built in registers: a
// vector loaded from an array just written element by element would wait for those stores (a
// failed store-to-load forwarding on every source).
#if defined(__GNUC__) || defined(__clang__)
typedef float FloatCell __attribute__((vector_size(kCellValues * sizeof(float))));

C10_ALWAYS_INLINE FloatCell make_cell(float x, float y, float share) {
  return FloatCell{x, y, share, 0.0f};
}

C10_ALWAYS_INLINE FloatCell load_cell(const float* cell) {
  FloatCell values;
  std::memcpy(&values, cell, sizeof values);
  return values;
}

C10_ALWAYS_INLINE void store_cell(float* cell, FloatCell values) {
  std::memcpy(cell, &values, sizeof values);
}

C10_ALWAYS_INLINE FloatCell add_cells(FloatCell a, FloatCell b) {
  return a + b;
}

#else
struct FloatCell {
  float values[kCellValues];
};

C10_ALWAYS_INLINE FloatCell make_cell(float x, float y, float share) {
  return {{x, y, share, 0.0f}};
}

C10_ALWAYS_INLINE FloatCell load_cell(const float* cell) {
  FloatCell values;
  std::memcpy(values.values, cell, sizeof values.values);
  return values;
}

C10_ALWAYS_INLINE void store_cell(float* cell, const FloatCell& values) {
  std::memcpy(cell, values.values, sizeof values.values);
}

C10_ALWAYS_INLINE FloatCell add_cells(const FloatCell& a, const FloatCell& b) {
  FloatCell sum;
  for (int k = 0; k < kCellValues; ++k) {
    sum.values[k] = a.values[k] + b.values[k];
  }
  return sum;
}
#endif

// A source row of image rows `height` x `width`, at row y, in float32 (weight: nullptr when
// unweighted, i.e. 1).
struct SourceRowView {
  const float *flow_x, *flow_y, *weight;
  int64_t y, height, width;
};

// The splat's target sums: row r's interleaved sums (kCellValues per pixel, one spare cell after
// the last column) at rows[r - first_row]; rows[H - first_row] is a spare row (see splat_band).
struct SplatTargets {
  float* const* rows;
  int64_t first_row;
};

// The backward's per-cell sums of p and q over four cells (four_cell_sums_row; cell_values per
// pixel: kCellValues, or 2 without q, which then counts as 0) of the source's image, rows
// `row_values` apart, and the row's gradients
// (grad_weight written only with q, i.e. kCellValues values per cell).
struct GatherTargets {
  const float* cells;
  int64_t cell_values, row_values;
  float *grad_flow_x, *grad_flow_y, *grad_weight;
};

//   target_row_span: widens [first, last] by the rows the row's splat reaches (widen_target_rows).
//   splat_row: adds each source's values to its four cells, sources in x order (splat_source).
//   four_cell_sums_row: each cell of a row of the backward's cells (cell_values per pixel) made the
//     sums over it and its neighbours right, below and below right (sum_of_four; zero cells past
//     the last column, and past the last row where below is nullptr), in place: cell i reads only
//     cells i and i + 1, so the rows can go top to bottom with the row below still as it was.
//   gather_row: each source's gradient from the four-cell sums at its first cell (source_gradient;
//     cells at most 2^31 values).
//   average_row: average_pixel of each of a row's interleaved sums (kCellValues per pixel) into
//     rows of x, y and total weight.
//   interleave_row: pairs[2 i] = x[i], pairs[2 i + 1] = y[i] (the backward's two-value cells).
//   flow_cell_gradients_row: cell_flow_gradient of each two-value cell of a row where
//     settles_in_row_pass holds (rows total_above / total_below; nullptr: none); the other cells
//     keep their values.
//   count_received_row: how many pixels of a row of total weights received (is_received).
//   sweep_row: one row of a column sweep of the hole fill (ForwardPass::sweep_columns; finish: the
//     last sweep) over whole vectors of columns; returns how many columns it did (the caller's
//     scalar loop does the rest). A vector of columns that all received only becomes the nearest.
//   hole_shares_row: hole_share of each cell of a row of the backward's cells (cell_values per
//     pixel; received pixels keep theirs).
//   add_hole_shares_row: add_hole_share of `count` holes (cells: cell_values per pixel, the share
//     in the first two) to their columns' sums share_x, share_y.
#define MEMC_DECLARE_PROJECTION_ROWS(CAPABILITY)                                          \
  namespace CAPABILITY {                                                                 \
  void average_row(const float* sums, float* row_x, float* row_y, float* row_total,      \
                   int64_t width);                                                       \
  void interleave_row(const float* x, const float* y, float* pairs, int64_t width);      \
  void flow_cell_gradients_row(float* pairs, const float* total, const float* total_above, \
                               const float* total_below, int64_t width);                 \
  int64_t count_received_row(const float* total, int64_t width);                         \
  void hole_shares_row(float* cells, const float* total, int64_t cell_values, int64_t width); \
  int64_t sweep_row(float* row_x, float* row_y, float* row_total, float* near_x,            \
                    float* near_y, float* found, int64_t columns, bool finish);             \
  void add_hole_shares_row(float* share_x, float* share_y, const float* cells,             \
                           int64_t cell_values, const float* total, int64_t count);        \
  void target_row_span(const float* flow_y, int64_t y, int64_t height, int64_t width,     \
                       int64_t* first, int64_t* last);                                    \
  void splat_row(const SourceRowView& source, const SplatTargets& targets);              \
  void four_cell_sums_row(float* cells, const float* below, int64_t cell_values,           \
                          int64_t width);                                                \
  void gather_row(const SourceRowView& source, const GatherTargets& targets);            \
  }

MEMC_FOR_EACH_CPU_CAPABILITY(MEMC_DECLARE_PROJECTION_ROWS)

#undef MEMC_DECLARE_PROJECTION_ROWS

}  // namespace memc
