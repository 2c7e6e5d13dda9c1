"""Pure-PyTorch reference implementations: the specification the kernels are tested against.

Vectorised over pixels (loops only over the K*K taps), differentiable by autograd, written for
clarity rather than speed.
"""

import math

import torch
from torch import Tensor

__all__ = ["adaptive_warp_reference", "bicubic_warp_reference", "flow_projection_reference", "warp_valid"]


def _gather_pixels(image: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """image (B, C, H, W) sampled at integer (rows, cols) of shape (B, H, W) -> (B, C, H, W)."""
    batch, channels, height, width = image.shape
    index = (rows * width + cols).reshape(batch, 1, height * width).expand(batch, channels, height * width)
    return image.reshape(batch, channels, height * width).gather(2, index).reshape(batch, channels, height, width)


def _unmasked_targets(flow: Tensor):
    """The targets x' = x + f of (B, 2, H, W) flow, (x'_x, x'_y), each (B, H, W), wherever they lie."""
    _, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    return xs + flow[:, 0], ys + flow[:, 1]


def _valid_targets(flow: Tensor, target_x: Tensor, target_y: Tensor) -> Tensor:
    _, _, height, width = flow.shape
    return (
        (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
        & (flow[:, 0].abs() < width / 2) & (flow[:, 1].abs() < height / 2)
    )


def warp_valid(flow: Tensor) -> Tensor:
    """(B, H, W) bool: where :func:`memc_ops.adaptive_warp` and :func:`memc_ops.bicubic_warp`
    sample the image for (B, 2, H, W) ``flow``, the target x' = x + f lying in [0, W-1] x [0, H-1]
    with |f_x| < W/2 and |f_y| < H/2. Elsewhere they copy the input pixel through."""
    return _valid_targets(flow, *_unmasked_targets(flow))


def _warp_targets(flow: Tensor):
    """The warp's targets x' = x + f of (B, 2, H, W) flow: (valid, x'_x, x'_y), each (B, H, W),
    valid as :func:`warp_valid` says."""
    target_x, target_y = _unmasked_targets(flow)
    valid = _valid_targets(flow, target_x, target_y)
    # Invalid pixels get a harmless stand-in target so indices stay in range and gradients finite.
    zero = torch.zeros((), device=flow.device, dtype=flow.dtype)
    return valid, torch.where(valid, target_x, zero), torch.where(valid, target_y, zero)


def adaptive_warp_reference(image: Tensor, flow: Tensor, kernel: Tensor) -> Tensor:
    """Reference for :func:`memc_ops.adaptive_warp`; see its docstring for the definition."""
    _, _, height, width = image.shape
    kernel_size = math.isqrt(kernel.shape[1])
    half = kernel_size // 2
    valid, target_x, target_y = _warp_targets(flow)
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


def _keys_weights(fraction: Tensor):
    """Keys' cubic convolution weights (a = -0.5) of the offsets -1, 0, 1, 2 from the floor, for
    the fractional position s: the cubic kernel at distances 1 + s, s, 1 - s, 2 - s."""
    def near(d):  # |d| <= 1
        return 1.5 * d**3 - 2.5 * d**2 + 1

    def far(d):  # 1 < |d| < 2
        return -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2

    return far(1 + fraction), near(fraction), near(1 - fraction), far(2 - fraction)


def bicubic_warp_reference(image: Tensor, flow: Tensor) -> Tensor:
    """Reference for :func:`memc_ops.bicubic_warp`; see its docstring for the definition."""
    _, _, height, width = image.shape
    valid, target_x, target_y = _warp_targets(flow)
    floor_x, floor_y = target_x.detach().floor(), target_y.detach().floor()
    weights_x, weights_y = _keys_weights(target_x - floor_x), _keys_weights(target_y - floor_y)
    warped = torch.zeros_like(image)
    for r in range(4):
        rows = (floor_y.long() - 1 + r).clamp(0, height - 1)
        for c in range(4):
            cols = (floor_x.long() - 1 + c).clamp(0, width - 1)
            tap = weights_y[r] * weights_x[c]
            warped = warped + tap.unsqueeze(1) * _gather_pixels(image, rows, cols)
    return torch.where(valid.unsqueeze(1), warped, image)


def _nearest_received(received: Tensor, dim: int):
    """For each pixel, the index along `dim` (-1 or -2) of the nearest received pixel strictly
    before and strictly after it, with masks saying whether one exists. By running max/min scans."""
    length = received.shape[dim]
    shape = [1] * received.dim()
    shape[dim] = length
    index = torch.arange(length, device=received.device).view(shape).expand_as(received)
    marked = torch.where(received, index, torch.full_like(index, -1))
    # Nearest at or before each pixel; for a hole that is strictly before it.
    before = torch.cummax(marked, dim=dim).values
    marked = torch.where(received, index, torch.full_like(index, length))
    after = torch.cummin(marked.flip(dim), dim=dim).values.flip(dim)
    return (before.clamp(min=0), before >= 0), (after.clamp(max=length - 1), after < length)


def flow_projection_reference(flow: Tensor, weight: "Tensor | None" = None, fill_holes: bool = True,
                              fill_from_below: bool = True) -> Tensor:
    """Reference for :func:`memc_ops.flow_projection`; see its docstring for the definition.

    Sources whose weight is not a positive finite number are skipped (the raw op's rule)."""
    batch, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    target_x, target_y = xs + flow[:, 0], ys + flow[:, 1]
    w = torch.ones_like(flow[:, 0]) if weight is None else weight[:, 0]
    usable = (
        (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
        & (w > 0) & torch.isfinite(w)
    )
    # Unused sources get harmless stand-ins so that indices stay in range and gradients finite.
    zero = torch.zeros_like(w)
    w = torch.where(usable, w, zero)
    safe_flow = torch.where(usable.unsqueeze(1), flow, torch.zeros_like(flow))
    # Clamped as the kernels do: in float16 a target just below W - 1 can round up to W.
    x0 = torch.where(usable, target_x, zero).detach().floor().long().clamp(max=width - 1)
    y0 = torch.where(usable, target_y, zero).detach().floor().long().clamp(max=height - 1)
    x1, y1 = (x0 + 1).clamp(max=width - 1), (y0 + 1).clamp(max=height - 1)
    values = torch.cat([-safe_flow * w.unsqueeze(1), w.unsqueeze(1)], 1).reshape(batch, 3, height * width)
    sums = torch.zeros_like(values)
    for rows in (y0, y1):
        for cols in (x0, x1):
            index = (rows * width + cols).reshape(batch, 1, height * width).expand(batch, 3, height * width)
            sums = sums.scatter_add(2, index, values)
    sums = sums.reshape(batch, 3, height, width)
    total = sums[:, 2:]
    received = total > 0
    average = torch.where(received, sums[:, :2] / torch.where(received, total, torch.ones_like(total)), 0)
    if not fill_holes:
        return average
    received = received[:, 0]
    filled = torch.zeros_like(average)
    directions = torch.zeros_like(total)
    for dim in (-1, -2):
        before, after = _nearest_received(received, dim)
        # Along a column, "after" is the neighbour below: left out in the released fill.
        for index, exists in (before, after) if dim == -1 or fill_from_below else (before,):
            if dim == -1:
                gather_index = (torch.arange(height, device=flow.device).view(1, height, 1) * width + index)
            else:
                gather_index = index * width + torch.arange(width, device=flow.device).view(1, 1, width)
            gather_index = gather_index.reshape(batch, 1, height * width).expand(batch, 2, height * width)
            neighbour = average.reshape(batch, 2, height * width).gather(2, gather_index).reshape(average.shape)
            filled = filled + torch.where(exists.unsqueeze(1), neighbour, 0)
            directions = directions + exists.unsqueeze(1).to(total.dtype)
    filled = torch.where(directions > 0, filled / directions.clamp(min=1), 0)
    return torch.where(received.unsqueeze(1), average, filled)
