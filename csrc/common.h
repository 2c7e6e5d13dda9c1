// Host-side helpers shared by the CPU (.cpp) and CUDA (.cu) entry points: strided views over
// tensors, input checks, and dispatch on the interpolation kernel size.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <sstream>
#include <string>
#include <type_traits>

#include "memc/strided.h"

namespace memc {

template <typename T>
Strided4d<T> view4d(const at::Tensor& tensor) {
  using element_t = std::remove_const_t<T>;
  return Strided4d<T>{static_cast<T*>(tensor.data_ptr<element_t>()), tensor.stride(0), tensor.stride(1),
                      tensor.stride(2), tensor.stride(3)};
}

inline std::string shape_string(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < sizes.size(); ++i) {
    out << (i ? ", " : "") << sizes[i];
  }
  out << ")";
  return out.str();
}

inline bool is_supported_float(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16;
}

// Checks shared by every op: a 4-D floating tensor of the reference's dtype and device.
inline void check_4d_float(const char* op, const char* name, const at::Tensor& tensor, const at::Tensor& reference,
                           const char* reference_name) {
  TORCH_CHECK_VALUE(tensor.dim() == 4, op, ": ", name, " must be a 4-D tensor (B, C, H, W); got ", tensor.dim(),
                    " dimensions with shape ", shape_string(tensor.sizes()));
  TORCH_CHECK_VALUE(is_supported_float(tensor.scalar_type()), op, ": ", name,
                    " must be float32, float64, float16 or bfloat16; got ", tensor.scalar_type());
  TORCH_CHECK_VALUE(tensor.scalar_type() == reference.scalar_type(), op, ": ", name, " must have the dtype of ",
                    reference_name, " (", reference.scalar_type(), "); got ", tensor.scalar_type());
  TORCH_CHECK(tensor.device() == reference.device(), op, ": ", name, " must be on the device of ", reference_name,
              " (", reference.device(), "); got ", tensor.device());
}

// The kernel sizes the kernels are compiled for; K*K coefficients per pixel.
constexpr int kMaxKernelSize = 8;

// Validates image (B, C, H, W) and flow (B, 2, H, W) of a warp: 4-D, one float dtype and device,
// the flow's shape matching the image's.
inline void check_warp_image_and_flow(const char* op, const at::Tensor& image, const at::Tensor& flow) {
  check_4d_float(op, "image", image, image, "image");
  check_4d_float(op, "flow", flow, image, "image");
  const int64_t batch = image.size(0), height = image.size(2), width = image.size(3);
  TORCH_CHECK_VALUE(flow.size(0) == batch && flow.size(1) == 2 && flow.size(2) == height && flow.size(3) == width,
                    op, ": flow must have shape (B, 2, H, W) = ", shape_string({batch, 2, height, width}),
                    " to match image ", shape_string(image.sizes()), "; got ", shape_string(flow.sizes()));
}

// Validates image (B, C, H, W), flow (B, 2, H, W), kernel (B, K*K, H, W) and returns K.
inline int check_adaptive_warp_inputs(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& kernel) {
  const char* op = "adaptive_warp";
  check_warp_image_and_flow(op, image, flow);
  check_4d_float(op, "kernel", kernel, image, "image");
  const int64_t batch = image.size(0), height = image.size(2), width = image.size(3);
  const int64_t taps = kernel.size(1);
  int kernel_size = 0;
  for (int k = 2; k <= kMaxKernelSize; k += 2) {
    if (k * k == taps) kernel_size = k;
  }
  TORCH_CHECK_VALUE(kernel_size != 0, op, ": kernel must have K*K channels with K in {2, 4, 6, 8} (4, 16, 36 or 64); got ",
                    taps, " channels in shape ", shape_string(kernel.sizes()));
  TORCH_CHECK_VALUE(kernel.size(0) == batch && kernel.size(2) == height && kernel.size(3) == width, op,
                    ": kernel must have shape (B, K*K, H, W) = ", shape_string({batch, taps, height, width}),
                    " to match image ", shape_string(image.sizes()), "; got ", shape_string(kernel.sizes()));
  return kernel_size;
}

