// The per-pixel and per-line math of the flow projection layer, compiled by both g++ (CPU
// kernels) and nvcc (CUDA kernels), so that both backends compute the same function (nvcc may fuse
// a multiply and add, and CUDA's atomic sums arrive in any order, so the last bits can differ).
//
// Forward, for each source pixel y = (x, y) with flow f and weight w (1 when unweighted):
//   * target p = y + f; the source is projected when p lies in [0, W-1] x [0, H-1] and w is a
//     positive finite number (NaN fails every comparison and is not projected);
//   * it adds w * (-f) and w to the four cells {floor(p_x), min(floor(p_x)+1, W-1)} x
//     {floor(p_y), min(floor(p_y)+1, H-1)} (a clamped cell receives twice);
//   * a pixel whose total weight is > 0 "received" and takes sum / total weight (the average);
//   * with hole filling, a pixel that received nothing takes the mean of the averages of the
//     nearest received pixels to its left, right, above and below (those that exist), else 0;
//     without `fill_from_below` (the released kernel's fill, whose downward search never runs)
//     the pixel below is left out: left, right and above only, else 0.
//
// The buffer `projected` (B, 3, H, W), contiguous, in opmath, holds in channels 0-1 the projected
// flow before rounding to the output dtype (averages; filled values or zeros at holes) and in
// channel 2 the total weight received at a received pixel, and minus the number of neighbours
// its fill found (0 without filling) at a hole: `> 0` marks a received pixel.
//
// Hole filling runs as a pass along each row (left and right neighbours) and two sweeps down the
// columns (below, then above, which also divides), so the whole layer is O(H * W). The sweeps
// walk all columns of an image together, row after row: the memory is read in rows.
//
// The backward works on `cells` (B, H, W, 4) in opmath (the CPU uses (B, H, W, 2) where no weight
// gradient is wanted: q is then not needed): first the gradient with respect to each pixel's
// average (its own output gradient plus the shares of the holes filled from it), then, per
// received cell, that gradient divided by the cell's total weight, from which each source gathers
// the gradient of its flow and weight over its (up to) four cells.
#pragma once

#include <c10/macros/Macros.h>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "memc/strided.h"

