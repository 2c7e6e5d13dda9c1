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
#include "cpu/vectorized/warp_lanes.h"
#include "memc/adaptive_warp.h"

namespace memc {
namespace CPU_CAPABILITY {
namespace {

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

template <int K, typename scalar_t>
void forward_rows(const AdaptiveWarpViews<scalar_t>& views, int64_t row_begin, int64_t row_end) {
  using opmath_t = at::opmath_type<scalar_t>;
  using V = Vectorized<opmath_t>;
  const int64_t channels = views.channels, height = views.height, width = views.width;
  const int64_t stride_y = views.image.stride_y, stride_x = views.image.stride_x;
  const auto limits = warp_limits<opmath_t>(height, width);
  const auto& kernel = views.kernel;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / height, y = row % height;
    for (int64_t x0 = 0; x0 < width; x0 += V::size()) {
      const int64_t count = std::min<int64_t>(V::size(), width - x0);
      const auto windows = pixel_windows<K>(views, limits, n, y, x0, count, stride_y, stride_x);
      // Unrolled: straight-line loads of the K*K coefficient rows rather than a loop around them.
      V weights[K * K];
MEMC_UNROLL_TAPS
      for (int r = 0; r < K; ++r) {
MEMC_UNROLL_TAPS
        for (int c = 0; c < K; ++c) {
          const V coefficient = load_lanes<opmath_t>(&kernel(n, r * K + c, y, x0), kernel.stride_x, count);
          weights[r * K + c] = tap_weight<K>(coefficient, r, c, windows.frac_y, windows.frac_x);
        }
      }
      const auto runs = tap_runs<K>(windows, x0, count, height, width, stride_y, stride_x, true);
      prefetch_planes<true>(&views.output(n, 0, y, x0), channels, views.output.stride_c, views.output.stride_x);
      with_taps(windows, runs, stride_y, [&](const auto& taps) {
        for_channel_groups(channels, [&](auto lanes, int64_t ch) {
          constexpr int LANES = decltype(lanes)::value;
          warp_channels<LANES>(views.image, views.output, windows, taps, width, n, ch, y, x0, count,
                               [&](const auto& sample, V (&sums)[LANES]) {
                                 window_sums<LANES, K>([&](int t) { return weights[t]; }, sample, sums);
                               });
        });
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
              run_mask[v][count_runs] =
                  (lanes >= V(static_cast<opmath_t>(begin))) & (lanes < V(static_cast<opmath_t>(lane)));
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
