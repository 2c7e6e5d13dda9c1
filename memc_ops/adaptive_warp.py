"""The adaptive warping layer of MEMC-Net: its Python face, autograd and fake kernel."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._checks import check_same_device, check_tensor

__all__ = ["AdaptiveWarp", "adaptive_warp"]


def adaptive_warp(image: Tensor, flow: Tensor, kernel: Tensor) -> Tensor:
    """Warps ``image`` by ``flow`` with learned per-pixel K x K interpolation kernels.

    Args:
        image: (B, C, H, W) frame or feature map to sample from.
        flow: (B, 2, H, W) displacement in pixels; channel 0 horizontal, channel 1 vertical.
        kernel: (B, K*K, H, W) learned coefficients, K even (2, 4, 6 or 8; MEMC-Net uses 4).

    Returns:
        (B, C, H, W) warped image, same dtype and device.

    Definition, for each output pixel x with target x' = x + f(x):

    * If x' lies inside [0, W-1] x [0, H-1], |f_x| < W/2 and |f_y| < H/2, let (i, j) = floor(x')
      and (a, b) = x' - (i, j). The window has columns i+1-K/2 .. i+K/2 and rows j+1-K/2 .. j+K/2;
      samples outside the frame take the nearest border pixel. Tap t = (row - first row) * K +
      (column - first column). Taps in columns <= i are weighted by (1 - a), the others by a;
      taps in rows <= j by (1 - b), the others by b; each also by its coefficient kernel[t](x):

          output(x) = sum_t kernel[t](x) * bilinear_t(a, b) * image(clamp(tap_t))

      (the quadrant form: (1-a)(1-b) TL + a(1-b) TR + (1-a) b BL + a b BR).
    * Otherwise (outside, too large or NaN) output(x) = image(x).

    Gradients are exact for all three inputs, the copy-through branch included; the flow gradient
    comes from a and b (the window itself is piecewise constant in the flow). Only the gradients of
    inputs that require one are computed (an image that needs none skips the costly scatter), and
    the image gradient has the image's memory format (channels-last in, channels-last out).
    float16 and bfloat16 are computed in float32. All inputs must share dtype and device; any
    strides are accepted. Gradients of gradients are not implemented: a backward through a
    gradient of this op raises a RuntimeError.
    Other inputs raise TypeError (not a tensor), ValueError (shape or dtype) or RuntimeError
    (device), naming the argument.
    """
    check_tensor("adaptive_warp", "image", image, "(B, C, H, W)")
    check_tensor("adaptive_warp", "flow", flow, "(B, 2, H, W)")
    check_tensor("adaptive_warp", "kernel", kernel, "(B, K*K, H, W)")
    check_same_device("adaptive_warp", "image", image, flow=flow, kernel=kernel)
    return torch.ops.memc.adaptive_warp.default(image, flow, kernel)


@torch.library.register_fake("memc::adaptive_warp")
def _adaptive_warp_fake(image: Tensor, flow: Tensor, kernel: Tensor) -> Tensor:
    return torch.empty_like(image)


@torch.library.register_fake("memc::adaptive_warp_backward")
def _adaptive_warp_backward_fake(grad_output: Tensor, image: Tensor, flow: Tensor, kernel: Tensor,
                                 output_mask: Sequence[bool] = (True, True, True)):
    # Gradients not asked for come back as None, as from the kernels (undefined tensors).
    grads = (torch.empty_like(image), torch.empty_like(flow), torch.empty_like(kernel))
    return tuple(grad if wanted else None for grad, wanted in zip(grads, output_mask))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    image, flow, kernel = ctx.saved_tensors
    # Only the gradients autograd needs: the image's is a scatter, and frames rarely need one.
    output_mask = list(ctx.needs_input_grad)
    return torch.ops.memc.adaptive_warp_backward.default(grad_output, image, flow, kernel, output_mask)


torch.library.register_autograd("memc::adaptive_warp", _backward, setup_context=_setup_context)


class AdaptiveWarp(nn.Module):
    """``nn.Module`` form of :func:`adaptive_warp` (no parameters): ``forward(image, flow, kernel)``."""

    def forward(self, image: Tensor, flow: Tensor, kernel: Tensor) -> Tensor:
        return adaptive_warp(image, flow, kernel)
