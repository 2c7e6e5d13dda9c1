"""SPyNet (Ranjan and Black, "Optical Flow Estimation using a Spatial Pyramid Network", CVPR
2017) as MEMC-Net_s uses it: a coarse-to-fine pyramid of small CNNs, each refining the upsampled
flow of the level below from the first frame, the second frame warped by that flow, and the flow.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SPyNet"]

# The released preprocessing, kept because the released weights were trained with it: it reads
# channel 0 as blue (ImageNet mean 0.406, std 0.225) and channel 2 as red, then reverses the
# channel order. MEMC-Net feeds RGB, so red is normalised with blue's statistics and vice versa.
_MEAN = (0.406, 0.456, 0.485)
_STD = (0.225, 0.224, 0.229)

_LEVELS = 6
_COARSEST_SIZE = 32  # halve while either side exceeds this, at most _LEVELS - 1 times


def _level() -> nn.Sequential:
    channels = (8, 32, 64, 32, 16, 2)
    layers = []
    for index, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Conv2d(c_in, c_out, 7, 1, 3))
        if index < len(channels) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _backward_warp(image: Tensor, flow: Tensor) -> Tensor:
    """Samples ``image`` at x + flow(x), bilinearly, zeros outside (grid_sample, corners aligned
    as in the PyTorch of the released code)."""
    _, _, height, width = image.shape
    ys = torch.linspace(-1.0, 1.0, height, device=image.device, dtype=flow.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=image.device, dtype=flow.dtype)
    grid_x = xs.view(1, 1, width) + flow[:, 0] / max((width - 1) / 2.0, 0.5)
    grid_y = ys.view(1, height, 1) + flow[:, 1] / max((height - 1) / 2.0, 0.5)
    grid = torch.stack((grid_x, grid_y), dim=3).to(image.dtype)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


class SPyNet(nn.Module):
    """SPyNet: ``forward(first, second)`` takes two (B, 3, H, W) RGB frames in [0, 1], any size
    (at least 2 x 2 at the coarsest level), and returns (B, 2, H, W), the flow in pixels from
    ``first`` to ``second`` (channel 0 horizontal).

    Levels: the frames are average-pooled by 2 while either side exceeds 32 pixels, at most five
    times; the coarsest level uses ``levels[0]`` and each finer level the next one, so small
    frames use only the first few levels (as released). At each level the flow from below is
    upsampled x2 (bilinear, values doubled, a replicated row/column where the size is odd) and
    refined by a residual.
    """

    size_multiple = 1

    def __init__(self):
        super().__init__()
        self.levels = nn.ModuleList(_level() for _ in range(_LEVELS))
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def _preprocess(self, frame: Tensor) -> Tensor:
        return ((frame - self.mean.to(frame.dtype)) / self.std.to(frame.dtype)).flip(1)

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        firsts = [self._preprocess(first)]
        seconds = [self._preprocess(second)]
        for _ in range(_LEVELS - 1):
            if firsts[0].shape[2] > _COARSEST_SIZE or firsts[0].shape[3] > _COARSEST_SIZE:
                firsts.insert(0, F.avg_pool2d(firsts[0], 2, 2))
                seconds.insert(0, F.avg_pool2d(seconds[0], 2, 2))

        # Upsampling the released all-zero start is the same as starting from zeros here.
        batch, _, height, width = firsts[0].shape
        flow = firsts[0].new_zeros(batch, 2, height, width)
        for index, (image0, image1) in enumerate(zip(firsts, seconds)):
            if index > 0:
                flow = 2.0 * F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=True)
                pad_bottom = image0.shape[2] - flow.shape[2]
                pad_right = image0.shape[3] - flow.shape[3]
                if pad_bottom or pad_right:
                    flow = F.pad(flow, (0, pad_right, 0, pad_bottom), mode="replicate")
            residual_input = torch.cat((image0, _backward_warp(image1, flow), flow), 1)
            flow = flow + self.levels[index](residual_input)
        return flow
