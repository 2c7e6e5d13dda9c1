"""Post-processing networks: they predict a residual that refines the blended frame from the
blended frame itself and everything that produced it (flows, kernels, masks, context)."""

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PostProcessNet", "ResidualPostProcessNet"]


class PostProcessNet(nn.Module):
    """MEMC-Net's post-processing: eight 3x3 convolutions, 64 channels, ReLU between them;
    (B, in_channels, H, W) -> (B, 3, H, W) residual."""

    def __init__(self, in_channels: int, features: int = 64, layers: int = 8):
        super().__init__()
        widths = [in_channels] + [features] * (layers - 1) + [3]
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, 1, 1) for c_in, c_out in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs[:-1]:
            x = F.relu(conv(x))
        return self.convs[-1](x)


class _ResidualBlock(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ResidualPostProcessNet(nn.Module):
    """MEMC-Net*'s EDSR-style post-processing (no batch norm, residual scale 1):
    ``tail(body_out(blocks(head(x))))``, with ``blocks`` ``residual_blocks`` x (conv-ReLU-conv + x).
    As released, no skip goes around the body. (B, in_channels, H, W) -> (B, 3, H, W) residual."""

    def __init__(self, in_channels: int, features: int = 128, residual_blocks: int = 10):
        super().__init__()
        self.head = nn.Conv2d(in_channels, features, 3, 1, 1)
        self.blocks = nn.Sequential(*(_ResidualBlock(features) for _ in range(residual_blocks)))
        self.body_out = nn.Conv2d(features, features, 3, 1, 1)
        self.tail = nn.Conv2d(features, 3, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(self.body_out(self.blocks(self.head(x))))
