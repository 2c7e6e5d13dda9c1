// Parallel loops over the rows and columns of a batch of images, and the private copies of the
// target that let scatters run in parallel, shared by the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"

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

// Scatters (a source may add anywhere in its plane) run in bands: each task owns one plane and one
// band of its source rows and adds into its band's private copy of the target, so plain adds are
// race-free and each copy receives its adds in a fixed order; the copies are then summed in band
// order. With fewer planes than threads the planes are cut into several bands to keep every thread
// busy; never more bands than threads, as each costs a copy of the target.
inline int64_t scatter_bands(int64_t planes, int64_t height) {
  const int64_t threads = at::get_num_threads();
  if (planes == 0 || height == 0 || planes >= threads) {
    return 1;
  }
  return std::min<int64_t>((threads + planes - 1) / planes, height);
}

// Calls f(plane, band, y) for every row y of every band of every plane, in parallel over
// (plane, band); one task visits its rows in order.
template <typename F>
void for_each_band_row(int64_t planes, int64_t bands, int64_t height, int64_t width, const F& f) {
  const int64_t band_pixels = height * width / bands;
  at::parallel_for(0, planes * bands, lines_per_task(band_pixels), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / bands, band = task % bands;
      for (int64_t y = band * height / bands; y < (band + 1) * height / bands; ++y) {
        f(plane, band, y);
      }
    }
  });
}

// The bands' zeroed copies of a scatter's target. One tensor per band rather than one (bands, ...)
// tensor: each stays the size of the result, which the allocator recycles from call to call,
// where the larger block was mapped and page-faulted afresh on every call (at 1080p that cost
// more than the second thread saved).
inline std::vector<at::Tensor> zeroed_band_copies(int64_t bands, at::IntArrayRef sizes,
                                                  const at::TensorOptions& options) {
  std::vector<at::Tensor> copies;
  for (int64_t band = 0; band < bands; ++band) {
    copies.push_back(at::zeros(sizes, options));
  }
  return copies;
}

}  // namespace memc
