// Parallel loops over the rows of a batch of images, and how many bands a scatter's rows are cut
// into, shared by the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
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

// Roughly how many pixels make a task for parallel_rows_shared: enough that each task's rows run
// long past their first, unprefetched, vectors; smaller where that would leave fewer than
// kSharedTasksPerThread tasks per thread (many threads, a small image).
constexpr int64_t kPixelsPerSharedTask = 8192;
constexpr int64_t kSharedTasksPerThread = 4;

// As parallel_rows, but each thread takes tasks of a few rows in turn from a shared counter instead
// of one fixed share of the rows: a thread that runs slower (another process on its core) takes
// fewer, rather than holding up the others at the end. Only for passes whose rows are independent
// (each output element written by one row), whose results do not depend on which thread runs a row.
template <typename F>
void parallel_rows_shared(int64_t batch, int64_t height, int64_t width, const F& rows) {
  const int64_t total = batch * height, available = at::get_num_threads();
  const int64_t least_tasks = kSharedTasksPerThread * available;
  const int64_t grain = std::max<int64_t>(
      1, std::min(kPixelsPerSharedTask / std::max<int64_t>(1, width), (total + least_tasks - 1) / least_tasks));
  const int64_t tasks = (total + grain - 1) / grain;
  const int64_t threads = std::min(available, tasks);
  if (threads <= 1 || at::in_parallel_region()) {
    if (total > 0) {
      rows(0, total);
    }
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t task = next.fetch_add(1); task < tasks; task = next.fetch_add(1)) {
      rows(task * grain, std::min(total, (task + 1) * grain));
    }
  });
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
