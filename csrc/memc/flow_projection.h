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
// The buffer `projected` (B, 3, H, W) in opmath holds channels 0-1 the projected flow before
// rounding to the output dtype (averages, and filled values or zeros at holes) and channel 2
// the total weight received (0 marks a hole). Hole filling runs as a pass over the rows and a
// pass over the columns, each O(length) per line, so the whole layer is O(H * W).
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

// The (up to) four cells a source pixel splats to, merged where clamping makes two coincide.
struct ProjectionCells {
  bool projected;
  int64_t rows[2], cols[2];
  int row_count, col_count;  // distinct rows and columns: 1 at the last row / column, else 2
  int multiplicity;          // how many of the four nominal cells each distinct cell stands for
};

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE bool usable_weight(T weight) {
  // False for zero, negative, infinite and NaN weights: the average would be undefined.
  return weight > T(0) && weight <= std::numeric_limits<T>::max();
}

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE ProjectionCells locate_projection(int64_t y, int64_t x, T flow_y, T flow_x,
                                                                     T weight, int64_t height, int64_t width) {
  ProjectionCells cells{false, {0, 0}, {0, 0}, 0, 0, 0};
  const T target_y = T(y) + flow_y;
  const T target_x = T(x) + flow_x;
  // Written so that NaN targets fall into the "not projected" branch.
  const bool inside = target_x >= T(0) && target_x <= T(width - 1) && target_y >= T(0) &&
                      target_y <= T(height - 1);
  if (!(inside && usable_weight(weight))) {
    return cells;
  }
  cells.projected = true;
  // The clamp matters only where T cannot hold W - 1 exactly (float beyond 2^24), so that a target
  // rounded up to W never reaches past the last column.
  cells.rows[0] = clamp_index(static_cast<int64_t>(::floor(target_y)), height);
  cells.cols[0] = clamp_index(static_cast<int64_t>(::floor(target_x)), width);
  cells.rows[1] = cells.rows[0] + 1;
  cells.cols[1] = cells.cols[0] + 1;
  cells.row_count = cells.rows[1] <= height - 1 ? 2 : 1;
  cells.col_count = cells.cols[1] <= width - 1 ? 2 : 1;
  cells.multiplicity = (3 - cells.row_count) * (3 - cells.col_count);
  return cells;
}

template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE opmath_t source_weight(const Strided4d<const scalar_t>& weight, bool weighted,
                                                         int64_t n, int64_t y, int64_t x) {
  return weighted ? static_cast<opmath_t>(weight(n, 0, y, x)) : opmath_t(1);
}

template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE ProjectionCells locate_source(const Strided4d<const scalar_t>& flow,
                                                                opmath_t weight, int64_t n, int64_t y, int64_t x,
                                                                int64_t height, int64_t width) {
  return locate_projection<opmath_t>(y, x, static_cast<opmath_t>(flow(n, 1, y, x)),
                                     static_cast<opmath_t>(flow(n, 0, y, x)), weight, height, width);
}

// Forward splat of source (n, y, x) into the opmath accumulator `projected` (sums in channels
// 0-1, total weight in channel 2): three adds per distinct target cell. `add` is a plain add
// where one thread owns the image and an atomic add where sources run concurrently.
template <typename scalar_t, typename opmath_t, typename AddOp>
C10_HOST_DEVICE C10_ALWAYS_INLINE void flow_projection_splat_pixel(
    const Strided4d<const scalar_t>& flow, const Strided4d<const scalar_t>& weight, bool weighted,
    const Strided4d<opmath_t>& projected, int64_t height, int64_t width, int64_t n, int64_t y, int64_t x,
    AddOp add) {
  const opmath_t w = source_weight<scalar_t, opmath_t>(weight, weighted, n, y, x);
  const ProjectionCells cells = locate_source<scalar_t, opmath_t>(flow, w, n, y, x, height, width);
  if (!cells.projected) {
    return;
  }
  const opmath_t share = w * opmath_t(cells.multiplicity);
  const opmath_t value_x = -share * static_cast<opmath_t>(flow(n, 0, y, x));
  const opmath_t value_y = -share * static_cast<opmath_t>(flow(n, 1, y, x));
  for (int r = 0; r < cells.row_count; ++r) {
    for (int c = 0; c < cells.col_count; ++c) {
      add(&projected(n, 0, cells.rows[r], cells.cols[c]), value_x);
      add(&projected(n, 1, cells.rows[r], cells.cols[c]), value_y);
      add(&projected(n, kTotalWeightChannel, cells.rows[r], cells.cols[c]), share);
    }
  }
}

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE bool received(const Strided4d<T>& projected, int64_t n, int64_t y, int64_t x) {
  return projected(n, kTotalWeightChannel, y, x) > 0;
}

