"""Context extraction of MEMC-Net*: the first convolution of ResNet-18 (7x7, 64 channels), run at
stride 1 and without batch norm or ReLU."""

import math

import torch
from torch import Tensor, nn

__all__ = ["ContextExtractor"]

# As released: mean 0.485 for all three channels and std 0.224 for blue (ImageNet's are
# (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225)); kept so that the released post-processing
# sees the features it was trained on.
_MEAN = (0.485, 0.485, 0.485)
_STD = (0.229, 0.224, 0.224)


class ContextExtractor(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 64, H, W) context features."""

    out_channels = 64

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, self.out_channels, 7, 1, 3, bias=False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        fan = self.conv.kernel_size[0] * self.conv.kernel_size[1] * self.conv.out_channels
        nn.init.normal_(self.conv.weight, 0.0, math.sqrt(2.0 / fan))

    def forward(self, frame: Tensor) -> Tensor:
        return self.conv((frame - self.mean.to(frame.dtype)) / self.std.to(frame.dtype))
