// CPU entry points of the adaptive warping layer: input checks, allocations and the parallel
// loops over rows; the rows themselves are computed by the vectorised kernels of the CPU's
// capability (cpu/adaptive_warp_kernels.h, csrc/cpu/vectorized/adaptive_warp_kernels.cpp).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <array>
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

#include "common.h"
#include "cpu/adaptive_warp_kernels.h"
#include "cpu/opmath_image.h"
#include "cpu/parallel.h"

namespace memc {
namespace {

// The views every pass reads (the image is set by the passes that read it).
template <typename scalar_t>
AdaptiveWarpViews<scalar_t> views_of(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& kernel,
                                     int kernel_size) {
  AdaptiveWarpViews<scalar_t> views{};
  views.flow = view4d<const scalar_t>(flow);
  views.kernel = view4d<const scalar_t>(kernel);
  views.channels = image.size(1);
  views.height = image.size(2);
  views.width = image.size(3);
  views.kernel_size = kernel_size;
  return views;
}

// How the image gradient's scatter is split into tasks, each one image n, a group of its channels
// and a band of its rows: as many tasks as threads where the batch is smaller than that. Channel
// groups need no private copy but repeat the per-pixel work and, with few channels, split them
// unevenly (3 channels on 2 threads: 1 and 2); so a few channels are split into row bands, whose
// adds go into private copies (see ImageGradBand).
struct ImageGradSplit {
  int64_t groups, bands;
};

ImageGradSplit image_grad_split(int64_t batch, int64_t channels, int64_t height) {
  const int64_t threads = at::get_num_threads();
  if (batch >= threads) {
    return {1, 1};
  }
  const int64_t per_image = (threads + batch - 1) / batch;
  if (channels >= 4 * per_image) {
    return {per_image, 1};
  }
  return {1, std::min(per_image, height)};
}

// A band of source rows [first, end) and where its adds go: band 0 adds into the gradient itself,
// each later band into a private copy (zeroed by its tasks) of only the rows its pixels can reach (row_origin on),
// added into the gradient in band order afterwards, so the sums depend only on the number of bands.
struct ImageGradBand {
  int64_t first, end;
  int64_t row_origin;
  at::Tensor target;
};

// The rows that the pixels of rows [first, end) can add to: their own rows (copy-through) and the
// windows of targets y + f_y, for the f_y of warped pixels (|f_y| < H/2; NaN is not). The kernels
// take floor(y + f_y) of the rounded sum, which can be one more than y + floor(f_y) (float32:
// 40 + -1e-6 rounds to 40), never less: one row more below.
std::pair<int64_t, int64_t> reachable_rows(const at::Tensor& flow_y, int64_t first, int64_t end, int64_t height,
                                           int kernel_size) {
  const at::Tensor band = flow_y.narrow(1, first, end - first).to(at::kDouble);
  const at::Tensor warped = band.abs() < 0.5 * static_cast<double>(height);
  int64_t low = first, high = end - 1;
  if (warped.any().item<bool>()) {
    const double lowest = at::where(warped, band, std::numeric_limits<double>::infinity()).min().item<double>();
    const double highest = at::where(warped, band, -std::numeric_limits<double>::infinity()).max().item<double>();
    low = std::min<int64_t>(low, first + static_cast<int64_t>(std::floor(lowest)) + 1 - kernel_size / 2);
    high = std::max<int64_t>(high, end - 1 + static_cast<int64_t>(std::floor(highest)) + 1 + kernel_size / 2);
  }
  return {std::max<int64_t>(low, 0), std::min<int64_t>(high, height - 1) + 1};
}

at::Tensor adaptive_warp_cpu(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& kernel) {
  const int kernel_size = check_adaptive_warp_inputs(image, flow, kernel);
  at::Tensor output = at::empty_like(image);
  if (output.numel() == 0) {
    return output;  // no pixels, or no channels (whose planes have no data to point to)
  }
  const at::Tensor image_opmath = image_for_kernels("adaptive_warp", image);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "adaptive_warp_cpu", [&] {
    auto views = views_of<scalar_t>(image, flow, kernel, kernel_size);
    views.image = view4d<const at::opmath_type<scalar_t>>(image_opmath);
    views.output = view4d<scalar_t>(output);
    const auto forward_rows = MEMC_CPU_KERNEL(adaptive_warp_forward_rows<scalar_t>);
    parallel_rows_shared(image.size(0), image.size(2), image.size(3),
                         [&](int64_t begin, int64_t end) { forward_rows(views, begin, end); });
  });
  return output;
}

// Returns (grad_image, grad_flow, grad_kernel); output_mask says which are wanted, and the others
// are returned undefined (None in Python), as ATen's backward ops do, and not computed. The image
// gradient is scattered, the costly part, and in MEMC-Net training the frames need none; the flow
// and kernel gradients share their pass (and its gathers), which writes only those asked for.
std::tuple<at::Tensor, at::Tensor, at::Tensor> adaptive_warp_backward_cpu(const at::Tensor& grad_output,
                                                                          const at::Tensor& image,
                                                                          const at::Tensor& flow,
                                                                          const at::Tensor& kernel,
                                                                          std::array<bool, 3> output_mask) {
  const int kernel_size = check_adaptive_warp_inputs(image, flow, kernel);
  check_adaptive_warp_grad_output(grad_output, image);
  const bool want_image = output_mask[0], want_flow = output_mask[1], want_kernel = output_mask[2];
  const int64_t batch = image.size(0), channels = image.size(1), height = image.size(2), width = image.size(3);
  const auto opmath_dtype = at::toOpMathType(image.scalar_type());
  at::Tensor grad_flow = want_flow ? at::empty_like(flow) : at::Tensor();
  at::Tensor grad_kernel = want_kernel ? at::empty_like(kernel) : at::Tensor();
  at::Tensor grad_image;
  if (batch * height * width == 0 || channels == 0) {
    // Nothing to gather: the outputs do not depend on the flow and kernel.
    if (want_flow) {
      grad_flow.zero_();
    }
    if (want_kernel) {
      grad_kernel.zero_();
    }
    return {want_image ? at::zeros_like(image) : at::Tensor(), grad_flow, grad_kernel};
  }
  const at::Tensor image_opmath = want_flow || want_kernel ? image_for_kernels("adaptive_warp", image) : image;
  // Image gradients are scattered: laid out like the image (the memory format ATen's ops give),
  // in opmath_t (half types accumulate in float32, rounded once), by tasks over images, channel
  // groups and row bands (image_grad_split), each visiting its rows in order.
  const auto split = want_image ? image_grad_split(batch, channels, height) : ImageGradSplit{1, 1};
  // Where every row is scattered by one task (no channel groups), that task also computes the
  // row's flow and kernel gradients: the passes share one read of the flow, kernel and output
  // gradient, and the windows.
  const bool fused = want_image && (want_flow || want_kernel) && split.groups == 1 && split.bands == 1;
  std::vector<ImageGradBand> bands;
  if (want_image) {
    const auto options = image.options().dtype(opmath_dtype).memory_format(image.suggest_memory_format());
    for (int64_t band = 0; band < split.bands; ++band) {
      const int64_t first = band * height / split.bands, end = (band + 1) * height / split.bands;
      if (band == 0) {
        bands.push_back({first, end, 0, at::empty(image.sizes(), options)});
        continue;
      }
      const auto [low, high] = reachable_rows(flow.select(1, 1), first, end, height, kernel_size);
      bands.push_back({first, end, low, at::empty({batch, channels, high - low, width}, options)});
    }
    TORCH_CHECK(opmath_dtype == at::kDouble || plane_offsets_fit<int32_t>(bands[0].target),
                "adaptive_warp_backward: on the CPU, an image plane of ", image.scalar_type(),
                " must have fewer than 2^31 elements; got ", height, " x ", width);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "adaptive_warp_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    // The image is read only for the flow and kernel gradients; the scatter reads no image.
    auto views = views_of<scalar_t>(image, flow, kernel, kernel_size);
    views.grad_output = view4d<const scalar_t>(grad_output);
    if (want_flow || want_kernel) {
      // A gradient not asked for keeps a null view, which the pass skips.
      views.image = view4d<const opmath_t>(image_opmath);
      if (want_flow) {
        views.grad_flow = view4d<scalar_t>(grad_flow);
      }
      if (want_kernel) {
        views.grad_kernel = view4d<scalar_t>(grad_kernel);
      }
      if (!fused) {
        const auto kernel_flow_grad_rows = MEMC_CPU_KERNEL(adaptive_warp_kernel_flow_grad_rows<scalar_t>);
        parallel_rows_shared(batch, height, width,
                             [&](int64_t begin, int64_t end) { kernel_flow_grad_rows(views, begin, end); });
      }
    }
    if (want_image) {
      const auto image_grad_row = MEMC_CPU_KERNEL(adaptive_warp_image_grad_row<scalar_t>);
      std::vector<Strided4d<opmath_t>> targets;
      for (const ImageGradBand& band : bands) {
        targets.push_back(view4d<opmath_t>(band.target));
      }
      const int64_t tasks = batch * split.groups * split.bands;
      at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / (split.groups * split.bands), group = task / split.bands % split.groups;
          const ImageGradBand& band = bands[task % split.bands];
          const int64_t channel_begin = group * channels / split.groups;
          const int64_t channel_end = (group + 1) * channels / split.groups;
          // The task alone adds to these channels of image n in its band's target: it zeroes them
          // itself, just before its adds (in cache then, and with no parallel pass of its own).
          band.target.select(0, n).narrow(0, channel_begin, channel_end - channel_begin).zero_();
          for (int64_t y = band.first; y < band.end; ++y) {
            image_grad_row(views, targets[task % split.bands], band.row_origin, n, channel_begin, channel_end, y,
                           fused);
          }
        }
      });
    }
  });
  if (want_image) {
    grad_image = bands[0].target;
    for (size_t band = 1; band < bands.size(); ++band) {
      grad_image.narrow(2, bands[band].row_origin, bands[band].target.size(2)).add_(bands[band].target);
    }
    if (grad_image.scalar_type() != image.scalar_type()) {
      grad_image = grad_image.to(image.scalar_type());
    }
  }
  return {grad_image, grad_flow, grad_kernel};
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CPU, m) {
  m.impl("adaptive_warp", &adaptive_warp_cpu);
  m.impl("adaptive_warp_backward", &adaptive_warp_backward_cpu);
}

}  // namespace memc
