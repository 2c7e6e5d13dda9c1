// The CPU kernels of the adaptive warping layer, vectorised across x with at::vec::Vectorized:
// each lane is a pixel of the row, and each lane computes the per-pixel math of
// memc/adaptive_warp.h (window_is_valid, tap_weight, window_sums, window_tap_products, tap_kernel_grad,
// add_tap_flow_grads),
// called here with vectors. The operations and their order are the scalar ones and no multiply is
// fused with an add (setup.py builds with -ffp-contract=off), so every capability, and the CUDA
// kernels' scalar path, give the same bits.
//
// Compiled once per CPU capability (see cpu/capability.h): everything here is in
// memc::CPU_CAPABILITY.
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>

#include "common.h"
#include "cpu/adaptive_warp_kernels.h"
#include "memc/adaptive_warp.h"

namespace memc {
namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// float16 and bfloat16, whose full stride-1 vectors convert to float32 in a few instructions.
template <typename scalar_t>
constexpr bool kIsHalfType = std::is_same_v<scalar_t, c10::Half> || std::is_same_v<scalar_t, c10::BFloat16>;

// Lanes [0, count) of a row read through stride `stride`, in opmath_t; the others are zero. A full
// stride-1 vector of a half type is converted as one vector (exact: every half value is a
// float32); tails and strided rows element by element, which gives the same values.
template <typename opmath_t, typename scalar_t>
C10_ALWAYS_INLINE Vectorized<opmath_t> load_lanes(const scalar_t* source, int64_t stride, int64_t count) {
  using V = Vectorized<opmath_t>;
  if (stride == 1) {
    if constexpr (std::is_same_v<scalar_t, opmath_t>) {
      return V::loadu(source, count);
    } else if constexpr (kIsHalfType<scalar_t> && std::is_same_v<opmath_t, float>) {
      if (count == V::size()) {
        V lanes;
        at::vec::load_to_float(source, lanes);
        return lanes;
      }
    }
  }
  opmath_t lanes[V::size()] = {};
  for (int64_t i = 0; i < count; ++i) {
    lanes[i] = static_cast<opmath_t>(source[i * stride]);
  }
  return V::loadu(lanes);
}

// Writes lanes [0, count) to a row through stride `stride`, rounded to scalar_t (a full stride-1
// vector of a half type as one vector, rounded to nearest even as element by element).
template <typename scalar_t, typename opmath_t>
C10_ALWAYS_INLINE void store_lanes(const Vectorized<opmath_t>& value, scalar_t* target, int64_t stride,
                                   int64_t count) {
  using V = Vectorized<opmath_t>;
  if (stride == 1) {
    if constexpr (std::is_same_v<scalar_t, opmath_t>) {
      value.store(target, count);
      return;
    } else if constexpr (kIsHalfType<scalar_t> && std::is_same_v<opmath_t, float>) {
      if (count == V::size()) {
        at::vec::convert_from_float<scalar_t>(value, value).store(target, V::size());
        return;
      }
    }
  }
  opmath_t lanes[V::size()];
  value.store(lanes);
  for (int64_t i = 0; i < count; ++i) {
    target[i * stride] = static_cast<scalar_t>(lanes[i]);
  }
}

// The passes read and write rows of many planes at once (the K*K kernel coefficients, the K*K
// kernel gradients, the flow, the channels): more streams than the hardware prefetcher follows,
// so that without help each vector of pixels waited on memory for its coefficients (at 720p, a
// third of the forward's time). Each pass asks for its rows kPrefetchBytes ahead of where it is.
constexpr int64_t kPrefetchBytes = 512;

// A prefetch hint where the compiler has one (g++, clang); nothing elsewhere (MSVC builds the
// DEFAULT capability alone, whose scalar loops gain little from it).
#if defined(__GNUC__) || defined(__clang__)
#define MEMC_PREFETCH(address, for_write) __builtin_prefetch((address), (for_write))
#else
#define MEMC_PREFETCH(address, for_write) static_cast<void>(address)
#endif

// Prefetches, in `planes` planes from `first` on (`plane_stride` apart), the row element that
// lies kPrefetchBytes ahead of `first` along a row of stride `stride_x`.
template <bool kWrite = false, typename T>
C10_ALWAYS_INLINE void prefetch_planes(const T* first, int64_t planes, int64_t plane_stride, int64_t stride_x) {
  const int64_t ahead = kPrefetchBytes / static_cast<int64_t>(sizeof(T)) * stride_x;
  for (int64_t plane = 0; plane < planes; ++plane) {
    MEMC_PREFETCH(first + plane * plane_stride + ahead, kWrite ? 1 : 0);
  }
}

// The windows of the pixels x0 .. x0 + count - 1 of row (n, y), one per lane, as
// locate_window computes them: which are valid, their fractions, and the offsets of their
// clamped rows and columns in a plane with strides (stride_y, stride_x). Invalid lanes (the
// lanes past the row's end among them) get the window at (0, 0), so their offsets stay inside
// the plane, and are blended out by the callers.
template <int K, typename opmath_t>
struct LaneWindows {
  using V = Vectorized<opmath_t>;
  using I = Vectorized<at::vec::int_same_size_t<opmath_t>>;
  V valid;  // all ones in valid lanes
  V floor_y, floor_x;  // floor of the target (0 in invalid lanes)
  V frac_y, frac_x;
  I row_offset[K], col_offset[K];

