// CPU entry point of the bicubic warp: input checks, the output, and a parallel loop over rows
// computed by the vectorised kernel of the CPU's capability (cpu/bicubic_warp_kernels.h,
// csrc/cpu/vectorized/bicubic_warp_kernels.cpp), which runs the shared per-pixel math
// (memc/bicubic_warp.h) lane by lane.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "common.h"
#include "cpu/bicubic_warp_kernels.h"
#include "cpu/opmath_image.h"
#include "cpu/parallel.h"

namespace memc {
namespace {

at::Tensor bicubic_warp_cpu(const at::Tensor& image, const at::Tensor& flow) {
  check_bicubic_warp_inputs(image, flow);
  at::Tensor output = at::empty_like(image);
  if (output.numel() == 0) {
    return output;  // no pixels, or no channels (whose planes have no data to point to)
  }
  const at::Tensor image_opmath = image_for_kernels("bicubic_warp", image);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "bicubic_warp_cpu", [&] {
    BicubicWarpViews<scalar_t> views{};
    views.image = view4d<const at::opmath_type<scalar_t>>(image_opmath);
    views.flow = view4d<const scalar_t>(flow);
    views.output = view4d<scalar_t>(output);
    views.channels = image.size(1);
    views.height = image.size(2);
    views.width = image.size(3);
    const auto forward_rows = MEMC_CPU_KERNEL(bicubic_warp_forward_rows<scalar_t>);
    parallel_rows(image.size(0), image.size(2), image.size(3),
                  [&](int64_t begin, int64_t end) { forward_rows(views, begin, end); });
  });
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(memc, CPU, m) {
  m.impl("bicubic_warp", &bicubic_warp_cpu);
}

}  // namespace memc
