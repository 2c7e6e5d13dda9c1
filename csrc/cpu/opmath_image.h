// The image as the vectorised CPU warps read it (adaptive_warp, bicubic_warp): in its opmath type
// and with plane offsets that fit the gathers' 32-bit indices. Shared by their entry points.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

namespace memc {

// Whether every offset in an (H, W) plane of `tensor` fits index_t.
template <typename index_t>
bool plane_offsets_fit(const at::Tensor& tensor) {
  const int64_t largest = (tensor.size(2) - 1) * tensor.stride(2) + (tensor.size(3) - 1) * tensor.stride(3);
  return largest <= std::numeric_limits<index_t>::max();
}

// The image in its opmath type (converted once, not at each of its window's reads: a float32 copy
// of a half-precision image), with plane offsets that fit the gathers' index type (32-bit for
// float32, 64-bit for float64); `op` names the op in the error for planes too large.
inline at::Tensor image_for_kernels(const char* op, const at::Tensor& image) {
  const auto opmath_dtype = at::toOpMathType(image.scalar_type());
  at::Tensor converted = image.scalar_type() == opmath_dtype ? image : image.to(opmath_dtype);
  if (opmath_dtype == at::kDouble || plane_offsets_fit<int32_t>(converted)) {
    return converted;
  }
  converted = converted.contiguous();  // a sliced or broadcast view may span more than its pixels
  TORCH_CHECK(plane_offsets_fit<int32_t>(converted), op, ": on the CPU, an image plane of ", image.scalar_type(),
              " must have fewer than 2^31 elements; got ", image.size(2), " x ", image.size(3));
  return converted;
}

}  // namespace memc