  LaneWindows(const V& flow_y, const V& flow_x, const WarpLimits<opmath_t>& limits, int64_t height,
              int64_t width, int64_t y, int64_t x0, int64_t stride_y, int64_t stride_x) {
    using index_t = at::vec::int_same_size_t<opmath_t>;
    const V target_y = V(static_cast<opmath_t>(y)) + flow_y;
    const V target_x = V::arange(static_cast<opmath_t>(x0), opmath_t(1)) + flow_x;
    valid = window_is_valid(target_y, target_x, flow_y, flow_x, limits);
    floor_y = V::blendv(V(0), target_y.floor(), valid);
    floor_x = V::blendv(V(0), target_x.floor(), valid);
    frac_y = target_y - floor_y;
    frac_x = target_x - floor_x;
    const I first_row = at::vec::convert_to_int_of_same_size(floor_y) + I(index_t(1 - K / 2));
    const I first_col = at::vec::convert_to_int_of_same_size(floor_x) + I(index_t(1 - K / 2));
    const I last_row(static_cast<index_t>(height - 1)), last_col(static_cast<index_t>(width - 1));
    for (int r = 0; r < K; ++r) {
      row_offset[r] = at::vec::clamp(first_row + I(index_t(r)), I(0), last_row) * I(static_cast<index_t>(stride_y));
      col_offset[r] = at::vec::clamp(first_col + I(index_t(r)), I(0), last_col) * I(static_cast<index_t>(stride_x));
    }
  }
};

// The windows of the pixels x .. x + count - 1 of row (n, y), their flow read from `views`, with
// offsets in a plane of strides (stride_y, stride_x): the one setup of every pass, which also
// prefetches the flow and kernel rows ahead.
template <int K, typename scalar_t>
C10_ALWAYS_INLINE LaneWindows<K, at::opmath_type<scalar_t>> pixel_windows(
    const AdaptiveWarpViews<scalar_t>& views, const WarpLimits<at::opmath_type<scalar_t>>& limits, int64_t n,
    int64_t y, int64_t x, int64_t count, int64_t stride_y, int64_t stride_x) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto& flow = views.flow;
  prefetch_planes(&flow(n, 0, y, x), 2, flow.stride_c, flow.stride_x);
  prefetch_planes(&views.kernel(n, 0, y, x), K * K, views.kernel.stride_c, views.kernel.stride_x);
  return LaneWindows<K, opmath_t>(load_lanes<opmath_t>(&flow(n, 1, y, x), flow.stride_x, count),
                                  load_lanes<opmath_t>(&flow(n, 0, y, x), flow.stride_x, count), limits,
                                  views.height, views.width, y, x, stride_y, stride_x);
}

template <typename opmath_t>
C10_ALWAYS_INLINE Vectorized<opmath_t> gather_lanes(const opmath_t* plane,
                                              const Vectorized<at::vec::int_same_size_t<opmath_t>>& offset) {
  return at::vec::gather<sizeof(opmath_t)>(plane, offset);
}

// The offsets of the pixels x0 .. x0 + count - 1 of row y themselves (past the end: the last).
template <typename opmath_t>
C10_ALWAYS_INLINE Vectorized<at::vec::int_same_size_t<opmath_t>> own_offsets(int64_t y, int64_t x0, int64_t width,
                                                                             int64_t stride_y, int64_t stride_x) {
  using index_t = at::vec::int_same_size_t<opmath_t>;
  using I = Vectorized<index_t>;
  const I xs = at::vec::minimum(I::arange(static_cast<index_t>(x0), index_t(1)), I(static_cast<index_t>(width - 1)));
  return I(static_cast<index_t>(y * stride_y)) + xs * I(static_cast<index_t>(stride_x));
}

// The taps of a vector of pixels read with loads instead of gathers. Where every lane is valid,
// the windows need no clamping and the lanes' windows are the same up to a step of one row or
// column (smooth flow: floor(flow) changes little along a row), lane l's tap (r, c) is
//   plane[base + (r + row_up_l) * stride_y + l + c + col_up_l]
// with row_up_l and col_up_l in {0, 1}: for each (r, c), one or two contiguous loads of a row,
// blended lane by lane. Same values as the gathers, so the sums are bit for bit the same.
template <typename opmath_t>
struct TapRuns {
  using V = Vectorized<opmath_t>;
  bool loadable = false;           // else the taps are gathered
  bool row_step = false, col_step = false;
  int64_t base = 0;                // offset of lane 0's tap (0, 0) when it has no step
  V row_up, col_up;                // all ones in the lanes one row (column) further
};

