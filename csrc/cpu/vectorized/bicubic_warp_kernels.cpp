// The CPU kernel of the bicubic warp, vectorised across x with at::vec::Vectorized: each lane is
// a pixel of the row and computes the per-pixel math of memc/bicubic_warp.h (adaptive_warp's
// window with K = 4, cubic_weights, bicubic_window_sums) called with vectors, in the scalar order
// and with no multiply fused with an add (setup.py builds with -ffp-contract=off): every
// capability gives the bits of the scalar formula. The CUDA kernel runs the same formula per
// pixel, but nvcc fuses multiplies with adds (no -fmad=false), so its last bits may differ.
//
// Compiled once per CPU capability (see cpu/capability.h): everything here is in
// memc::CPU_CAPABILITY.
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>

#include "cpu/bicubic_warp_kernels.h"
#include "cpu/vectorized/warp_lanes.h"
#include "memc/bicubic_warp.h"

namespace memc {
namespace CPU_CAPABILITY {

template <typename scalar_t>
void bicubic_warp_forward_rows(const BicubicWarpViews<scalar_t>& views, int64_t row_begin, int64_t row_end) {
  using opmath_t = at::opmath_type<scalar_t>;
  using V = Vectorized<opmath_t>;
  constexpr int K = kBicubicSize;
  const auto& flow = views.flow;
  const int64_t channels = views.channels, height = views.height, width = views.width;
  const int64_t stride_y = views.image.stride_y, stride_x = views.image.stride_x;
  const auto limits = warp_limits<opmath_t>(height, width);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / height, y = row % height;
    for (int64_t x0 = 0; x0 < width; x0 += V::size()) {
      const int64_t count = std::min<int64_t>(V::size(), width - x0);
      prefetch_planes(&flow(n, 0, y, x0), 2, flow.stride_c, flow.stride_x);
      const LaneWindows<K, opmath_t> windows(load_lanes<opmath_t>(&flow(n, 1, y, x0), flow.stride_x, count),
                                             load_lanes<opmath_t>(&flow(n, 0, y, x0), flow.stride_x, count), limits,
                                             height, width, y, x0, stride_y, stride_x);
      // Garbage in the invalid lanes (whose fractions are not in [0, 1]), blended out below.
      V weight_y[K], weight_x[K];
      cubic_weights(windows.frac_y, weight_y);
      cubic_weights(windows.frac_x, weight_x);
      const auto runs = tap_runs<K>(windows, x0, count, height, width, stride_y, stride_x, true);
      prefetch_planes<true>(&views.output(n, 0, y, x0), channels, views.output.stride_c, views.output.stride_x);
      with_taps(windows, runs, stride_y, [&](const auto& taps) {
        for_channel_groups(channels, [&](auto lanes, int64_t ch) {
          constexpr int LANES = decltype(lanes)::value;
          warp_channels<LANES>(views.image, views.output, windows, taps, width, n, ch, y, x0, count,
                               [&](const auto& sample, V (&sums)[LANES]) {
                                 bicubic_window_sums<LANES>(weight_y, weight_x, sample, sums);
                               });
        });
      });
    }
  }
}

#define MEMC_INSTANTIATE(scalar_t) \
  template void bicubic_warp_forward_rows<scalar_t>(const BicubicWarpViews<scalar_t>&, int64_t, int64_t);
MEMC_INSTANTIATE(float)
MEMC_INSTANTIATE(double)
MEMC_INSTANTIATE(c10::Half)
MEMC_INSTANTIATE(c10::BFloat16)
#undef MEMC_INSTANTIATE

}  // namespace CPU_CAPABILITY
}  // namespace memc
