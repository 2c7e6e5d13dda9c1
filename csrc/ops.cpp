// The operator schemas of the memc namespace, all in one place. The CPU implementations are bound
// in cpu/*.cpp and the CUDA ones in cuda/*.cu; autograd and fake (meta) kernels are registered
// from Python (memc_ops/*.py).
#include <Python.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

// An importable module, so that `import memc_ops._C` loads this library and runs its registrations.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(memc, m) {
  m.def("adaptive_warp(Tensor image, Tensor flow, Tensor kernel) -> Tensor");
  // output_mask: which of (grad_image, grad_flow, grad_kernel) to compute; the others come back
  // undefined (None), as from ATen's backward ops.
  m.def("adaptive_warp_backward(Tensor grad_output, Tensor image, Tensor flow, Tensor kernel, bool[3] output_mask=[True, True, True]) -> (Tensor, Tensor, Tensor)");
  // adaptive_warp(image, flow, kernel) with the 4x4 kernel that makes it bicubic (Keys, a = -0.5),
  // computed per pixel from the flow; its gradients are composed in Python (memc_ops/bicubic_warp.py).
  m.def("bicubic_warp(Tensor image, Tensor flow) -> Tensor");
  // Returns the projected flow and the opmath buffer `projected` (B, 3, H, W) that the backward
  // needs: averages (holes filled or zero) and total weights; see memc/flow_projection.h.
  // fill_from_below=False is the released kernel's hole fill (left, right and above only).
  // output_mask (flow, weight) says which gradients to compute; one not asked for comes back as
  // an empty tensor. The defaults keep callers written before these arguments working.
  m.def("flow_projection(Tensor flow, Tensor? weight, bool fill_holes, bool fill_from_below=True) -> (Tensor, Tensor)");
  m.def("flow_projection_backward(Tensor grad_output, Tensor flow, Tensor? weight, Tensor projected, bool fill_holes, bool fill_from_below=True, bool[2] output_mask=[True, True]) -> (Tensor, Tensor)");
}

// The backward ops have no derivatives of their own (no double backward). Without an autograd
// kernel, autograd would only warn and then treat them as constants: a second derivative through
// them would come out silently wrong. This fallback makes a backward through them an error
// ("derivative for memc::..._backward is not implemented") and costs nothing otherwise.
TORCH_LIBRARY_IMPL(memc, Autograd, m) {
  m.impl("adaptive_warp_backward", torch::autograd::autogradNotImplementedFallback());
  m.impl("flow_projection_backward", torch::autograd::autogradNotImplementedFallback());
}
