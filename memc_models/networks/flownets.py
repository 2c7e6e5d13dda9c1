"""FlowNetS without batch normalisation (Dosovitskiy et al., "FlowNet", ICCV 2015), MEMC-Net's
motion estimator.

The module layout and names follow the widely used PyTorch port of FlowNetS (``conv1`` ...
``conv6_1`` and ``deconv5`` ... ``deconv2`` as ``Sequential(conv, LeakyReLU)``), so a FlowNetS
checkpoint of that port loads with ``FlowNetS().load_state_dict(...)`` unchanged.
"""

import torch
from torch import Tensor, nn

__all__ = ["FlowNetS"]


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2),
        nn.LeakyReLU(0.1, inplace=True),
    )


def _deconv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1),
        nn.LeakyReLU(0.1, inplace=True),
    )


def _predict_flow(in_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, 2, 3, 1, 1, bias=False)


def _upsample_flow() -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False)


class FlowNetS(nn.Module):
    """FlowNetS: optical flow from two stacked frames.

    ``forward(frames)`` takes (B, 6, H, W), the first and the second frame concatenated along the
    channels (MEMC-Net feeds RGB in [0, 1], without normalisation), with H and W multiples of 64
    (six stride-2 stages). It returns (B, 2, H/4, W/4): the flow from the first frame to the
    second in units of 1/20 pixel at quarter resolution (FlowNetS is trained on flow divided by
    20; the caller multiplies by 20 and upsamples).
    """

    size_multiple = 64

    def __init__(self):
        super().__init__()
        self.conv1 = _conv(6, 64, kernel_size=7, stride=2)
        self.conv2 = _conv(64, 128, kernel_size=5, stride=2)
        self.conv3 = _conv(128, 256, kernel_size=5, stride=2)
        self.conv3_1 = _conv(256, 256)
        self.conv4 = _conv(256, 512, stride=2)
        self.conv4_1 = _conv(512, 512)
        self.conv5 = _conv(512, 512, stride=2)
        self.conv5_1 = _conv(512, 512)
        self.conv6 = _conv(512, 1024, stride=2)
        self.conv6_1 = _conv(1024, 1024)

        # Decoder inputs: the encoder features + the previous deconvolution + the upsampled flow.
        self.deconv5 = _deconv(1024, 512)
        self.deconv4 = _deconv(512 + 512 + 2, 256)
        self.deconv3 = _deconv(512 + 256 + 2, 128)
        self.deconv2 = _deconv(256 + 128 + 2, 64)

        self.predict_flow6 = _predict_flow(1024)
        self.predict_flow5 = _predict_flow(512 + 512 + 2)
        self.predict_flow4 = _predict_flow(512 + 256 + 2)
        self.predict_flow3 = _predict_flow(256 + 128 + 2)
        self.predict_flow2 = _predict_flow(128 + 64 + 2)

        self.upsampled_flow6_to_5 = _upsample_flow()
        self.upsampled_flow5_to_4 = _upsample_flow()
        self.upsampled_flow4_to_3 = _upsample_flow()
        self.upsampled_flow3_to_2 = _upsample_flow()

        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                # The released initialisation (std 0.02 / (k*k*out)): tiny, so that an untrained
                # FlowNetS predicts almost no motion.
                fan = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, 0.02 / fan)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, frames: Tensor) -> Tensor:
        out_conv2 = self.conv2(self.conv1(frames))
        out_conv3 = self.conv3_1(self.conv3(out_conv2))
        out_conv4 = self.conv4_1(self.conv4(out_conv3))
        out_conv5 = self.conv5_1(self.conv5(out_conv4))
        out_conv6 = self.conv6_1(self.conv6(out_conv5))

        flow6 = self.predict_flow6(out_conv6)
        concat5 = torch.cat((out_conv5, self.deconv5(out_conv6), self.upsampled_flow6_to_5(flow6)), 1)
        flow5 = self.predict_flow5(concat5)
        concat4 = torch.cat((out_conv4, self.deconv4(concat5), self.upsampled_flow5_to_4(flow5)), 1)
        flow4 = self.predict_flow4(concat4)
        concat3 = torch.cat((out_conv3, self.deconv3(concat4), self.upsampled_flow4_to_3(flow4)), 1)
        flow3 = self.predict_flow3(concat3)
        concat2 = torch.cat((out_conv2, self.deconv2(concat3), self.upsampled_flow3_to_2(flow3)), 1)
        return self.predict_flow2(concat2)