namespace memc {

// Channel of `projected` that holds the total weight received.
constexpr int kTotalWeightChannel = 2;
// Values per pixel of the backward's `cells` buffer (three used; four keep a cell 16-byte aligned).
constexpr int kCellValues = 4;

// The (up to) four cells a source pixel splats to, merged where clamping makes two coincide.
struct ProjectionCells {
  bool projected;
  int64_t rows[2], cols[2];
  int row_count, col_count;  // distinct rows and columns: 1 at the last row / column, else 2
  int multiplicity;          // how many of the four nominal cells each distinct cell stands for
};

// The rules below that the CPU's vectorised kernels (cpu/vectorized/flow_projection_rows.cpp) also
// apply lane by lane take V, the scalar T or a SIMD vector of T: comparisons then give lane masks,
// which & combines (for a scalar, bools), and the arithmetic is the same IEEE operations.

// Whether a weight can be averaged: false for zero, negative, infinite and NaN weights.
template <typename T, typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE auto weight_is_usable(const V& weight) {
  return (weight > V(T(0))) & (weight <= V(std::numeric_limits<T>::max()));
}

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE bool usable_weight(T weight) {
  return weight_is_usable<T>(weight);
}

// Whether target (target_y, target_x) lies in [0, W-1] x [0, H-1] (last_row = T(H - 1),
// last_col = T(W - 1)); written so that NaN targets fall into the "not projected" branch.
template <typename T, typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE auto lands_inside(const V& target_y, const V& target_x, T last_row, T last_col) {
  return (target_x >= V(T(0))) & (target_x <= V(last_col)) & (target_y >= V(T(0))) & (target_y <= V(last_row));
}

// What a projected source adds to each of its cells (see SourceSplat): share = w * multiplicity.
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE void splat_values(const V& flow_x, const V& flow_y, const V& w,
                                                    const V& multiplicity, V& value_x, V& value_y, V& share) {
  share = w * multiplicity;
  value_x = -share * flow_x;
  value_y = -share * flow_y;
}

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE ProjectionCells locate_projection(int64_t y, int64_t x, T flow_y, T flow_x,
                                                                     T weight, int64_t height, int64_t width) {
  ProjectionCells cells{false, {0, 0}, {0, 0}, 0, 0, 0};
  const T target_y = T(y) + flow_y;
  const T target_x = T(x) + flow_x;
  const bool inside = lands_inside(target_y, target_x, T(height - 1), T(width - 1));
  if (!(inside && usable_weight(weight))) {
    return cells;
  }
  cells.projected = true;
  // The clamp matters only where T cannot hold W - 1 exactly (float beyond 2^24), so that a target
  // rounded up to W never reaches past the last column.
  // The targets are >= 0 here, so truncation is floor (and needs no call into libm).
  cells.rows[0] = clamp_index(static_cast<int64_t>(target_y), height);
  cells.cols[0] = clamp_index(static_cast<int64_t>(target_x), width);
  cells.rows[1] = cells.rows[0] + 1;
  cells.cols[1] = cells.cols[0] + 1;
  cells.row_count = cells.rows[1] <= height - 1 ? 2 : 1;
  cells.col_count = cells.cols[1] <= width - 1 ? 2 : 1;
  cells.multiplicity = (3 - cells.row_count) * (3 - cells.col_count);
  return cells;
}

// The rows a source's splat can reach: floor(y + f_y) and the row below, when y + f_y lies in
// [0, H-1]; an empty range (first > last) otherwise. Ignores x and the weight, so it covers every
// row the splat writes (the CPU kernel sizes its private sums by it).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void widen_target_rows(int64_t y, T flow_y, int64_t height, int64_t& first,
                                                         int64_t& last) {
  const T target_y = T(y) + flow_y;
  if (target_y >= T(0) && target_y <= T(height - 1)) {
    const int64_t row = clamp_index(static_cast<int64_t>(target_y), height);  // target_y >= 0: floor
    first = row < first ? row : first;
    last = row + 1 > last ? (row + 1 < height ? row + 1 : row) : last;
  }
}

// What a source adds to each of its cells: its sums (channels 0-1) gain value_x, value_y and its
// total weight gains share, where share = w * multiplicity (a clamped cell stands for two or four).
template <typename T>
struct SourceSplat {
  ProjectionCells cells;
  T value_x, value_y, share;
};

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE SourceSplat<T> source_splat(int64_t y, int64_t x, T flow_x, T flow_y, T w,
                                                              int64_t height, int64_t width) {
  SourceSplat<T> splat{locate_projection<T>(y, x, flow_y, flow_x, w, height, width), T(0), T(0), T(0)};
  if (splat.cells.projected) {
    splat_values(flow_x, flow_y, w, T(splat.cells.multiplicity), splat.value_x, splat.value_y, splat.share);
  }
  return splat;
}

// Forward splat of the source at (y, x) with flow (flow_x, flow_y) and weight w (opmath):
// calls add(row, col, value_x, value_y, share) once per distinct target cell (see source_splat).
// `add` is a plain add where one thread owns the sums and an atomic add where sources run
// concurrently. A cell's sums depend only on the order in which sources reach it, not on the
// order of one source's cells.
template <typename T, typename Add>
C10_HOST_DEVICE C10_ALWAYS_INLINE void splat_source(int64_t y, int64_t x, T flow_x, T flow_y, T w, int64_t height,
                                                    int64_t width, Add& add) {
  const SourceSplat<T> splat = source_splat<T>(y, x, flow_x, flow_y, w, height, width);
  if (!splat.cells.projected) {
    return;
  }
  for (int r = 0; r < splat.cells.row_count; ++r) {
    for (int c = 0; c < splat.cells.col_count; ++c) {
      add(splat.cells.rows[r], splat.cells.cols[c], splat.value_x, splat.value_y, splat.share);
    }
  }
}