// Whether the taps of the pixels x0 .. x0 + count - 1 of row y, with windows `windows`, can be
// loaded from a plane of strides (stride_y, stride_x), and how; `steps` says whether a step of
// one row or column between lanes is allowed (a scatter applies such vectors as runs of lanes
// with one offset, in lane order, since two lanes of one vector could add to one address).
template <int K, typename opmath_t>
C10_ALWAYS_INLINE TapRuns<opmath_t> tap_runs(const LaneWindows<K, opmath_t>& windows, int64_t x0, int64_t count,
                                             int64_t height, int64_t width, int64_t stride_y, int64_t stride_x,
                                             bool steps) {
  using V = Vectorized<opmath_t>;
  TapRuns<opmath_t> runs;
  if (count != V::size() || stride_x != 1 || windows.valid.zero_mask() != 0) {
    return runs;
  }
  const auto min = [](const V& a, const V& b) { return at::vec::minimum(a, b); };
  const auto max = [](const V& a, const V& b) { return at::vec::maximum(a, b); };
  // Column of tap 0 minus the lane's own x (whole numbers, exact in opmath_t), and row of tap 0.
  const V shift_x = windows.floor_x - V::arange(static_cast<opmath_t>(x0), opmath_t(1));
  const opmath_t low_x = at::vec::vec_reduce_all<opmath_t>(min, shift_x);
  const opmath_t high_x = at::vec::vec_reduce_all<opmath_t>(max, shift_x);
  const opmath_t low_y = at::vec::vec_reduce_all<opmath_t>(min, windows.floor_y);
  const opmath_t high_y = at::vec::vec_reduce_all<opmath_t>(max, windows.floor_y);
  const int64_t first_col = x0 + static_cast<int64_t>(low_x) + 1 - K / 2;
  const int64_t last_col = x0 + V::size() - 1 + static_cast<int64_t>(high_x) + K / 2;
  const int64_t first_row = static_cast<int64_t>(low_y) + 1 - K / 2;
  const int64_t last_row = static_cast<int64_t>(high_y) + K / 2;
  const opmath_t spread = steps ? opmath_t(1) : opmath_t(0);
  if (high_x - low_x > spread || high_y - low_y > spread || first_col < 0 || last_col > width - 1 ||
      first_row < 0 || last_row > height - 1) {
    return runs;
  }
  runs.loadable = true;
  runs.row_step = high_y != low_y;
  runs.col_step = high_x != low_x;
  runs.base = first_row * stride_y + first_col;
  runs.row_up = windows.floor_y > V(low_y);
  runs.col_up = shift_x > V(low_x);
  return runs;
}

// sample(plane, r, c): the lanes' tap (r, c) in a plane, gathered at the windows' offsets.
template <int K, typename opmath_t>
struct GatheredTaps {
  static constexpr bool kAllValid = false;
  const LaneWindows<K, opmath_t>& windows;
  C10_ALWAYS_INLINE Vectorized<opmath_t> operator()(const opmath_t* plane, int r, int c) const {
    return gather_lanes(plane, windows.row_offset[r] + windows.col_offset[c]);
  }
};

// The same, loaded as TapRuns describes, for each combination of steps.
template <bool kRowStep, bool kColStep, typename opmath_t>
struct LoadedTaps {
  using V = Vectorized<opmath_t>;
  static constexpr bool kAllValid = true;
  const TapRuns<opmath_t>& runs;
  int64_t stride_y;
  C10_ALWAYS_INLINE V row(const opmath_t* start) const {
    if constexpr (kColStep) {
      return V::blendv(V::loadu(start), V::loadu(start + 1), runs.col_up);
    } else {
      return V::loadu(start);
    }
  }
  C10_ALWAYS_INLINE V operator()(const opmath_t* plane, int r, int c) const {
    const opmath_t* start = plane + runs.base + r * stride_y + c;
    if constexpr (kRowStep) {
      return V::blendv(row(start), row(start + stride_y), runs.row_up);
    } else {
      return row(start);
    }
  }
};

// Calls f(taps) with the sampler that fits `runs`.
template <int K, typename opmath_t, typename F>
C10_ALWAYS_INLINE void with_taps(const LaneWindows<K, opmath_t>& windows, const TapRuns<opmath_t>& runs,
                                 int64_t stride_y, const F& f) {
  if (!runs.loadable) {
    f(GatheredTaps<K, opmath_t>{windows});
  } else if (runs.row_step) {
    if (runs.col_step) {
      f(LoadedTaps<true, true, opmath_t>{runs, stride_y});
    } else {
      f(LoadedTaps<true, false, opmath_t>{runs, stride_y});
    }
  } else if (runs.col_step) {
    f(LoadedTaps<false, true, opmath_t>{runs, stride_y});
  } else {
    f(LoadedTaps<false, false, opmath_t>{runs, stride_y});
  }
}

