"""The bicubic warp: adaptive_warp with the fixed 4x4 kernel that makes it bicubic, computed per
pixel inside the op. Its Python face, autograd and fake kernel."""

import torch
from torch import Tensor, nn

from ._checks import check_same_device, check_tensor

__all__ = ["BicubicWarp", "bicubic_kernel", "bicubic_warp"]


def bicubic_warp(image: Tensor, flow: Tensor) -> Tensor:
    """Warps ``image`` by ``flow`` with bicubic interpolation (Keys' cubic convolution, a = -0.5).

    Args:
        image: (B, C, H, W) frame or feature map to sample from.
        flow: (B, 2, H, W) displacement in pixels; channel 0 horizontal, channel 1 vertical.

    Returns:
        (B, C, H, W) warped image, same dtype, device and memory format as ``image``.

    Definition: :func:`memc_ops.adaptive_warp` with K = 4 and, per pixel, the coefficients that
    make it bicubic, without the (B, 16, H, W) kernel tensor. For output pixel x with target
    x' = x + f(x):

    * If x' lies inside [0, W-1] x [0, H-1], |f_x| < W/2 and |f_y| < H/2 (adaptive_warp's rule),
      let (i, j) = floor(x') and (a, b) = x' - (i, j). With w(s) Keys' weights of the offsets
      -1, 0, 1, 2, for s = a or b and g = 1 - s:

          w(s) = (-s g^2 / 2,  1 - 2.5 s^2 + 1.5 s^3,  1 - 2.5 g^2 + 1.5 g^3,  -s^2 g / 2)

          output(x) = sum over r, c in 0..3 of w(b)[r] w(a)[c] image(clamp(j - 1 + r, i - 1 + c))

      (samples outside the frame take the nearest border pixel); this is adaptive_warp's
      quadrant weights times the coefficients w(b)[r] w(a)[c] / (bilinear_r(b) bilinear_c(a)),
      each a polynomial.
    * Otherwise (outside, too large or NaN) output(x) = image(x).

    The same values as ``adaptive_warp(image, flow, kernel)`` with that kernel, up to float
    rounding (the sums are taken per row, then over the rows). Gradients are exact for both inputs
    (the flow's through a and b, the coefficients' dependence included; the window is piecewise
    constant in the flow). The backward recomputes the coefficients as a (B, 16, H, W) tensor
    and runs adaptive_warp's backward: the forward alone saves that memory. float16 and bfloat16
    are computed in float32. Both inputs must share dtype and device; any strides are accepted.
    Other inputs raise TypeError (not a tensor), ValueError (shape or dtype) or RuntimeError
    (device), naming the argument.
    """
    check_tensor("bicubic_warp", "image", image, "(B, C, H, W)")
    check_tensor("bicubic_warp", "flow", flow, "(B, 2, H, W)")
    check_same_device("bicubic_warp", "image", image, flow=flow)
    return torch.ops.memc.bicubic_warp.default(image, flow)


@torch.library.register_fake("memc::bicubic_warp")
def _bicubic_warp_fake(image: Tensor, flow: Tensor) -> Tensor:
    return torch.empty_like(image)


def bicubic_kernel(flow: Tensor) -> Tensor:
    """(B, 16, H, W) :func:`memc_ops.adaptive_warp` coefficients (K = 4) that make the warp
    bicubic (Keys, a = -0.5): ``adaptive_warp(image, flow, bicubic_kernel(flow))`` is
    :func:`bicubic_warp` up to float rounding. For a flow used with several images (one kernel,
    many warps); otherwise :func:`bicubic_warp` saves the kernel's memory.

    adaptive_warp weights the left two columns of its 4x4 window by (1 - a) and the right two by a
    (a the fractional part of the target), rows likewise, then by the kernel. Keys' weights for the
    offsets -1, 0, 1, 2 divided by those factors are, with g = 1 - a, the polynomials -a g / 2,
    1 + a (1 - 1.5 a), 1 + g (1 - 1.5 g) and -a g / 2 (each of Keys' weights has the factor as a
    root), so per pixel the warp is exactly bicubic. Computed in float32 (float64 for float64),
    returned in the flow's dtype; pixels whose target is NaN get the coefficients of a = 0.
    """
    check_tensor("bicubic_kernel", "flow", flow, "(B, 2, H, W)")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"bicubic_kernel: flow must have shape (B, 2, H, W); got {tuple(flow.shape)}")
    if not flow.is_floating_point():
        raise ValueError(f"bicubic_kernel: flow must be a floating-point tensor; got {flow.dtype}")
    (along_x, _), (along_y, _) = _axis_coefficients(flow, slopes=False)
    return _outer(along_y, along_x).to(flow.dtype)


