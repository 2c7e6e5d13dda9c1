// Parallel loops over the rows and columns of a batch of images, shared by the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace memc {

// Roughly how many pixel visits make a task worth handing to another thread.
constexpr int64_t kPixelsPerTask = 2048;

inline int64_t lines_per_task(int64_t length) {
  return std::max<int64_t>(1, kPixelsPerTask / std::max<int64_t>(1, length));
}

// Calls f(n, y) for every row of every image, in parallel.
template <typename F>
void for_each_row(int64_t batch, int64_t height, int64_t width, const F& f) {
  at::parallel_for(0, batch * height, lines_per_task(width), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      f(row / height, row % height);
    }
  });
}

// Calls f(n, x) for every column of every image, in parallel.
template <typename F>
void for_each_column(int64_t batch, int64_t height, int64_t width, const F& f) {
  at::parallel_for(0, batch * width, lines_per_task(height), [&](int64_t begin, int64_t end) {
    for (int64_t column = begin; column < end; ++column) {
      f(column / width, column % width);
    }
  });
}

}  // namespace memc