// Output channels ch .. ch + LANES - 1 of the lanes' pixels: the window sums where valid, the
// pixel itself elsewhere.
template <int LANES, int K, typename scalar_t, typename opmath_t, typename Taps>
C10_ALWAYS_INLINE void warp_channels(const AdaptiveWarpViews<scalar_t>& views, const LaneWindows<K, opmath_t>& windows,
                                     const Taps& taps, const Vectorized<opmath_t> (&weights)[K * K], int64_t n,
                                     int64_t ch, int64_t y, int64_t x0, int64_t count) {
  using V = Vectorized<opmath_t>;
  const opmath_t* planes[LANES];
  for (int j = 0; j < LANES; ++j) {
    planes[j] = &views.image(n, ch + j, 0, 0);
  }
  V sums[LANES];
  window_sums<LANES, K>([&](int t) { return weights[t]; }, [&](int r, int c, int j) { return taps(planes[j], r, c); },
                        sums);
  for (int j = 0; j < LANES; ++j) {
    V warped = sums[j];
    if constexpr (!Taps::kAllValid) {
      const auto own = own_offsets<opmath_t>(y, x0, views.width, views.image.stride_y, views.image.stride_x);
      warped = V::blendv(gather_lanes(planes[j], own), sums[j], windows.valid);
    }
    store_lanes(warped, &views.output(n, ch + j, y, x0), views.output.stride_x, count);
  }
}

template <int K, typename scalar_t>
void forward_rows(const AdaptiveWarpViews<scalar_t>& views, int64_t row_begin, int64_t row_end) {
  using opmath_t = at::opmath_type<scalar_t>;
  using V = Vectorized<opmath_t>;
  constexpr int kLanes = 4;  // channels summed together: independent chains of adds
  const int64_t channels = views.channels, height = views.height, width = views.width;
  const int64_t stride_y = views.image.stride_y, stride_x = views.image.stride_x;
  const auto limits = warp_limits<opmath_t>(height, width);
  const auto& kernel = views.kernel;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / height, y = row % height;
    for (int64_t x0 = 0; x0 < width; x0 += V::size()) {
      const int64_t count = std::min<int64_t>(V::size(), width - x0);
      const auto windows = pixel_windows<K>(views, limits, n, y, x0, count, stride_y, stride_x);
      V weights[K * K];
      for (int r = 0; r < K; ++r) {
        for (int c = 0; c < K; ++c) {
          const V coefficient = load_lanes<opmath_t>(&kernel(n, r * K + c, y, x0), kernel.stride_x, count);
          weights[r * K + c] = tap_weight<K>(coefficient, r, c, windows.frac_y, windows.frac_x);
        }
      }
      const auto runs = tap_runs<K>(windows, x0, count, height, width, stride_y, stride_x, true);
      prefetch_planes<true>(&views.output(n, 0, y, x0), channels, views.output.stride_c, views.output.stride_x);
      with_taps(windows, runs, stride_y, [&](const auto& taps) {
        int64_t ch = 0;
        for (; ch + kLanes <= channels; ch += kLanes) {
          warp_channels<kLanes>(views, windows, taps, weights, n, ch, y, x0, count);
        }
        switch (channels - ch) {
          case 3: warp_channels<3>(views, windows, taps, weights, n, ch, y, x0, count); break;
          case 2: warp_channels<2>(views, windows, taps, weights, n, ch, y, x0, count); break;
          case 1: warp_channels<1>(views, windows, taps, weights, n, ch, y, x0, count); break;
          default: break;
        }
      });
    }
  }
}

// The kernel and flow gradients of the lanes' pixels from their channel-summed tap products
// (window_tap_products), as adaptive_warp_kernel_flow_grad_pixel computes them: zero where a pixel
// is not warped; only those asked for (a view with data). Unrolled over the taps up to K = 4, with
// the products in registers (the tests of what is asked for branch the same way at every tap).
template <int K, bool kAllValid, typename scalar_t, typename opmath_t>
C10_ALWAYS_INLINE void store_kernel_flow_grads(const AdaptiveWarpViews<scalar_t>& views,
                                               const LaneWindows<K, opmath_t>& windows,
                                               const Vectorized<opmath_t> (&products)[K * K], int64_t n, int64_t y,
                                               int64_t x0, int64_t count) {
  using V = Vectorized<opmath_t>;
  const bool want_flow = views.grad_flow.data != nullptr, want_kernel = views.grad_kernel.data != nullptr;
  const auto only_valid = [&](const V& value) { return kAllValid ? value : V::blendv(V(0), value, windows.valid); };
  V grad_flow_x(0), grad_flow_y(0);
  const auto tap = [&](int r, int c) {
    const V& product = products[r * K + c];
    if (want_kernel) {
      const V grad = tap_kernel_grad<K>(product, r, c, windows.frac_y, windows.frac_x);
      store_lanes(only_valid(grad), &views.grad_kernel(n, r * K + c, y, x0), views.grad_kernel.stride_x, count);
    }
    if (want_flow) {
      // The coefficients are read only for the flow gradient.
      const V coefficient = load_lanes<opmath_t>(&views.kernel(n, r * K + c, y, x0), views.kernel.stride_x, count);
      add_tap_flow_grads<K>(coefficient, product, r, c, windows.frac_y, windows.frac_x, grad_flow_x, grad_flow_y);
    }
  };
  if constexpr (K <= 4) {
MEMC_UNROLL_TAPS
    for (int r = 0; r < K; ++r) {
MEMC_UNROLL_TAPS
      for (int c = 0; c < K; ++c) {
        tap(r, c);
      }
    }
  } else {
    for (int r = 0; r < K; ++r) {
      for (int c = 0; c < K; ++c) {
        tap(r, c);
      }
    }
  }
  if (want_flow) {
    store_lanes(only_valid(grad_flow_x), &views.grad_flow(n, 0, y, x0), views.grad_flow.stride_x, count);
    store_lanes(only_valid(grad_flow_y), &views.grad_flow(n, 1, y, x0), views.grad_flow.stride_x, count);
  }
}