// `if_true` where `mask` holds, else `if_false`: `?:` for scalars, a blend lane by lane for
// at::vec::Vectorized lanes (the CPU's row kernels).
template <typename M, typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE V choose(const M& mask, const V& if_true, const V& if_false) {
  if constexpr (std::is_arithmetic_v<V>) {
    return mask ? if_true : if_false;
  } else {
    return V::blendv(if_false, if_true, mask);
  }
}

// Whether a pixel with this total weight received (V: a scalar, giving a bool, or SIMD lanes,
// giving a lane mask).
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE auto is_received(const V& total) {
  return total > V(0);
}

// A pixel's sums turned into `projected`'s channels: the average and total weight of a received
// pixel; zeros at a hole (the fill passes write its value and count later).
template <typename T>
struct ProjectedPixel {
  T x, y, total;
};

// Without branches (a hole divides by 1 and drops the quotient), so that it runs in SIMD lanes (V:
// a scalar or at::vec lanes); the values are those of sum / total where total > 0.
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE ProjectedPixel<V> average_pixel(const V& sum_x, const V& sum_y, const V& total) {
  const auto received = is_received(total);
  const V zero(0), divisor = choose(received, total, V(1));
  const V average_x = sum_x / divisor, average_y = sum_y / divisor;
  return {choose(received, average_x, zero), choose(received, average_y, zero), choose(received, total, zero)};
}

// ---------------------------------------------------------------------------------------------
// Forward hole filling.

// Row pass over one row of `projected` (channels as three contiguous rows): each hole gets the
// sum of the averages of its nearest received pixels to the left and right in channels 0-1, and
// minus their number in channel 2. O(width).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void fill_row_from_sides(T* row_x, T* row_y, T* row_total, int64_t width) {
  int64_t before = -1;  // the last received pixel, -1 for none yet
  for (int64_t i = 0; i <= width; ++i) {
    if (i < width && !is_received(row_total[i])) {
      continue;
    }
    if (i - before > 1) {  // holes strictly between `before` and `i` (a received pixel or the end)
      T sum_x = 0, sum_y = 0, found = 0;
      if (before >= 0) {
        sum_x += row_x[before];
        sum_y += row_y[before];
        found += T(1);
      }
      if (i < width) {
        sum_x += row_x[i];
        sum_y += row_y[i];
        found += T(1);
      }
      for (int64_t hole = before + 1; hole < i; ++hole) {
        row_x[hole] = sum_x;
        row_y[hole] = sum_y;
        row_total[hole] = -found;
      }
    }
    before = i;
  }
}

// Column sweeps: a hole (hole_x, hole_y, hole_total: its channels in `projected`) gains one more
// neighbour's average, the one below (first sweep, upwards) or above (second sweep, downwards).
// V: a scalar, or at::vec lanes (the CPU's column sweep): the same IEEE operations in every lane.
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE void add_fill_neighbour(V& hole_x, V& hole_y, V& hole_total, const V& neighbour_x,
                                                          const V& neighbour_y) {
  hole_x = hole_x + neighbour_x;
  hole_y = hole_y + neighbour_y;
  hole_total = hole_total - V(1);
}

// After the last sweep: the hole's sums divided by the number of neighbours found (0 without any).
// Without branches (no neighbour: divides by 1 and drops the quotient), as average_pixel.
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE void finish_fill(V& hole_x, V& hole_y, const V& hole_total) {
  const V zero(0), one(1);
  const V found = -hole_total;
  const auto any = found > zero;
  const V divisor = choose(any, found, one);
  const V average_x = hole_x / divisor, average_y = hole_y / divisor;
  hole_x = choose(any, average_x, zero);
  hole_y = choose(any, average_y, zero);
}