inline void check_adaptive_warp_grad_output(const at::Tensor& grad_output, const at::Tensor& image) {
  check_4d_float("adaptive_warp_backward", "grad_output", grad_output, image, "image");
  TORCH_CHECK_VALUE(grad_output.sizes() == image.sizes(), "adaptive_warp_backward: grad_output must have the shape of image ",
                    shape_string(image.sizes()), "; got ", shape_string(grad_output.sizes()));
}

// Validates image (B, C, H, W) and flow (B, 2, H, W) of bicubic_warp.
inline void check_bicubic_warp_inputs(const at::Tensor& image, const at::Tensor& flow) {
  check_warp_image_and_flow("bicubic_warp", image, flow);
}

// Calls f(std::integral_constant<int, K>{}) so that kernels can unroll over a compile-time K.
template <typename F>
void dispatch_kernel_size(int kernel_size, F&& f) {
  switch (kernel_size) {
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    default: TORCH_CHECK(false, "unsupported kernel size ", kernel_size);
  }
}

inline bool has_tensor(const std::optional<at::Tensor>& tensor) {
  return tensor.has_value() && tensor->defined();
}

// A view of an optional tensor; a null view (never read) when it is absent.
template <typename T>
Strided4d<T> optional_view4d(const std::optional<at::Tensor>& tensor) {
  return has_tensor(tensor) ? view4d<T>(*tensor) : Strided4d<T>{nullptr, 0, 0, 0, 0};
}

// Validates flow (B, 2, H, W) and, when given, weight (B, 1, H, W) of flow_projection. The values
// of weight are not inspected here: sources whose weight is not a positive finite number are
// skipped by the kernels (the Python wrapper rejects them).
inline void check_flow_projection_inputs(const char* op, const at::Tensor& flow,
                                         const std::optional<at::Tensor>& weight) {
  check_4d_float(op, "flow", flow, flow, "flow");
  const int64_t batch = flow.size(0), height = flow.size(2), width = flow.size(3);
  TORCH_CHECK_VALUE(flow.size(1) == 2, op, ": flow must have shape (B, 2, H, W); got ", shape_string(flow.sizes()));
  if (has_tensor(weight)) {
    check_4d_float(op, "weight", *weight, flow, "flow");
    TORCH_CHECK_VALUE(weight->size(0) == batch && weight->size(1) == 1 && weight->size(2) == height &&
                          weight->size(3) == width,
                      op, ": weight must have shape (B, 1, H, W) = ", shape_string({batch, 1, height, width}),
                      " to match flow ", shape_string(flow.sizes()), "; got ", shape_string(weight->sizes()));
  }
}

inline void check_flow_projection_backward_inputs(const at::Tensor& grad_output, const at::Tensor& flow,
                                                  const std::optional<at::Tensor>& weight,
                                                  const at::Tensor& projected) {
  const char* op = "flow_projection_backward";
  check_flow_projection_inputs(op, flow, weight);
  check_4d_float(op, "grad_output", grad_output, flow, "flow");
  TORCH_CHECK_VALUE(grad_output.sizes() == flow.sizes(), op, ": grad_output must have the shape of flow ",
                    shape_string(flow.sizes()), "; got ", shape_string(grad_output.sizes()));
  const auto opmath_dtype = flow.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK_VALUE(projected.dim() == 4 && projected.size(0) == flow.size(0) && projected.size(1) == 3 &&
                        projected.size(2) == flow.size(2) && projected.size(3) == flow.size(3),
                    op, ": projected must have shape (B, 3, H, W) = ",
                    shape_string({flow.size(0), 3, flow.size(2), flow.size(3)}), "; got ",
                    shape_string(projected.sizes()));
  TORCH_CHECK_VALUE(projected.scalar_type() == opmath_dtype, op, ": projected must be ", opmath_dtype,
                    " (the accumulation dtype of ", flow.scalar_type(), "); got ", projected.scalar_type());
  TORCH_CHECK(projected.device() == flow.device(), op, ": projected must be on the device of flow (", flow.device(),
              "); got ", projected.device());
}

}  // namespace memc