// The kernel and flow gradients of the pixels x0 .. x0 + count - 1 of row (n, y), whose windows
// `windows` and `runs` were located in the image's plane.
template <int K, typename scalar_t, typename opmath_t>
C10_ALWAYS_INLINE void kernel_flow_grad_vector(const AdaptiveWarpViews<scalar_t>& views,
                                               const LaneWindows<K, opmath_t>& windows, const TapRuns<opmath_t>& runs,
                                               int64_t n, int64_t y, int64_t x0, int64_t count) {
  using V = Vectorized<opmath_t>;
  const auto& grad_output = views.grad_output;
  const int64_t channels = views.channels;
  const opmath_t* image = &views.image(n, 0, 0, 0);
  prefetch_planes(&grad_output(n, 0, y, x0), channels, grad_output.stride_c, grad_output.stride_x);
  if (views.grad_kernel.data != nullptr) {
    prefetch_planes<true>(&views.grad_kernel(n, 0, y, x0), K * K, views.grad_kernel.stride_c,
                          views.grad_kernel.stride_x);
  }
  if (views.grad_flow.data != nullptr) {
    prefetch_planes<true>(&views.grad_flow(n, 0, y, x0), 2, views.grad_flow.stride_c, views.grad_flow.stride_x);
  }
  // Each sampler gets its own copy of the products and the stores, so that the K*K products
  // stay in registers from the channel sums to the stores.
  with_taps(windows, runs, views.image.stride_y, [&](const auto& taps) {
    V products[K * K];
    window_tap_products<K>(
        channels,
        [&](int64_t ch) { return load_lanes<opmath_t>(&grad_output(n, ch, y, x0), grad_output.stride_x, count); },
        [&](int r, int c, int64_t ch) { return taps(image + ch * views.image.stride_c, r, c); }, products);
    store_kernel_flow_grads<K, std::decay_t<decltype(taps)>::kAllValid>(
        views, windows, products, n, y, x0, count);
  });
}

// The same, locating the windows in the image's plane.
template <int K, typename scalar_t>
C10_ALWAYS_INLINE void kernel_flow_grad_vector(const AdaptiveWarpViews<scalar_t>& views,
                                               const WarpLimits<at::opmath_type<scalar_t>>& limits, int64_t n,
                                               int64_t y, int64_t x0, int64_t count) {
  const int64_t stride_y = views.image.stride_y, stride_x = views.image.stride_x;
  const auto windows = pixel_windows<K>(views, limits, n, y, x0, count, stride_y, stride_x);
  const auto runs = tap_runs<K>(windows, x0, count, views.height, views.width, stride_y, stride_x, true);
  kernel_flow_grad_vector<K>(views, windows, runs, n, y, x0, count);
}

template <int K, typename scalar_t>
void kernel_flow_grad_rows(const AdaptiveWarpViews<scalar_t>& views, int64_t row_begin, int64_t row_end) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t kLanes = Vectorized<opmath_t>::size();
  const auto limits = warp_limits<opmath_t>(views.height, views.width);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / views.height, y = row % views.height;
    for (int64_t x0 = 0; x0 < views.width; x0 += kLanes) {
      const int64_t count = std::min<int64_t>(kLanes, views.width - x0);
      kernel_flow_grad_vector<K>(views, limits, n, y, x0, count);
    }
  }
}

// Pixels whose windows are located (vectorised) before their scatters (scalar: lanes may add to
// the same target) run, and how many of each kind of value that keeps per pixel.
constexpr int64_t kChunk = 64;

// The most runs of lanes with one window offset (see image_grad_row) a vector is scattered in with
// vector adds; a vector with more is scattered pixel by pixel.
constexpr int kMaxLaneRuns = 3;

// Lane i of the result is lane (i - shift) mod size of `value`, for the shift whose lane indices
// (i - shift) mod size `source` holds: a vector of pixels moved `shift` columns right, its last
// lanes wrapped round to the front.
C10_ALWAYS_INLINE Vectorized<float> rotate_lanes(const Vectorized<float>& value, const Vectorized<int32_t>& source) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_permutexvar_ps(source, value);
#elif defined(CPU_CAPABILITY_AVX2)
  return _mm256_permutevar8x32_ps(value, source);
#else
  static_assert(Vectorized<float>::size() == Vectorized<int32_t>::size(), "one index per lane");
  float lanes[Vectorized<float>::size()], rotated[Vectorized<float>::size()];
  int32_t indices[Vectorized<int32_t>::size()];
  value.store(lanes);
  source.store(indices);
  for (int i = 0; i < Vectorized<float>::size(); ++i) {
    rotated[i] = lanes[indices[i]];
  }
  return Vectorized<float>::loadu(rotated);