def _axis_coefficients(flow: Tensor, slopes: bool):
    """Per axis (x, then y): adaptive_warp's bicubic coefficients of the window's four offsets
    (B, 4, H, W) in the flow's opmath dtype, and (when ``slopes``) their derivatives with respect
    to the flow, else None. Pixels whose target is NaN get fraction 0: they copy their input, and
    their kernel gradients are 0."""
    _, _, height, width = flow.shape
    opmath = flow.to(torch.float64 if flow.dtype == torch.float64 else torch.float32)
    xs = torch.arange(width, device=flow.device, dtype=opmath.dtype)
    ys = torch.arange(height, device=flow.device, dtype=opmath.dtype).view(height, 1)
    per_axis = []
    for target in (opmath[:, 0] + xs, opmath[:, 1] + ys):
        s = torch.nan_to_num(target - target.floor(), nan=0.0)  # the fraction a (or b)
        g = 1.0 - s
        outer = -0.5 * s * g
        coefficients = torch.stack((outer, 1.0 + s * (1.0 - 1.5 * s), 1.0 + g * (1.0 - 1.5 * g), outer), 1)
        slope = None
        if slopes:
            outer_slope = s - 0.5
            slope = torch.stack((outer_slope, 1.0 - 3.0 * s, 2.0 - 3.0 * s, outer_slope), 1)
        per_axis.append((coefficients, slope))
    return per_axis


def _outer(rows: Tensor, cols: Tensor) -> Tensor:
    """(B, 16, H, W) products of per-axis coefficients (B, 4, H, W): tap r * 4 + c is rows[r] cols[c]."""
    batch, _, height, width = rows.shape
    return (rows.unsqueeze(2) * cols.unsqueeze(1)).reshape(batch, 16, height, width)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    image, flow = ctx.saved_tensors
    need_image, need_flow = ctx.needs_input_grad
    (along_x, slope_x), (along_y, slope_y) = _axis_coefficients(flow, slopes=need_flow)
    kernel = _outer(along_y, along_x)
    # adaptive_warp's gradients with the kernel held fixed, in the kernel's opmath dtype: half
    # types rounded there would lose the flow gradient, a small difference of two large parts.
    opmath = kernel.dtype
    grad_image, grad_flow, grad_kernel = torch.ops.memc.adaptive_warp_backward.default(
        grad_output.to(opmath), image.to(opmath), flow.to(opmath), kernel, [need_image, need_flow, need_flow]
    )
    if need_image:
        grad_image = grad_image.to(image.dtype)
    if need_flow:
        # The kernel's gradient chained through its dependence on the flow, axis by axis (tap r * 4 + c
        # is along_y[r] along_x[c]), without 16-plane temporaries.
        by_tap = grad_kernel.unflatten(1, (4, 4))
        through_x = torch.einsum("brchw,brhw,bchw->bhw", by_tap, along_y, slope_x)
        through_y = torch.einsum("brchw,brhw,bchw->bhw", by_tap, slope_y, along_x)
        grad_flow = (grad_flow + torch.stack((through_x, through_y), 1)).to(flow.dtype)
    return grad_image, grad_flow


torch.library.register_autograd("memc::bicubic_warp", _backward, setup_context=_setup_context)


class BicubicWarp(nn.Module):
    """``nn.Module`` form of :func:`bicubic_warp` (no parameters): ``forward(image, flow)``."""

    def forward(self, image: Tensor, flow: Tensor) -> Tensor:
        return bicubic_warp(image, flow)
