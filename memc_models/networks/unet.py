"""The kernel and mask estimation networks of MEMC-Net: a U-Net with five max-pooling stages,
bilinear upsampling and skips that are added (not concatenated), followed by two small heads,
one per input frame."""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvBlock", "UNet", "TwoHeadUNet"]


class ConvBlock(nn.Module):
    """3x3 convolutions through ``channels`` (each followed by ReLU), then optional batch norm
    (MEMC-Net applies it after the ReLU)."""

    def __init__(self, channels: Sequence[int], batch_norm: bool):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, 1, 1) for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.norm: Optional[nn.BatchNorm2d] = nn.BatchNorm2d(channels[-1]) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        if self.norm is not None:
            x = self.norm(x)
        return x


class UNet(nn.Module):
    """The U-Net trunk: (B, in_channels, H, W) -> (B, 16, H, W), H and W multiples of 32.

    Each encoder block's output is kept as a skip and max-pooled by 2; after the middle block,
    each decoder block is preceded by bilinear x2 upsampling plus the matching skip. Widths:

    * ``thin=False`` (MEMC-Net, MEMC-Net*): two or three convolutions per block, 32 -> 512
      channels; batch norm (when enabled) closes every block except the last.
    * ``thin=True`` (MEMC-Net_s): one convolution per block, 16 -> 512 channels; batch norm closes
      every block except the middle one.
    """

    size_multiple = 32
    out_channels = 16

    def __init__(self, in_channels: int, thin: bool = False, batch_norm: bool = True):
        super().__init__()
        if thin:
            encoder = [(in_channels, 16, 32), (32, 64), (64, 128), (128, 256), (256, 512)]
            middle = (512, 512)
            decoder = [(512, 256), (256, 128), (128, 64), (64, 32), (32, 16)]
            middle_norm, last_norm = False, True
        else:
            encoder = [(in_channels, 32, 32, 32), (32, 64, 64), (64, 128, 128), (128, 256, 256), (256, 512, 512)]
            middle = (512, 512, 512, 512)
            decoder = [(512, 256, 256), (256, 128, 128), (128, 64, 64), (64, 32, 32), (32, 16)]
            middle_norm, last_norm = True, False
        self.encoder = nn.ModuleList(ConvBlock(c, batch_norm) for c in encoder)
        self.middle = ConvBlock(middle, batch_norm and middle_norm)
        self.decoder = nn.ModuleList(
            ConvBlock(c, batch_norm and (last_norm or i < len(decoder) - 1)) for i, c in enumerate(decoder)
        )

    def blocks(self) -> Tuple[ConvBlock, ...]:
        """All blocks in the order they run: encoder, middle, decoder."""
        return (*self.encoder, self.middle, *self.decoder)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.middle(x)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True) + skip
            x = block(x)
        return x


class _Head(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.hidden = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.output = nn.Conv2d(in_channels, out_channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(F.relu(self.hidden(x)))


class TwoHeadUNet(nn.Module):
    """``forward(frame0, frame1)`` -> one (B, out_channels, H, W) map per frame: the U-Net trunk
    on the two frames concatenated, then a conv-ReLU-conv head for each frame.

    ``heads=1`` keeps only the first head (MEMC-Net_VE's kernel network, whose one map is for
    the second frame, the neighbour warped onto the first); ``forward`` then returns a 1-tuple."""

    size_multiple = UNet.size_multiple

    def __init__(self, out_channels: int, thin: bool = False, batch_norm: bool = True, in_channels: int = 6,
                 heads: int = 2):
        super().__init__()
        if heads not in (1, 2):
            raise ValueError(f"heads must be 1 or 2; got {heads!r}")
        self.trunk = UNet(in_channels, thin=thin, batch_norm=batch_norm)
        self.heads = nn.ModuleList(_Head(UNet.out_channels, out_channels) for _ in range(heads))

    def forward(self, frame0: Tensor, frame1: Tensor) -> Tuple[Tensor, ...]:
        features = self.trunk(torch.cat((frame0, frame1), 1))
        return tuple(head(features) for head in self.heads)