#endif
}

// The lane rotations and masks with which a run of lanes adds tap column c of a window row in
// registers (see scatter_run): the lanes' adds rotated c lanes right; the lanes of the row's first
// vector they go to (lanes >= c) and those of the vector after it (lanes < c).
template <int K>
struct TapColumnLanes {
  using V = Vectorized<float>;
  using I = Vectorized<int32_t>;
  static_assert(K - 1 <= V::size(), "a window row spans at most two vectors");
  I source[K];
  V first[K], second[K];
  TapColumnLanes() {
    const I lanes = I::arange(0, 1);
    const V float_lanes = V::arange(0.0f, 1.0f);
    for (int c = 0; c < K; ++c) {
      source[c] = (lanes - I(c)) & I(V::size() - 1);
      first[c] = float_lanes >= V(static_cast<float>(c));
      second[c] = float_lanes < V(static_cast<float>(c));
    }
  }
};

// The second vectors of the window rows of the last whole run scattered, kept in registers rather
// than stored: where the next vector's run is whole too and starts V::size() columns further (the
// usual case with smooth flow), they are its rows' first vectors. `base` is their run's offset, or
// -1 when none is kept.
template <int K>
struct CarriedRows {
  Vectorized<float> rows[K];
  int64_t base = -1;

  // Stores the kept vectors, if any.
  C10_ALWAYS_INLINE void store(float* target, int64_t stride_y) {
    if (base >= 0) {
      for (int r = 0; r < K; ++r) {
        rows[r].store(target + base + r * stride_y + Vectorized<float>::size());
      }
      base = -1;
    }
  }
};

// Adds a run of lanes' taps to the K window rows it reaches (see image_grad_row): window row r
// spans the V::size() + K - 1 elements from target + base + r * stride_y, held in two vectors (the
// second whole where `whole_second` says the row has room, else its first K - 1 lanes), which get
// their adds in registers and are stored once. Element p of a row gets, as in the element-by-element
// order, lane p - c's add of tap (r, c) for c = K - 1 down to 0, in lanes `run` only. (Adding
// through memory instead made each add wait on the store before it, which partly overlaps its
// load: a failed store-to-load forward at every tap.) A whole run's second vectors are kept in
// `carried` when they are whole, and its first vectors taken from there when they are the kept ones.
template <int K>
C10_ALWAYS_INLINE void scatter_run(float* target, int64_t base, int64_t stride_y, bool whole_second,
                                   const float (*weights)[kChunk], int64_t i0, const Vectorized<float>& grad,
                                   const Vectorized<float>& run, bool whole_run, const TapColumnLanes<K>& lanes,
                                   CarriedRows<K>& carried) {
  using V = Vectorized<float>;
  const bool from_carried = whole_run && carried.base >= 0 && carried.base + V::size() == base;
  if (!from_carried) {
    carried.store(target, stride_y);
  }
  const bool keep = whole_run && whole_second;
  V first[K], second[K];
  for (int c = 0; c < K; ++c) {
    if (whole_run) {
      first[c] = lanes.first[c];
      second[c] = lanes.second[c];
    } else {
      const V rotated = rotate_lanes(run, lanes.source[c]);
      first[c] = rotated & lanes.first[c];
      second[c] = rotated & lanes.second[c];
    }
  }
  for (int r = 0; r < K; ++r) {
    float* row = target + base + r * stride_y;
    V low = from_carried ? carried.rows[r] : V::loadu(row);
    V high = whole_second ? V::loadu(row + V::size()) : V::loadu(row + V::size(), K - 1);
    for (int c = K - 1; c >= 0; --c) {
      const V add = rotate_lanes(V::loadu(&weights[r * K + c][i0]) * grad, lanes.source[c]);
      low = V::blendv(low, low + add, first[c]);
      if (c > 0) {
        high = V::blendv(high, high + add, second[c]);
      }
    }
    low.store(row);
    if (keep) {
      carried.rows[r] = high;
    } else if (whole_second) {
      high.store(row + V::size());
    } else {
      high.store(row + V::size(), K - 1);
    }
  }
  carried.base = keep ? base : -1;
}

