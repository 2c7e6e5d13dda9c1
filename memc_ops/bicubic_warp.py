"""The bicubic warp: adaptive_warp with the fixed 4x4 kernel that makes it bicubic, computed per
pixel inside the op. Its Python face, autograd and fake kernel."""

from typing import Tuple

import torch
from torch import Tensor, nn

from ._checks import check_same_device, check_tensor

__all__ = ["BicubicWarp", "bicubic_warp"]


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


def _axis_coefficients(fraction: Tensor) -> Tuple[Tensor, Tensor]:
    """Per axis, adaptive_warp's bicubic coefficients of the window's four offsets (Keys' weights
    divided by the bilinear factor of their half) and their derivatives, each (B, 4, H, W), from
    the fractions (B, H, W): with g = 1 - s, -s g / 2, 1 + s (1 - 1.5 s), 1 + g (1 - 1.5 g), -s g / 2."""
    g = 1.0 - fraction
    outer = -0.5 * fraction * g
    near = 1.0 + fraction * (1.0 - 1.5 * fraction)
    far = 1.0 + g * (1.0 - 1.5 * g)
    outer_slope = fraction - 0.5
    coefficients = torch.stack((outer, near, far, outer), 1)
    slopes = torch.stack((outer_slope, 1.0 - 3.0 * fraction, 2.0 - 3.0 * fraction, outer_slope), 1)
    return coefficients, slopes


def _bicubic_coefficients(flow: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """adaptive_warp's (B, 16, H, W) bicubic kernel of ``flow`` (in the flow's opmath dtype) and its
    derivatives with respect to flow x and flow y. Pixels whose target is NaN get fraction 0: they
    copy their input, and their kernel gradients are 0."""
    _, _, height, width = flow.shape
    opmath = flow.to(torch.float64 if flow.dtype == torch.float64 else torch.float32)
    xs = torch.arange(width, device=flow.device, dtype=opmath.dtype)
    ys = torch.arange(height, device=flow.device, dtype=opmath.dtype).view(height, 1)
    target_x, target_y = opmath[:, 0] + xs, opmath[:, 1] + ys
    fraction_x = torch.nan_to_num(target_x - target_x.floor(), nan=0.0)
    fraction_y = torch.nan_to_num(target_y - target_y.floor(), nan=0.0)
    along_x, slope_x = _axis_coefficients(fraction_x)
    along_y, slope_y = _axis_coefficients(fraction_y)
    batch = flow.shape[0]

    def outer(rows: Tensor, cols: Tensor) -> Tensor:  # tap r * 4 + c: rows[r] cols[c]
        return (rows.unsqueeze(2) * cols.unsqueeze(1)).reshape(batch, 16, height, width)

    return outer(along_y, along_x), outer(along_y, slope_x), outer(slope_y, along_x)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    image, flow = ctx.saved_tensors
    need_image, need_flow = ctx.needs_input_grad
    kernel, kernel_dx, kernel_dy = _bicubic_coefficients(flow)
    # adaptive_warp's gradients with the kernel held fixed, and the kernel's, chained through its
    # dependence on the flow.
    grad_image, grad_flow, grad_kernel = torch.ops.memc.adaptive_warp_backward.default(
        grad_output, image, flow, kernel.to(image.dtype), [need_image, need_flow, need_flow]
    )
    if need_flow:
        grad_kernel = grad_kernel.to(kernel.dtype)
        through_kernel = torch.stack(((grad_kernel * kernel_dx).sum(1), (grad_kernel * kernel_dy).sum(1)), 1)
        grad_flow = (grad_flow.to(kernel.dtype) + through_kernel).to(flow.dtype)
    return grad_image, grad_flow


torch.library.register_autograd("memc::bicubic_warp", _backward, setup_context=_setup_context)


class BicubicWarp(nn.Module):
    """``nn.Module`` form of :func:`bicubic_warp` (no parameters): ``forward(image, flow)``."""

    def forward(self, image: Tensor, flow: Tensor) -> Tensor:
        return bicubic_warp(image, flow)