// ---------------------------------------------------------------------------------------------
// Backward of the hole filling. A hole's value is the mean of its k neighbours' averages, so each
// neighbour's average receives grad_output(hole) / k: the hole's share. `cells` holds per pixel
// (channels 0-1) the gradient with respect to its average, starting as grad_output; the row pass
// turns each hole's cell into its share and adds the shares to the hole's left and right
// neighbours, the column sweep (which must run after it) those to their
// neighbours above and (with fill_from_below) below. A run of holes shares its two neighbours, so
// the shares are summed over the run and added once.

// A hole's share, computed once by the row pass and left in the hole's cell (which the backward
// reads for nothing else): its gradient times 1 / k, k the neighbours its fill found (hole_total
// is -k). Returns false where the fill found none; such a hole gives no share.
// 1 / k for the k (1 to 4) neighbours a fill finds, without a division: each constant is the
// rounded quotient that the division gives (any other k is divided).
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE V inverse_count(const V& k) {
  const V one(1);
  return choose(k == V(1), one,
                choose(k == V(2), V(0.5), choose(k == V(3), one / V(3), choose(k == V(4), V(0.25), one / k))));
}

// Without branches (V: a scalar or SIMD lanes, the CPU making a row's shares in lanes): x, y
// become the share where the fill found neighbours (hole_total < 0) and stay as they are elsewhere
// (received pixels too).
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE void hole_share(V& x, V& y, const V& hole_total) {
  const V found = -hole_total;
  const V inverse_found = inverse_count(found);
  const auto any = found > V(0);
  x = choose(any, x * inverse_found, x);
  y = choose(any, y * inverse_found, y);
}

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE bool make_hole_share(T* cell, T hole_total) {
  hole_share(cell[0], cell[1], hole_total);
  return -hole_total > T(0);
}

// The second half of share_row_gradients, once every hole's cell holds its share: the shares of
// each run of holes, summed from 0, go to the received pixels left and right of it.
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void hand_out_row_shares(T* cells_row, const T* row_total, int64_t width,
                                                           int64_t cell_values) {
  int64_t before = -1;
  T share_x = 0, share_y = 0;
  for (int64_t i = 0; i <= width; ++i) {
    if (i < width && !is_received(row_total[i])) {
      const T* const cell = cells_row + i * cell_values;
      if (-row_total[i] > T(0)) {
        share_x += cell[0];
        share_y += cell[1];
      }
      continue;
    }
    if (i - before > 1) {
      if (before >= 0) {
        cells_row[before * cell_values] += share_x;
        cells_row[before * cell_values + 1] += share_y;
      }
      if (i < width) {
        cells_row[i * cell_values] += share_x;
        cells_row[i * cell_values + 1] += share_y;
      }
    }
    share_x = 0;
    share_y = 0;
    before = i;
  }
}

// Row pass over one row: `cells_row` is the row's cells (cell_values per pixel: kCellValues, or 2
// where the backward needs no q), `row_total` channel 2 of `projected`. Turns each hole's cell into
// its share (make_hole_share), for the column sweep to read, and hands out the runs' shares.
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void share_row_gradients(T* cells_row, const T* row_total, int64_t width,
                                                           int64_t cell_values = kCellValues) {
  for (int64_t i = 0; i < width; ++i) {
    if (!is_received(row_total[i])) {
      make_hole_share(cells_row + i * cell_values, row_total[i]);
    }
  }
  hand_out_row_shares(cells_row, row_total, width, cell_values);
}

// A hole's share (its cell's cell_x, cell_y: see make_hole_share) added to its run's sums x, y,
// where its fill found a neighbour (hole_total < 0). Without branches: V a scalar or SIMD lanes
// (the CPU's column sweep adds a row's holes in lanes).
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE void add_hole_share(V& x, V& y, const V& cell_x, const V& cell_y,
                                                      const V& hole_total) {
  const auto found = -hole_total > V(0);
  x = choose(found, x + cell_x, x);
  y = choose(found, y + cell_y, y);
}