// Turns the sums of pixel (n, y, x) into their average and writes the output of a received
// pixel; a hole (zero sums) is written as 0 only when holes are not filled (else the fill passes
// write it).
template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void flow_projection_average_pixel(const Strided4d<opmath_t>& projected,
                                                                     const Strided4d<scalar_t>& output,
                                                                     bool fill_holes, int64_t n, int64_t y,
                                                                     int64_t x) {
  const opmath_t total = projected(n, kTotalWeightChannel, y, x);
  if (total > opmath_t(0)) {
    const opmath_t average_x = projected(n, 0, y, x) / total;
    const opmath_t average_y = projected(n, 1, y, x) / total;
    projected(n, 0, y, x) = average_x;
    projected(n, 1, y, x) = average_y;
    output(n, 0, y, x) = static_cast<scalar_t>(average_x);
    output(n, 1, y, x) = static_cast<scalar_t>(average_y);
  } else if (!fill_holes) {
    output(n, 0, y, x) = scalar_t(0);
    output(n, 1, y, x) = scalar_t(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Hole filling along lines (rows and columns of one image).

// Pixel i of a row (axis x) or column (axis y) of image n.
struct PlaneLine {
  int64_t n, first_y, first_x, step_y, step_x, length;

  C10_HOST_DEVICE C10_ALWAYS_INLINE int64_t y(int64_t i) const { return first_y + i * step_y; }
  C10_HOST_DEVICE C10_ALWAYS_INLINE int64_t x(int64_t i) const { return first_x + i * step_x; }
};

C10_HOST_DEVICE C10_ALWAYS_INLINE PlaneLine image_row(int64_t n, int64_t y, int64_t width) {
  return PlaneLine{n, y, 0, 0, 1, width};
}

C10_HOST_DEVICE C10_ALWAYS_INLINE PlaneLine image_column(int64_t n, int64_t x, int64_t height) {
  return PlaneLine{n, 0, x, 1, 0, height};
}

// First and last received pixel of each line, stored as int64 pairs (first, last) per line:
// first = length and last = -1 when the line received nothing.
struct LineExtents {
  int64_t* data;
  int64_t lines_per_image;

  C10_HOST_DEVICE C10_ALWAYS_INLINE int64_t* at(int64_t n, int64_t line) const {
    return data + (n * lines_per_image + line) * 2;
  }
  // How many of the two directions along this line have a received pixel, seen from hole i;
  // the one after i (below, for a column) only when `count_after`.
  C10_HOST_DEVICE C10_ALWAYS_INLINE int directions(int64_t n, int64_t line, int64_t i, bool count_after = true) const {
    const int64_t* extent = at(n, line);
    return int(extent[0] < i) + int(count_after && extent[1] > i);
  }
};

// How many pixels of a line are tested together: their loads are independent, so that a GPU
// thread keeps several in flight instead of waiting for each in turn.
constexpr int kScanChunk = 8;

// The holes strictly between `before` (a received pixel, or -1) and `end` (a received pixel, or
// the line's length): one segment() call, then hole() for each, then end_segment().
template <typename Visitor>
C10_HOST_DEVICE C10_ALWAYS_INLINE void visit_segment(const PlaneLine& line, int64_t before, int64_t end,
                                                     Visitor& visit) {
  if (end - before <= 1) {
    return;
  }
  visit.segment(line, before, end < line.length ? end : -1);
  for (int64_t hole = before + 1; hole < end; ++hole) {
    visit.hole(line, hole);
  }
  visit.end_segment(line);
}

// Walks a line once, visiting each run of holes with the nearest received pixels before and
// after it (-1 when there is none) and calling visit.received(i) for the received pixels. Each
// pixel is touched at most twice: O(length). Stores the line's (first, last) received pixel in
// extent (length and -1 when it has none).
template <typename T, typename Visitor>
C10_HOST_DEVICE C10_ALWAYS_INLINE void scan_line(const Strided4d<T>& projected, const PlaneLine& line,
                                                 Visitor& visit, int64_t* extent) {
  int64_t before = -1;
  int64_t first = line.length;
  for (int64_t base = 0; base < line.length; base += kScanChunk) {
    bool hit[kScanChunk];
MEMC_UNROLL
    for (int k = 0; k < kScanChunk; ++k) {
      const int64_t i = base + k;
      hit[k] = i < line.length && received(projected, line.n, line.y(i), line.x(i));
    }
    for (int k = 0; k < kScanChunk; ++k) {
      if (!hit[k]) {
        continue;
      }
      const int64_t i = base + k;
      visit_segment(line, before, i, visit);
      visit.received(line, i);
      first = first == line.length ? i : first;
      before = i;
    }
  }
  visit_segment(line, before, line.length, visit);
  extent[0] = first;
  extent[1] = before;
}

// Sum of the averages (channels 0-1 of `projected`) at the existing ones of pixels a and b of a
// line (-1: none), and how many exist.
template <typename opmath_t>
struct NeighbourSum {
  opmath_t x, y;
  int count;
};

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE NeighbourSum<std::remove_const_t<T>> neighbour_sum(const Strided4d<T>& projected,
                                                                                    const PlaneLine& line, int64_t a,
                                                                                    int64_t b) {
  NeighbourSum<std::remove_const_t<T>> sum{0, 0, 0};
  if (a >= 0) {
    sum.x += projected(line.n, 0, line.y(a), line.x(a));
    sum.y += projected(line.n, 1, line.y(a), line.x(a));
    ++sum.count;
  }
  if (b >= 0) {
    sum.x += projected(line.n, 0, line.y(b), line.x(b));
    sum.y += projected(line.n, 1, line.y(b), line.x(b));
    ++sum.count;
  }
  return sum;
}

// Forward, row pass: writes to each hole the sum of the averages of its nearest received pixels
// to the left and right (the column pass adds up and down and divides).
template <typename opmath_t>
struct RowFillVisitor {
  Strided4d<opmath_t> projected;
  NeighbourSum<opmath_t> sides;

  C10_HOST_DEVICE C10_ALWAYS_INLINE void segment(const PlaneLine& line, int64_t before, int64_t after) {
    sides = neighbour_sum(projected, line, before, after);
  }
  C10_HOST_DEVICE C10_ALWAYS_INLINE void hole(const PlaneLine& line, int64_t i) {
    projected(line.n, 0, line.y(i), line.x(i)) = sides.x;
    projected(line.n, 1, line.y(i), line.x(i)) = sides.y;
  }
  C10_HOST_DEVICE C10_ALWAYS_INLINE void end_segment(const PlaneLine&) {}
  C10_HOST_DEVICE C10_ALWAYS_INLINE void received(const PlaneLine&, int64_t) {}
};

// Forward, column pass: completes each hole with its nearest received pixels above and (with
// `fill_from_below`) below, divides by the number of directions found (row and column), and
// writes the hole's output.
template <typename scalar_t, typename opmath_t>
struct ColumnFillVisitor {
  Strided4d<opmath_t> projected;
  Strided4d<scalar_t> output;
  LineExtents row_extents;
  bool fill_from_below;
  NeighbourSum<opmath_t> sides;

  C10_HOST_DEVICE C10_ALWAYS_INLINE void segment(const PlaneLine& line, int64_t before, int64_t after) {
    sides = neighbour_sum(projected, line, before, fill_from_below ? after : int64_t(-1));
  }
  C10_HOST_DEVICE C10_ALWAYS_INLINE void hole(const PlaneLine& line, int64_t i) {
    const int64_t n = line.n, y = line.y(i), x = line.x(i);
    const int directions = row_extents.directions(n, y, x) + sides.count;
    // Channels 0-1 of a hole hold the left + right sum written by the row pass.
    const opmath_t value_x = directions > 0 ? (projected(n, 0, y, x) + sides.x) / opmath_t(directions) : opmath_t(0);
    const opmath_t value_y = directions > 0 ? (projected(n, 1, y, x) + sides.y) / opmath_t(directions) : opmath_t(0);
    projected(n, 0, y, x) = value_x;
    projected(n, 1, y, x) = value_y;
    output(n, 0, y, x) = static_cast<scalar_t>(value_x);
    output(n, 1, y, x) = static_cast<scalar_t>(value_y);
  }
  C10_HOST_DEVICE C10_ALWAYS_INLINE void end_segment(const PlaneLine&) {}
  C10_HOST_DEVICE C10_ALWAYS_INLINE void received(const PlaneLine&, int64_t) {}
};

// Backward, first pass over the rows: only the rows' extents are needed.
struct ExtentVisitor {
  C10_HOST_DEVICE C10_ALWAYS_INLINE void segment(const PlaneLine&, int64_t, int64_t) {}
  C10_HOST_DEVICE C10_ALWAYS_INLINE void hole(const PlaneLine&, int64_t) {}
  C10_HOST_DEVICE C10_ALWAYS_INLINE void end_segment(const PlaneLine&) {}
  C10_HOST_DEVICE C10_ALWAYS_INLINE void received(const PlaneLine&, int64_t) {}
};

// Backward of the fill: a hole's value is the mean of its k neighbours' averages, so each
// neighbour's average receives grad_output(hole) / k. `grad_average` starts as grad_output
// (the received pixels' own term); the column pass adds the shares of up/down neighbours, the row
// pass those of left/right neighbours. `other_extents` are the extents of the crossing lines,
// giving the directions found across. A run of holes shares its two neighbours, so the shares
// are summed over the run and added once. Without `fill_from_below` the neighbour below a hole
// (after it along a column) takes no share and does not count.
template <typename scalar_t, typename opmath_t>
struct FillGradVisitor {
  Strided4d<const scalar_t> grad_output;
  Strided4d<opmath_t> grad_average;
  LineExtents other_extents;
  bool along_rows;
  bool fill_from_below;
  int64_t before, after;
  int found;  // neighbours along this line: 0, 1 or 2
  opmath_t share_x, share_y;

  C10_HOST_DEVICE C10_ALWAYS_INLINE void segment(const PlaneLine&, int64_t before_, int64_t after_) {
    before = before_;
    after = along_rows || fill_from_below ? after_ : int64_t(-1);
    found = int(before >= 0) + int(after >= 0);
    share_x = 0;
    share_y = 0;
  }
  C10_HOST_DEVICE C10_ALWAYS_INLINE void hole(const PlaneLine& line, int64_t i) {
    if (found == 0) {
      return;  // nothing to share along this line
    }
    const int64_t n = line.n, y = line.y(i), x = line.x(i);
    // Directions across: the crossing line through the hole is column x (row pass) or row y.
    const int across = along_rows ? other_extents.directions(n, x, y, fill_from_below)
                                  : other_extents.directions(n, y, x);
    const opmath_t inverse_k = opmath_t(1) / opmath_t(across + found);
    share_x += static_cast<opmath_t>(grad_output(n, 0, y, x)) * inverse_k;
    share_y += static_cast<opmath_t>(grad_output(n, 1, y, x)) * inverse_k;
  }
  C10_HOST_DEVICE C10_ALWAYS_INLINE void end_segment(const PlaneLine& line) {
    if (before >= 0) {
      grad_average(line.n, 0, line.y(before), line.x(before)) += share_x;
      grad_average(line.n, 1, line.y(before), line.x(before)) += share_y;
    }
    if (after >= 0) {
      grad_average(line.n, 0, line.y(after), line.x(after)) += share_x;
      grad_average(line.n, 1, line.y(after), line.x(after)) += share_y;
    }
  }
  C10_HOST_DEVICE C10_ALWAYS_INLINE void received(const PlaneLine&, int64_t) {}
};

// Backward of the splat and average, for source (n, y, x): a gather over its target cells, so
// it needs no atomics. With S the sums, T the total weight and a = S / T of a target cell,
//   d a / d f_y = -w_y / T      and      d a / d w_y = (-f_y - a) / T,
// per nominal cell (a clamped cell counts as often as it was splatted to). Writes the flow
// gradient when `want_flow` and the weight gradient when `want_weight` (which needs `weighted`).
template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void flow_projection_grad_pixel(
    const Strided4d<const scalar_t>& flow, const Strided4d<const scalar_t>& weight, bool weighted,
    const Strided4d<const opmath_t>& projected, const Strided4d<const opmath_t>& grad_average,
    const Strided4d<scalar_t>& grad_flow, const Strided4d<scalar_t>& grad_weight, bool want_flow, bool want_weight,
    int64_t height, int64_t width, int64_t n, int64_t y, int64_t x) {
  const opmath_t w = source_weight<scalar_t, opmath_t>(weight, weighted, n, y, x);
  const ProjectionCells cells = locate_source<scalar_t, opmath_t>(flow, w, n, y, x, height, width);
  opmath_t grad_flow_x = 0, grad_flow_y = 0, grad_w = 0;
  if (cells.projected) {
    const opmath_t flow_x = static_cast<opmath_t>(flow(n, 0, y, x));
    const opmath_t flow_y = static_cast<opmath_t>(flow(n, 1, y, x));
    opmath_t sum_x = 0, sum_y = 0;
    for (int r = 0; r < cells.row_count; ++r) {
      for (int c = 0; c < cells.col_count; ++c) {
        const int64_t row = cells.rows[r], col = cells.cols[c];
        const opmath_t per_weight = opmath_t(cells.multiplicity) / projected(n, kTotalWeightChannel, row, col);
        const opmath_t gx = grad_average(n, 0, row, col) * per_weight;
        const opmath_t gy = grad_average(n, 1, row, col) * per_weight;
        sum_x += gx;
        sum_y += gy;
        if (want_weight) {
          grad_w += gx * (-flow_x - projected(n, 0, row, col)) + gy * (-flow_y - projected(n, 1, row, col));
        }
      }
    }
    grad_flow_x = -w * sum_x;
    grad_flow_y = -w * sum_y;
  }
  if (want_flow) {
    grad_flow(n, 0, y, x) = static_cast<scalar_t>(grad_flow_x);
    grad_flow(n, 1, y, x) = static_cast<scalar_t>(grad_flow_y);
  }
  if (want_weight) {
    grad_weight(n, 0, y, x) = static_cast<scalar_t>(grad_w);
  }
}

}  // namespace memc