template <int K, bool kKernelFlowGrads, typename scalar_t>
void image_grad_row(const AdaptiveWarpViews<scalar_t>& views, const Strided4d<at::opmath_type<scalar_t>>& grad_image,
                    int64_t row_origin, int64_t n, int64_t channel_begin, int64_t channel_end, int64_t y) {
  using opmath_t = at::opmath_type<scalar_t>;
  using index_t = at::vec::int_same_size_t<opmath_t>;
  using V = Vectorized<opmath_t>;
  using I = Vectorized<index_t>;
  static_assert(kChunk % V::size() == 0, "a chunk holds whole vectors");
  constexpr int64_t kVectors = kChunk / V::size();
  const int64_t height = views.height, width = views.width;
  const int64_t stride_y = grad_image.stride_y, stride_x = grad_image.stride_x;
  const auto limits = warp_limits<opmath_t>(height, width);
  const auto& kernel = views.kernel;
  const auto& grad_output = views.grad_output;
  // Offsets are taken in the plane (rows from 0) and moved to the target's (rows from row_origin).
  const int64_t origin = row_origin * stride_y;
  opmath_t valid[kChunk];
  opmath_t weights[K * K][kChunk];
  index_t row_offsets[K][kChunk], col_offsets[K][kChunk];
  // Where a vector's taps are loadable (see tap_runs), its lanes fall into runs of consecutive
  // lanes with the same window offset (the same row and column step): run k covers the lanes of
  // run_mask[v][k] and adds at run_base[v][k] + r * stride_y + c + lane for tap (r, c). run_count
  // is 0 for a vector scattered pixel by pixel.
  int run_count[kVectors];
  int64_t run_base[kVectors][kMaxLaneRuns];
  V run_mask[kVectors][kMaxLaneRuns];
  // Whether the two vectors from run_base[v][k] + r * stride_y lie in the row (see scatter_run).
  bool run_room[kVectors][kMaxLaneRuns];
  // float (float32 and the half types) adds its runs in registers.
  constexpr bool kRegisterRuns = std::is_same_v<opmath_t, float>;
  using ColumnLanes = std::conditional_t<kRegisterRuns, TapColumnLanes<K>, int>;
  const ColumnLanes column_lanes{};
  for (int64_t x0 = 0; x0 < width; x0 += kChunk) {
    const int64_t chunk = std::min(kChunk, width - x0);
    for (int64_t i0 = 0; i0 < chunk; i0 += V::size()) {
      const int64_t x = x0 + i0, count = std::min<int64_t>(V::size(), chunk - i0), v = i0 / V::size();
      const auto windows = pixel_windows<K>(views, limits, n, y, x, count, stride_y, stride_x);
      const auto runs = tap_runs<K>(windows, x, count, height, width, stride_y, stride_x, true);
      if constexpr (kKernelFlowGrads) {
        // The pixels' kernel and flow gradients, while their flow, kernel and output gradient are
        // in cache: with their windows where the image has the gradient's strides (else the
        // image, a copy in opmath_t or a slice, gets its own).
        if (views.image.stride_y == stride_y && views.image.stride_x == stride_x) {
          kernel_flow_grad_vector<K>(views, windows, runs, n, y, x, count);
        } else {
          kernel_flow_grad_vector<K>(views, limits, n, y, x, count);
        }
      }
      run_count[v] = 0;
      if (runs.loadable) {
        // Each lane's step, 0 to 3 (row step * 2 + column step), and the runs of equal steps.
        opmath_t steps[V::size()];
        (V::blendv(V(0), V(2), runs.row_up) + V::blendv(V(0), V(1), runs.col_up)).store(steps);
        int begin = 0, count_runs = 0;
        for (int lane = 1; lane <= V::size() && count_runs <= kMaxLaneRuns; ++lane) {
          if (lane == V::size() || steps[lane] != steps[begin]) {
            if (count_runs < kMaxLaneRuns) {
              const int step = static_cast<int>(steps[begin]);
              const V lanes = V::arange(opmath_t(0), opmath_t(1));
              run_base[v][count_runs] = runs.base - origin + (step / 2) * stride_y + step % 2;
              run_mask[v][count_runs] = (lanes >= V(static_cast<opmath_t>(begin))) & (lanes < V(static_cast<opmath_t>(lane)));
              // stride_x is 1 (see tap_runs), so the run's first column is its offset modulo stride_y.
              run_room[v][count_runs] = (run_base[v][count_runs] + origin) % stride_y + 2 * V::size() <= width;
            }
            ++count_runs;
            begin = lane;
          }
        }
        run_count[v] = count_runs <= kMaxLaneRuns ? count_runs : 0;
      }
      V::blendv(V(0), V(1), windows.valid).store(valid + i0);
      for (int r = 0; r < K; ++r) {
        (windows.row_offset[r] - I(static_cast<index_t>(origin))).store(row_offsets[r] + i0);
        windows.col_offset[r].store(col_offsets[r] + i0);
        for (int c = 0; c < K; ++c) {
          const V coefficient = load_lanes<opmath_t>(&kernel(n, r * K + c, y, x), kernel.stride_x, count);
          tap_weight<K>(coefficient, r, c, windows.frac_y, windows.frac_x).store(weights[r * K + c] + i0);
        }
      }
    }
    for (int64_t ch = channel_begin; ch < channel_end; ++ch) {
      opmath_t* target = &grad_image(n, ch, 0, 0);
      opmath_t grads[kChunk];
      // Second window rows kept in registers by the last run (see CarriedRows), stored before any
      // other add and at the end of the chunk.
      std::conditional_t<kRegisterRuns, CarriedRows<K>, int> carried{};
      for (int64_t i0 = 0; i0 < chunk; i0 += V::size()) {
        prefetch_planes(&grad_output(n, ch, y, x0 + i0), 1, 0, grad_output.stride_x);
      }
      for (int64_t i0 = 0; i0 < chunk; i0 += V::size()) {
        load_lanes<opmath_t>(&grad_output(n, ch, y, x0 + i0), grad_output.stride_x,
                             std::min<int64_t>(V::size(), chunk - i0))
            .store(grads + i0);
      }
      for (int64_t i0 = 0; i0 < chunk; i0 += V::size()) {
        const int64_t v = i0 / V::size();
        if (run_count[v] > 0) {
          // Within a run, target (row, p) gets lane p - c's add of tap (r, c), so adding the taps
          // of each row in decreasing c adds the run's lanes in increasing x; the runs go in lane
          // order: the order of the pixel-by-pixel loop below. Each row's adds wait on the one
          // before (they overlap), so the rows are interleaved. A run that is not the whole
          // vector keeps the other lanes' values (which lie in the frame, see tap_runs).
          const V grad = V::loadu(grads + i0);
          if constexpr (kRegisterRuns) {
            for (int k = 0; k < run_count[v]; ++k) {
              scatter_run<K>(target, run_base[v][k], stride_y, run_room[v][k], weights, i0, grad, run_mask[v][k],
                             run_count[v] == 1, column_lanes, carried);
            }
            continue;
          }
          for (int k = 0; k < run_count[v]; ++k) {
            const bool whole = run_count[v] == 1;
            for (int c = K - 1; c >= 0; --c) {
              for (int r = 0; r < K; ++r) {
                opmath_t* tap = target + run_base[v][k] + r * stride_y + c;
                const V old = V::loadu(tap);
                const V sum = old + V::loadu(&weights[r * K + c][i0]) * grad;
                (whole ? sum : V::blendv(old, sum, run_mask[v][k])).store(tap);
              }
            }
          }
          continue;
        }
        if constexpr (kRegisterRuns) {
          carried.store(target, stride_y);
        }
        for (int64_t i = i0; i < std::min(chunk, i0 + V::size()); ++i) {
          const opmath_t grad = grads[i];
          if (valid[i] == opmath_t(0)) {
            grad_image(n, ch, y - row_origin, x0 + i) += grad;
            continue;
          }
          index_t rows[K], cols[K];
          for (int r = 0; r < K; ++r) {
            rows[r] = row_offsets[r][i];
            cols[r] = col_offsets[r][i];
          }
          scatter_window<K>(rows, cols, &weights[0][i], kChunk, grad, target, 1, 1, PlainAdd{});
        }
      }
      if constexpr (kRegisterRuns) {
        carried.store(target, stride_y);
      }
    }
  }
}

}  // namespace