// A run of holes ends: its summed shares x, y go to the received pixel above it (above_cell;
// nullptr: none) and, when the fill counts it, to the one below (below_cell; nullptr at the
// bottom of the image).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void hand_out_run_shares(T x, T y, T* above_cell, T* below_cell,
                                                           bool fill_from_below) {
  if (above_cell != nullptr) {
    above_cell[0] += x;
    above_cell[1] += y;
  }
  if (below_cell != nullptr && fill_from_below) {
    below_cell[0] += x;
    below_cell[1] += y;
  }
}

// One column's state in the downward sweep: the nearest received pixel above the current run of
// holes (-1: none) and the run's summed shares.
template <typename T>
struct ColumnShares {
  int64_t above;
  T x, y;
  bool pending;  // the run has holes whose shares were not handed out yet

  C10_HOST_DEVICE C10_ALWAYS_INLINE void start() {
    above = -1;
    x = 0;
    y = 0;
    pending = false;
  }
  // A hole whose cell holds its share (share_row_gradients ran on its row).
  C10_HOST_DEVICE C10_ALWAYS_INLINE void hole(const T* cell, T hole_total) {
    add_hole_share(x, y, cell[0], cell[1], hole_total);
    pending = true;
  }
  // The run ends at received pixel `below_cell` (nullptr at the bottom of the image): the shares go
  // to the pixel above the run and, when the fill counts it, to the one below.
  C10_HOST_DEVICE C10_ALWAYS_INLINE void end_run(T* above_cell, T* below_cell, bool fill_from_below) {
    hand_out_run_shares(x, y, above_cell, below_cell, fill_from_below);
    x = 0;
    y = 0;
    pending = false;
  }
};

// ---------------------------------------------------------------------------------------------
// Backward of the splat and average. With S the sums, T the total weight and a = S / T of a
// target cell,   d a / d f_y = -w_y / T   and   d a / d w_y = (-f_y - a) / T,
// per nominal cell (a clamped cell counts as often as it was splatted to). Each received cell's
// values become p = g / T (g: the gradient with respect to its average, channels 0-1) and
// q = p . a; a source then gathers over its cells, so that the backward needs no atomics:
//   grad f = -w * m * sum(p),   grad w = m * (-(f . sum(p)) - sum(q))   (m: multiplicity).
// q is needed only for the weight's gradient (`want_weight`); the averages are read only for it.
// Whether a pixel's gradient is final after the backward's pass along its row: it received, and so
// did its neighbours above and below (for one that does not exist, pass the pixel's own total), so
// that no column sweep adds a share to it. (V: a scalar or SIMD lanes.)
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE auto settles_in_row_pass(const V& total, const V& total_above, const V& total_below) {
  return is_received(total) & is_received(total_above) & is_received(total_below);
}

// p = g * (1 / total) of a cell (g: x, y) where `settle` holds (a received pixel, total > 0); x and
// y stay as they are elsewhere, where the division is by 1 (no branch: SIMD lanes take it too).
template <typename T, typename V, typename M>
C10_HOST_DEVICE C10_ALWAYS_INLINE void cell_flow_gradient(V& x, V& y, const V& total, const M& settle) {
  const V one(T(1));
  const V inverse_total = one / choose(settle, total, one);
  x = choose(settle, x * inverse_total, x);
  y = choose(settle, y * inverse_total, y);
}

// p and q of a cell (zeros where the pixel received nothing, which no source reads).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void cell_gradient(T* cell, const T* average_x, const T* average_y, T total,
                                                     bool want_weight) {
  const bool received = is_received(total);
  T x = cell[0], y = cell[1];
  cell_flow_gradient<T>(x, y, total, received);
  cell[0] = received ? x : T(0);
  cell[1] = received ? y : T(0);
  cell[2] = want_weight && received ? x * *average_x + y * *average_y : T(0);
}

template <typename T>
struct SourceGradient {
  T flow_x, flow_y, weight;
};

