"""The sub-networks of MEMC-Net: motion estimation (FlowNetS, SPyNet), the kernel and mask
U-Nets, context extraction and post-processing."""

from .context import ContextExtractor
from .flownets import FlowNetS
from .postprocess import PostProcessNet, ResidualPostProcessNet
from .spynet import SPyNet
from .unet import ConvBlock, TwoHeadUNet, UNet

__all__ = [
    "ContextExtractor",
    "ConvBlock",
    "FlowNetS",
    "PostProcessNet",
    "ResidualPostProcessNet",
    "SPyNet",
    "TwoHeadUNet",
    "UNet",
]
