"""Pure-PyTorch reference implementations: the specification the kernels are tested against.

Vectorised over pixels (loops only over the K*K taps), differentiable by autograd, written for
clarity rather than speed.
"""

import math

import torch
from torch import Tensor

__all__ = ["adaptive_warp_reference"]


def _gather_pixels(image: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """image (B, C, H, W) sampled at integer (rows, cols) of shape (B, H, W) -> (B, C, H, W)."""
    batch, channels, height, width = image.shape
    index = (rows * width + cols).reshape(batch, 1, height * width).expand(batch, channels, height * width)
    return image.reshape(batch, channels, height * width).gather(2, index).reshape(batch, channels, height, width)


def adaptive_warp_reference(image: Tensor, flow: Tensor, kernel: Tensor) -> Tensor:
    """Reference for :func:`memc_ops.adaptive_warp`; see its docstring for the definition."""
    batch, channels, height, width = image.shape
    kernel_size = math.isqrt(kernel.shape[1])
    half = kernel_size // 2
    flow_x, flow_y = flow[:, 0], flow[:, 1]
    xs = torch.arange(width, device=image.device, dtype=flow.dtype).view(1, 1, width)
    ys = torch.arange(height, device=image.device, dtype=flow.dtype).view(1, height, 1)
    target_x, target_y = xs + flow_x, ys + flow_y
    valid = (
        (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
        & (flow_x.abs() < width / 2) & (flow_y.abs() < height / 2)
    )
    # Invalid pixels get a harmless stand-in target so indices stay in range and gradients finite.
    target_x = torch.where(valid, target_x, torch.zeros_like(target_x))
    target_y = torch.where(valid, target_y, torch.zeros_like(target_y))
    floor_x, floor_y = target_x.detach().floor(), target_y.detach().floor()
    frac_x, frac_y = target_x - floor_x, target_y - floor_y  # a, b: the flow's only gradient path
    warped = torch.zeros_like(image)
    for r in range(kernel_size):
        rows = (floor_y.long() + 1 - half + r).clamp(0, height - 1)
        weight_y = 1 - frac_y if r < half else frac_y
        for c in range(kernel_size):
            cols = (floor_x.long() + 1 - half + c).clamp(0, width - 1)
            weight_x = 1 - frac_x if c < half else frac_x
            tap = kernel[:, r * kernel_size + c] * weight_y * weight_x
            warped = warped + tap.unsqueeze(1) * _gather_pixels(image, rows, cols)
    return torch.where(valid.unsqueeze(1), warped, image)
