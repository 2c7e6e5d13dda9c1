"""Interpolation quality metrics.

Metrics, on the output rounded to 8 bits and the 8-bit truth, both on 0..255:

* IE, as MEMC-Net's and DAIN's tables compute it: mean |output - truth| over pixels and colour
  channels.
* RMSE, Middlebury's interpolation error (Baker et al., IJCV 2011): the root of the mean over
  pixels of the squared length of the RGB difference vector.
* PSNR: 10 log10(255^2 / MSE), MSE over pixels and channels.
* SSIM (Wang et al. 2004): Gaussian window (sigma 1.5, 11 taps), K1 = 0.01, K2 = 0.03, over the
  windows that lie inside the frame, averaged over channels (scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
  Frames narrower or lower than the 11 x 11 window have no SSIM: the table shows n/a for them
  (a smaller window would give numbers that do not compare with published ones).
"""

from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["METRICS", "SSIM_WINDOW", "error_levels", "interpolation_error", "metrics", "psnr", "rmse", "ssim",
           "ssim_defined"]

METRICS = ("IE", "RMSE", "PSNR", "SSIM")


def _levels(frame: Tensor) -> Tensor:
    """(…, 3, H, W) in [0, 1] -> float64 8-bit levels 0..255 (rounded)."""
    return (frame.detach().double().clamp(0, 1) * 255.0).round()


def error_levels(output: Tensor, truth: Tensor) -> Tensor:
    """|output - truth| per pixel on 8-bit levels, averaged over the colour channels: (..., H, W)."""
    return (_levels(output) - _levels(truth)).abs().mean(-3)


def interpolation_error(output: Tensor, truth: Tensor) -> float:
    """Mean absolute difference of the 8-bit images over pixels and channels (MEMC-Net's IE)."""
    return float((_levels(output) - _levels(truth)).abs().mean())


def rmse(output: Tensor, truth: Tensor) -> float:
    """Middlebury's IE: sqrt(mean over pixels of |RGB difference|^2), on 0..255."""
    return float((_levels(output) - _levels(truth)).square().sum(-3).mean().sqrt())


def psnr(output: Tensor, truth: Tensor) -> float:
    """10 log10(255^2 / MSE) on 8-bit levels; inf for identical frames."""
    mse = float((_levels(output) - _levels(truth)).square().mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


SSIM_WINDOW = 11  # taps of SSIM's Gaussian window, in each direction


def _gaussian_window(sigma: float = 1.5, radius: int = SSIM_WINDOW // 2) -> Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim_defined(frame: Tensor) -> bool:
    """Whether SSIM's 11 x 11 window fits inside a (…, H, W) frame."""
    return min(frame.shape[-2:]) >= SSIM_WINDOW


def ssim(output: Tensor, truth: Tensor) -> float:
    """Mean SSIM over the channels of the 8-bit images (data range 255), valid windows only.

    Raises ValueError for frames smaller than the 11 x 11 window in either direction (as
    scikit-image does): SSIM is not defined for them.
    """
    if not ssim_defined(output):
        raise ValueError(f"ssim: frames of height {output.shape[-2]} and width {output.shape[-1]} are smaller than "
                         f"SSIM's {SSIM_WINDOW} x {SSIM_WINDOW} window")
    x, y = _levels(output), _levels(truth)
    if x.dim() == 3:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    channels = x.shape[1]
    g = _gaussian_window().to(x.device)
    taps = g.numel()

    def blur(image: Tensor) -> Tensor:  # separable, 'valid' windows
        image = F.conv2d(image, g.view(1, 1, 1, taps).expand(channels, 1, 1, taps), groups=channels)
        return F.conv2d(image, g.view(1, 1, taps, 1).expand(channels, 1, taps, 1), groups=channels)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def metrics(output: Tensor, truth: Tensor) -> Dict[str, float]:
    """IE, RMSE, PSNR and SSIM; SSIM is NaN (shown as n/a) when the frames are smaller than its window."""
    return {"IE": interpolation_error(output, truth), "RMSE": rmse(output, truth), "PSNR": psnr(output, truth),
            "SSIM": ssim(output, truth) if ssim_defined(output) else float("nan")}