// A projected source's gradient from the sums over its distinct cells of p_x, p_y and q, and its
// multiplicity m (V: a scalar or SIMD lanes).
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE SourceGradient<V> gradient_from_sums(const V& m, const V& flow_x, const V& flow_y,
                                                                       const V& w, V sum_x, V sum_y, const V& sum_q) {
  sum_x = sum_x * m;
  sum_y = sum_y * m;
  return {-w * sum_x, -w * sum_y, -(flow_x * sum_x + flow_y * sum_y) - m * sum_q};
}

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE SourceGradient<T> source_gradient_from_sums(const ProjectionCells& target, T flow_x,
                                                                              T flow_y, T w, T sum_x, T sum_y,
                                                                              T sum_q) {
  return gradient_from_sums(T(target.multiplicity), flow_x, flow_y, w, sum_x, sum_y, sum_q);
}

// The four cells a projected source sums, in source_gradient's order (top left, top right, bottom
// left, bottom right), from its first cell (row, column) (locate_projection's rows[0], cols[0]):
// `cells` points at pixel (0, 0) of the source's image, `cell_values` per pixel (kCellValues, or 2
// without q), rows `row_stride` values apart. A cell that clamping merged into another (past the
// last row or column) is `zero_cell`, a cell of zeros: adding it changes no sum (a sum from +0 is
// never -0).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void source_cells(const T* cells, int64_t row_stride, int64_t cell_values,
                                                    int64_t row, int64_t column, int64_t height, int64_t width,
                                                    const T* zero_cell, const T* (&four)[4]) {
  // (Which cells exist follows from the first cell's row and column: testing ProjectionCells'
  // counts instead made GCC read both as one word just written as two, a stalled load.)
  const bool has_right = column + 1 < width, has_below = row + 1 < height;
  const T* const first = cells + row * row_stride + column * cell_values;
  four[0] = first;
  four[1] = has_right ? first + cell_values : zero_cell;
  four[2] = has_below ? first + row_stride : zero_cell;
  four[3] = has_right && has_below ? first + row_stride + cell_values : zero_cell;
}

// One value's sum over a source's four cells (source_cells' order), from 0 (a sum from +0 is never
// -0). V: a scalar or SIMD lanes (the CPU sums each cell with its neighbours in lanes, once for all
// the sources that read it).
template <typename V>
C10_HOST_DEVICE C10_ALWAYS_INLINE V sum_of_four(const V& top_left, const V& top_right, const V& bottom_left,
                                                const V& bottom_right) {
  return V(0) + top_left + top_right + bottom_left + bottom_right;
}

// The sums of p_x, p_y and q (q: 0 with two-value cells) over a projected source's cells (target:
// locate_projection's; the other arguments as for source_cells), from 0.
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void sum_source_cells(const ProjectionCells& target, const T* cells,
                                                        int64_t row_stride, int64_t cell_values, int64_t height,
                                                        int64_t width, T sums[3]) {
  const T zero_cell[kCellValues] = {};
  const T* four[4];
  source_cells(cells, row_stride, cell_values, target.rows[0], target.cols[0], height, width, zero_cell, four);
  for (int64_t k = 0; k < 3; ++k) {
    sums[k] = k < cell_values ? sum_of_four(four[0][k], four[1][k], four[2][k], four[3][k]) : T(0);
  }
}

// A source's gradient from the cells of its image (see source_cells).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE SourceGradient<T> source_gradient(int64_t y, int64_t x, T flow_x, T flow_y, T w,
                                                                    int64_t height, int64_t width, const T* cells,
                                                                    int64_t row_stride,
                                                                    int64_t cell_values = kCellValues) {
  const ProjectionCells target = locate_projection<T>(y, x, flow_y, flow_x, w, height, width);
  if (!target.projected) {
    return {T(0), T(0), T(0)};
  }
  T sums[3];
  sum_source_cells(target, cells, row_stride, cell_values, height, width, sums);
  return source_gradient_from_sums(target, flow_x, flow_y, w, sums[0], sums[1], sums[2]);
}

}  // namespace memc