template <typename scalar_t>
void adaptive_warp_forward_rows(const AdaptiveWarpViews<scalar_t>& views, int64_t row_begin, int64_t row_end) {
  dispatch_kernel_size(views.kernel_size, [&](auto kernel_size_constant) {
    forward_rows<decltype(kernel_size_constant)::value>(views, row_begin, row_end);
  });
}

template <typename scalar_t>
void adaptive_warp_kernel_flow_grad_rows(const AdaptiveWarpViews<scalar_t>& views, int64_t row_begin,
                                         int64_t row_end) {
  dispatch_kernel_size(views.kernel_size, [&](auto kernel_size_constant) {
    kernel_flow_grad_rows<decltype(kernel_size_constant)::value>(views, row_begin, row_end);
  });
}

template <typename scalar_t>
void adaptive_warp_image_grad_row(const AdaptiveWarpViews<scalar_t>& views,
                                  const Strided4d<at::opmath_type<scalar_t>>& grad_image, int64_t row_origin,
                                  int64_t n, int64_t channel_begin, int64_t channel_end, int64_t y,
                                  bool kernel_flow_grads) {
  dispatch_kernel_size(views.kernel_size, [&](auto kernel_size_constant) {
    constexpr int K = decltype(kernel_size_constant)::value;
    if (kernel_flow_grads) {
      image_grad_row<K, true>(views, grad_image, row_origin, n, channel_begin, channel_end, y);
    } else {
      image_grad_row<K, false>(views, grad_image, row_origin, n, channel_begin, channel_end, y);
    }
  });
}

#define MEMC_INSTANTIATE(scalar_t)                                                                               \
  template void adaptive_warp_forward_rows<scalar_t>(const AdaptiveWarpViews<scalar_t>&, int64_t, int64_t);     \
  template void adaptive_warp_kernel_flow_grad_rows<scalar_t>(const AdaptiveWarpViews<scalar_t>&, int64_t,      \
                                                              int64_t);                                         \
  template void adaptive_warp_image_grad_row<scalar_t>(const AdaptiveWarpViews<scalar_t>&,                      \
                                                       const Strided4d<at::opmath_type<scalar_t>>&, int64_t,   \
                                                       int64_t, int64_t, int64_t, int64_t, bool);
MEMC_INSTANTIATE(float)
MEMC_INSTANTIATE(double)
MEMC_INSTANTIATE(c10::Half)
MEMC_INSTANTIATE(c10::BFloat16)
#undef MEMC_INSTANTIATE

}  // namespace CPU_CAPABILITY
}  // namespace memc
