// CPU entry point of the bicubic warp: input checks, the output, and a parallel loop over rows
// whose pixels run the shared per-pixel math (memc/bicubic_warp.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "common.h"
#include "cpu/parallel.h"
#include "memc/bicubic_warp.h"

namespace memc {
namespace {

at::Tensor bicubic_warp_cpu(const at::Tensor& image, const at::Tensor& flow) {
  check_bicubic_warp_inputs(image, flow);
  at::Tensor output = at::empty_like(image);
  if (output.numel() == 0) {
    return output;  // no pixels, or no channels (whose planes have no data to point to)
  }
  const int64_t channels = image.size(1), height = image.size(2), width = image.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "bicubic_warp_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto image_view = view4d<const scalar_t>(image);
    const auto flow_view = view4d<const scalar_t>(flow);
    const auto output_view = view4d<scalar_t>(output);
    parallel_rows(image.size(0), height, width, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / height, y = row % height;
        for (int64_t x = 0; x < width; ++x) {
          bicubic_warp_forward_pixel<scalar_t, opmath_t>(image_view, flow_view, output_view, channels, height, width,
                                                         n, y, x);
        }
      }
    });
  });
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CPU, m) {
  m.impl("bicubic_warp", &bicubic_warp_cpu);
}

}  // namespace memc
