// CPU entry points of the adaptive warping layer: input checks, allocations and the parallel
// loops over rows; the rows themselves are computed by the vectorised kernels of the CPU's
// capability (cpu/adaptive_warp_kernels.h, csrc/cpu/vectorized/adaptive_warp_kernels.cpp).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <array>
#include <limits>
#include <tuple>
#include <vector>

#include "common.h"
#include "cpu/adaptive_warp_kernels.h"
#include "cpu/parallel.h"

namespace memc {
namespace {

// Whether every offset in an (H, W) plane of `tensor` fits index_t.
template <typename index_t>
bool plane_offsets_fit(const at::Tensor& tensor) {
  const int64_t largest = (tensor.size(2) - 1) * tensor.stride(2) + (tensor.size(3) - 1) * tensor.stride(3);
  return largest <= std::numeric_limits<index_t>::max();
}

// The image as the kernels read it: in its opmath type (converted once, not at each of its K*K
// reads), with plane offsets that fit the gathers' index type (32-bit for float).
at::Tensor image_for_kernels(const at::Tensor& image) {
  const auto opmath_dtype = at::toOpMathType(image.scalar_type());
  at::Tensor converted = image.scalar_type() == opmath_dtype ? image : image.to(opmath_dtype);
  if (opmath_dtype == at::kDouble || plane_offsets_fit<int32_t>(converted)) {
    return converted;
  }
  converted = converted.contiguous();  // a sliced or broadcast view may span more than its pixels
  TORCH_CHECK(plane_offsets_fit<int32_t>(converted), "adaptive_warp: on the CPU, an image plane of ",
              image.scalar_type(), " must have fewer than 2^31 elements; got ", image.size(2), " x ", image.size(3));
  return converted;
}

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

// Calls rows(begin, end) over the B * H rows in parallel: rows are the unit, so one image also
// keeps every thread busy.
template <typename F>
void parallel_rows(int64_t batch, int64_t height, int64_t width, const F& rows) {
  at::parallel_for(0, batch * height, lines_per_task(width), rows);
}

at::Tensor adaptive_warp_cpu(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& kernel) {
  const int kernel_size = check_adaptive_warp_inputs(image, flow, kernel);
  at::Tensor output = at::empty_like(image);
  if (output.numel() == 0) {
    return output;  // no pixels, or no channels (whose planes have no data to point to)
  }
  const at::Tensor image_opmath = image_for_kernels(image);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "adaptive_warp_cpu", [&] {
    auto views = views_of<scalar_t>(image, flow, kernel, kernel_size);
    views.image = view4d<const at::opmath_type<scalar_t>>(image_opmath);
    views.output = view4d<scalar_t>(output);
    const auto forward_rows = MEMC_CPU_KERNEL(adaptive_warp_forward_rows<scalar_t>);
    parallel_rows(image.size(0), image.size(2), image.size(3),
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
  const at::Tensor image_opmath = want_flow || want_kernel ? image_for_kernels(image) : image;
  // Image gradients are scattered: in bands of source rows per (batch, channel) plane, each into
  // its band's private zeroed copy (see scatter_bands), laid out like the image, so that the
  // gradient has the image's memory format as ATen's ops give. Half types accumulate in float32,
  // rounded once.
  std::vector<at::Tensor> band_grads;
  int64_t bands = 0;
  if (want_image) {
    bands = scatter_bands(batch * channels, height);
    for (int64_t band = 0; band < bands; ++band) {
      band_grads.push_back(at::zeros_like(image, image.options().dtype(opmath_dtype)));
    }
    TORCH_CHECK(opmath_dtype == at::kDouble || plane_offsets_fit<int32_t>(band_grads[0]),
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
      const auto kernel_flow_grad_rows = MEMC_CPU_KERNEL(adaptive_warp_kernel_flow_grad_rows<scalar_t>);
      parallel_rows(batch, height, width, [&](int64_t begin, int64_t end) { kernel_flow_grad_rows(views, begin, end); });
    }
    if (want_image) {
      const auto image_grad_row = MEMC_CPU_KERNEL(adaptive_warp_image_grad_row<scalar_t>);
      const auto grad_image_views = band_views<opmath_t>(band_grads);
      for_each_band_row_of_channels(batch, channels, bands, height, width,
                                    [&](int64_t n, int64_t channel_begin, int64_t channel_end, int64_t band,
                                        int64_t y) {
                                      image_grad_row(views, grad_image_views[band], n, channel_begin, channel_end, y);
                                    });
    }
  });
  if (want_image) {
    grad_image = sum_band_copies(band_grads);
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
