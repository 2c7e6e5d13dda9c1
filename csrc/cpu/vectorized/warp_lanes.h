// What the vectorised CPU warps share (adaptive_warp, bicubic_warp; csrc/cpu/vectorized/): each
// lane of an at::vec::Vectorized is a pixel of a row, whose window (memc/adaptive_warp.h's
// locate_window, K x K) is located in lanes; the taps of a vector of pixels are gathered, or
// loaded where the lanes' windows allow; the sums are stored where the lanes are valid and the
// pixel itself elsewhere. The formulas themselves come from memc/, called with vectors.
//
// Included only by the files under csrc/cpu/vectorized/, which are compiled once per CPU
// capability (see cpu/capability.h): everything here is in memc::CPU_CAPABILITY. It is also in an
// unnamed namespace, as it was when it lived in adaptive_warp_kernels.cpp alone: with internal
// linkage each translation unit owns its copy, and GCC inlines these hot helpers (window
// constructors, channel-group lambdas) into the row loops as it did before; with external
// linkage it called some of them out of line.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>

#include "memc/adaptive_warp.h"
#include "memc/strided.h"

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

  C10_ALWAYS_INLINE LaneWindows(const V& flow_y, const V& flow_x, const WarpLimits<opmath_t>& limits, int64_t height,
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

// The greatest lane of `value` (kMax) or the least, for lanes that are not NaN: what
// at::vec::vec_reduce_all gives with maximum or minimum, but inlined (g++ calls that out of line,
// four calls in the setup of every vector of pixels).
template <bool kMax, typename opmath_t>
C10_ALWAYS_INLINE opmath_t extreme_lane(const Vectorized<opmath_t>& value) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<opmath_t, float>) {
    return kMax ? _mm512_reduce_max_ps(value) : _mm512_reduce_min_ps(value);
  } else if constexpr (std::is_same_v<opmath_t, double>) {
    return kMax ? _mm512_reduce_max_pd(value) : _mm512_reduce_min_pd(value);
  }
#endif
  using V = Vectorized<opmath_t>;
  if constexpr (kMax) {
    return at::vec::vec_reduce_all<opmath_t>([](const V& a, const V& b) { return at::vec::maximum(a, b); }, value);
  } else {
    return at::vec::vec_reduce_all<opmath_t>([](const V& a, const V& b) { return at::vec::minimum(a, b); }, value);
  }
}

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
  // Column of tap 0 minus the lane's own x (whole numbers, exact in opmath_t), and row of tap 0.
  const V shift_x = windows.floor_x - V::arange(static_cast<opmath_t>(x0), opmath_t(1));
  const opmath_t low_x = extreme_lane<false>(shift_x);
  const opmath_t high_x = extreme_lane<true>(shift_x);
  const opmath_t low_y = extreme_lane<false>(windows.floor_y);
  const opmath_t high_y = extreme_lane<true>(windows.floor_y);
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

// Output channels ch .. ch + LANES - 1 of the lanes' pixels, read from planes of `image` (in
// opmath_t) with the sampler `taps` (GatheredTaps or LoadedTaps): where a lane is valid, the window
// sums that sums_of(sample, sums) computes from sample(r, c, j), channel j's tap (r, c); elsewhere
// the pixel itself. Written to `output` rounded to scalar_t.
template <int LANES, int K, typename scalar_t, typename opmath_t, typename Taps, typename Sums>
C10_ALWAYS_INLINE void warp_channels(const Strided4d<const opmath_t>& image, const Strided4d<scalar_t>& output,
                                     const LaneWindows<K, opmath_t>& windows, const Taps& taps, int64_t width,
                                     int64_t n, int64_t ch, int64_t y, int64_t x0, int64_t count, const Sums& sums_of) {
  using V = Vectorized<opmath_t>;
  const opmath_t* planes[LANES];
  for (int j = 0; j < LANES; ++j) {
    planes[j] = &image(n, ch + j, 0, 0);
  }
  V sums[LANES];
  sums_of([&](int r, int c, int j) { return taps(planes[j], r, c); }, sums);
  for (int j = 0; j < LANES; ++j) {
    V warped = sums[j];
    if constexpr (!Taps::kAllValid) {
      const auto own = own_offsets<opmath_t>(y, x0, width, image.stride_y, image.stride_x);
      warped = V::blendv(gather_lanes(planes[j], own), sums[j], windows.valid);
    }
    store_lanes(warped, &output(n, ch + j, y, x0), output.stride_x, count);
  }
}

// Calls warp(lanes, ch) for groups of channels ch .. ch + lanes - 1 that cover [0, channels),
// `lanes` a std::integral_constant: groups of 4 (summed together, independent chains of adds),
// then one of the 1 to 3 channels left.
template <typename F>
C10_ALWAYS_INLINE void for_channel_groups(int64_t channels, const F& warp) {
  constexpr int kGroup = 4;
  int64_t ch = 0;
  for (; ch + kGroup <= channels; ch += kGroup) {
    warp(std::integral_constant<int, kGroup>{}, ch);
  }
  switch (channels - ch) {
    case 3: warp(std::integral_constant<int, 3>{}, ch); break;
    case 2: warp(std::integral_constant<int, 2>{}, ch); break;
    case 1: warp(std::integral_constant<int, 1>{}, ch); break;
    default: break;
  }
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace memc
