// Parallel loops over the rows of a batch of images, and how many bands a scatter's rows are cut
// into, shared by the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "common.h"

namespace memc {

// Roughly how many pixel visits make a task worth handing to another thread.
constexpr int64_t kPixelsPerTask = 2048;

inline int64_t lines_per_task(int64_t length) {
  return std::max<int64_t>(1, kPixelsPerTask / std::max<int64_t>(1, length));
}

// Calls rows(begin, end) over ranges of the B * H rows of a batch (numbered n * height + y), in
// parallel: rows are the unit, so one image also keeps every thread busy.
template <typename F>
void parallel_rows(int64_t batch, int64_t height, int64_t width, const F& rows) {
  at::parallel_for(0, batch * height, lines_per_task(width), rows);
}

// Scatters (a source may add anywhere in its plane, or its image) run in bands of source rows, each
// adding into its own target (the result, or a private copy of the part it reaches) so that plain
// adds are race-free and each target receives its adds in a fixed order; the copies are summed in
// band order. With fewer planes than threads the planes are cut into several bands to keep every
// thread busy; never more bands than threads, as each costs a copy.
inline int64_t scatter_bands(int64_t planes, int64_t height) {
  const int64_t threads = at::get_num_threads();
  if (planes == 0 || height == 0 || planes >= threads) {
    return 1;
  }
  return std::min<int64_t>((threads + planes - 1) / planes, height);
}

}  // namespace memc
