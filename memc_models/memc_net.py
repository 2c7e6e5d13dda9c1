"""MEMC-Net, MEMC-Net_s and MEMC-Net* (Bao et al., TPAMI 2019) as one configurable model on
``memc_ops``: motion estimation, flow projection to time t, kernel and mask estimation, adaptive
warping, blending and post-processing."""

import dataclasses
import numbers
from typing import NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import memc_ops

from .networks import ContextExtractor, FlowNetS, PostProcessNet, ResidualPostProcessNet, SPyNet, TwoHeadUNet

__all__ = [
    "MEMCNet",
    "MEMCNetConfig",
    "MEMCNetOutput",
    "RELEASE_OPTIONS",
    "RUNTIME_OPTIONS",
    "memc_net",
    "memc_net_s",
    "memc_net_star",
    "release_padding",
]

# FlowNetS predicts flow divided by 20 at quarter resolution.
_FLOWNETS_SCALE = 20.0
_FLOWNETS_STRIDE = 4


def _runtime(default):
    """A :class:`MEMCNetConfig` field that changes what the model computes, not its parameters."""
    return dataclasses.field(default=default, metadata={"runtime": True})


@dataclasses.dataclass(frozen=True)
class MEMCNetConfig:
    """What distinguishes the variants.

    Attributes:
        kernel_size: K, the side of the adaptive warping window (K*K coefficients per pixel and
            frame; the released models use 4).
        flow_network: ``"flownets"`` (MEMC-Net, MEMC-Net*) or ``"spynet"`` (MEMC-Net_s).
        thin_unet: the thinner one-convolution-per-level kernel U-Net of MEMC-Net_s.
        batch_norm: batch norm in the U-Nets (MEMC-Net, MEMC-Net_s; not MEMC-Net*).
        masks: a mask U-Net whose two maps weight the warped frames; without it the warped frames
            are blended by time, (1 - t) and t.
        context: warp ResNet-18 conv1 features with the frames and post-process with the
            EDSR-style network (MEMC-Net*); else the plain 8-layer post-processing network.
        init: ``"kaiming"`` or ``"xavier"`` (uniform) for the U-Nets and post-processing, as the
            released MEMC-Net / MEMC-Net_s and MEMC-Net* respectively.
        padding: how frames are padded before the networks run (replicating the edges; the result
            is cropped back). ``"minimal"``: centred, up to the next multiple of
            :attr:`MEMCNet.size_multiple`. ``"release"``: as the authors' evaluation script does,
            each side centred up to the next multiple of 128, or by 32 on both ends when it
            already is a multiple of 128 (so 640x480 becomes 704x512, where minimal padding gives
            640x512). The flows near the borders, and so the frames, depend on it.
        fill_from_below: whether the flow projection fills a hole from the nearest projected pixel
            below it too (``memc_ops.flow_projection``'s ``fill_from_below``). The released CUDA
            kernel never searches downward (a bug: ``while(down_temp = 0.0f && ...)`` assigns), so
            reproducing the released weights' frames needs ``False``.

    ``padding`` and ``fill_from_below`` change what the model computes, not its parameters: they
    are the :data:`RUNTIME_OPTIONS` (the fields declared with ``_runtime``), which
    :meth:`MEMCNet.configure` changes on a built model and a state dict records (see
    :class:`MEMCNet`).
    """

    kernel_size: int = 4
    flow_network: str = "flownets"
    thin_unet: bool = False
    batch_norm: bool = True
    masks: bool = True
    context: bool = False
    init: str = "kaiming"
    padding: str = _runtime("minimal")
    fill_from_below: bool = _runtime(True)

    def __post_init__(self):
        if self.kernel_size not in (2, 4, 6, 8):
            raise ValueError(f"kernel_size must be 2, 4, 6 or 8; got {self.kernel_size}")
        if self.flow_network not in ("flownets", "spynet"):
            raise ValueError(f"flow_network must be 'flownets' or 'spynet'; got {self.flow_network!r}")
        if self.init not in ("kaiming", "xavier"):
            raise ValueError(f"init must be 'kaiming' or 'xavier'; got {self.init!r}")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be 'minimal' or 'release'; got {self.padding!r}")
        if not isinstance(self.fill_from_below, bool):
            raise TypeError(f"fill_from_below must be True or False; got {self.fill_from_below!r}")


#: The options :meth:`MEMCNet.configure` changes on a built model and a state dict records: the
#: fields of :class:`MEMCNetConfig` declared with ``_runtime``, in their order.
RUNTIME_OPTIONS = tuple(field.name for field in dataclasses.fields(MEMCNetConfig) if field.metadata.get("runtime"))

#: The padding rules of :attr:`MEMCNetConfig.padding`.
PADDINGS = ("minimal", "release")

#: The configuration that reproduces the authors' released code at test time.
RELEASE_OPTIONS = {"padding": "release", "fill_from_below": False}


class MEMCNetOutput(NamedTuple):
    """Everything :meth:`MEMCNet.forward` computes, cropped to the input size; pairs are
    (for frame 0, for frame 1).

    Attributes:
        frame: (B, 3, H, W) the interpolated frame at time t (after post-processing).
        blended: (B, 3, H, W) the blend of the warped frames, before post-processing.
        warped: two (B, 3, H, W) frames adaptively warped to time t.
        flows: two (B, 2, H, W) projected flows: for each pixel at time t, the displacement in
            pixels to frame 0 and to frame 1 (what ``adaptive_warp`` uses).
        motion: two (B, 2, H, W) estimated flows, frame 0 -> frame 1 and frame 1 -> frame 0.
        kernels: two (B, K*K, H, W) adaptive warping coefficients.
        masks: two (B, 1, H, W) blending weights, or None for variants without a mask network.
    """

    frame: Tensor
    blended: Tensor
    warped: Tuple[Tensor, Tensor]
    flows: Tuple[Tensor, Tensor]
    motion: Tuple[Tensor, Tensor]
    kernels: Tuple[Tensor, Tensor]
    masks: Optional[Tuple[Tensor, Tensor]]


class MEMCNet(nn.Module):
    """Motion estimation and motion compensation driven video frame interpolation.

    ``forward(frame0, frame1, t=0.5)`` with two (B, 3, H, W) RGB frames in [0, 1] of any size
    returns the (B, 3, H, W) frame at time t in (0, 1). The steps:

    1. The frames are padded (edge replication, centred) by :attr:`MEMCNetConfig.padding`'s rule
       (:meth:`padding_for`): by default to a multiple of :attr:`size_multiple` (64 with
       FlowNetS, 32 with SPyNet), or as the released evaluation script pads; the results are
       cropped back.
    2. Motion: the flow network runs on (frame0, frame1) and (frame1, frame0); FlowNetS's output
       is multiplied by 20 and upsampled x4 (bilinear, corners aligned).
    3. Projection: ``memc_ops.flow_projection`` of t * flow(0->1) and (1-t) * flow(1->0) gives,
       for each pixel at time t, the displacement to frame 0 and to frame 1. The released models
       (t = 0.5) halve the flows: the same thing at the middle frame.
    4. Kernels: a U-Net on both frames with two K*K-channel heads, one per frame.
    5. Warping: ``memc_ops.adaptive_warp`` of each frame with its projected flow and kernels.
    6. Blending: with masks, 0.5 + mask_head (no sigmoid, not normalised, as released)
       weights each warped frame; without, the weights are (1 - t) and t (the released average
       at t = 0.5).
    7. Post-processing: a residual predicted from the blend, both flows, both kernels, both masks
       (without a mask network the first coefficient of frame 0's kernel, twice, as released) and,
       with context, both warped context maps (detached, as released), is added to the blend.

    Flow projection fills holes from the nearest projected pixels when no gradient flows through
    the projection and leaves them zero otherwise, as released (``fill_holes=None``); pass
    ``fill_holes=True`` or ``False`` to choose. Whether the fill also looks below a hole is
    :attr:`MEMCNetConfig.fill_from_below` (the released kernel does not). ``return_intermediates=True`` returns a
    :class:`MEMCNetOutput` instead of the frame alone.

    Use :func:`memc_net`, :func:`memc_net_s` and :func:`memc_net_star` for the released
    variants, and :func:`memc_models.load_original_checkpoint` for the released weights.

    ``state_dict()`` records the :data:`RUNTIME_OPTIONS` (:attr:`MEMCNetConfig.padding`,
    :attr:`MEMCNetConfig.fill_from_below`) in the state dict's metadata (where PyTorch keeps each
    module's version; ``torch.save`` and ``torch.load(weights_only=True)`` keep it), and
    ``load_state_dict`` restores them, so a model saved and loaded again computes the same frames.
    State dicts without them (older ones, or rebuilt as plain dicts) leave the model's options as
    they are.
    """

    def __init__(self, config: MEMCNetConfig = MEMCNetConfig()):
        super().__init__()
        self.config = config
        taps = config.kernel_size * config.kernel_size
        self.flow_net = FlowNetS() if config.flow_network == "flownets" else SPyNet()
        self.kernel_net = TwoHeadUNet(taps, thin=config.thin_unet, batch_norm=config.batch_norm)
        self.mask_net = TwoHeadUNet(1, thin=config.thin_unet, batch_norm=config.batch_norm) if config.masks else None
        self.context_net = ContextExtractor() if config.context else None

        post_channels = 3 + 2 * 2 + 2 * taps + 2  # blend, flows, kernels, masks
        if config.context:
            self.post_net = ResidualPostProcessNet(post_channels + 2 * ContextExtractor.out_channels)
        else:
            self.post_net = PostProcessNet(post_channels)
        self._initialize(config.init)
        # PyTorch >= 2.5 names this register_state_dict_post_hook; 2.4 has only the private name.
        self._register_state_dict_hook(_record_options)

    def _initialize(self, scheme: str) -> None:
        # The released models initialise these sub-networks; the flow network and the context
        # extractor keep their own initialisation.
        _initialize_convs((self.kernel_net, self.mask_net, self.post_net), scheme)

    @property
    def size_multiple(self) -> int:
        """The networks need frames whose sides are multiples of this."""
        return max(self.flow_net.size_multiple, self.kernel_net.size_multiple)

    def configure(self, **options) -> "MEMCNet":
        """Sets the options that change what the model computes but not its parameters, by name:
        the :data:`RUNTIME_OPTIONS` (:attr:`MEMCNetConfig.padding`,
        :attr:`MEMCNetConfig.fill_from_below`); None keeps one as it is. Returns the model.
        ``model.configure(**memc_models.RELEASE_OPTIONS)`` computes as the authors' released code
        does. Another name is a TypeError (the other fields shape the parameters: build another
        model for them)."""
        for name in options:
            if name not in RUNTIME_OPTIONS:
                fields = {field.name for field in dataclasses.fields(self.config)}
                built = " (it shapes the parameters: build another model)" if name in fields else ""
                raise TypeError(f"configure() takes {' and '.join(RUNTIME_OPTIONS)}; got {name!r}{built}")
        changes = {name: value for name, value in options.items() if value is not None}
        self.config = dataclasses.replace(self.config, **changes)
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        options = local_metadata.get(_OPTIONS_METADATA)
        if isinstance(options, dict):
            self.configure(**{name: options[name] for name in RUNTIME_OPTIONS if name in options})
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def padding_for(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """(left, right, top, bottom): the edge replication applied to frames of this size."""
        if self.config.padding == "release":
            return release_padding(height, width)
        return _centred_padding(height, width, self.size_multiple)

    def _check_fits_model(self, frame: Tensor) -> None:
        _check_fits_model(self, frame)

    def estimate_motion(self, frame0: Tensor, frame1: Tensor) -> Tuple[Tensor, Tensor]:
        """Flows frame0 -> frame1 and frame1 -> frame0 in pixels, (B, 2, H, W) each; H and W
        multiples of :attr:`size_multiple`. Both directions run as one batch."""
        firsts = torch.cat((frame0, frame1), 0)
        seconds = torch.cat((frame1, frame0), 0)
        if isinstance(self.flow_net, FlowNetS):
            flow = self.flow_net(torch.cat((firsts, seconds), 1))
            flow = _FLOWNETS_SCALE * F.interpolate(
                flow, scale_factor=float(_FLOWNETS_STRIDE), mode="bilinear", align_corners=True
            )
        else:
            flow = self.flow_net(firsts, seconds)
        return flow.chunk(2, 0)

    def forward(
        self,
        frame0: Tensor,
        frame1: Tensor,
        t: Union[float, Tensor] = 0.5,
        *,
        fill_holes: Optional[bool] = None,
        return_intermediates: bool = False,
    ) -> Union[Tensor, MEMCNetOutput]:
        """Interpolates the frame at time ``t`` between ``frame0`` (t = 0) and ``frame1`` (t = 1).

        Args:
            frame0, frame1: (B, 3, H, W) RGB frames in [0, 1], same shape, dtype and device, on
                the model's device and in its parameters' dtype (any floating dtype under
                ``torch.autocast``). Frames are not cast silently: a dtype that differs from the
                model's is a ``TypeError`` saying to convert one or the other.
            t: time in (0, 1): a float, or a tensor of one time or B times (one per sample).
            fill_holes: fill the holes of the projected flows (None: only when no gradient flows
                through them, as released).
            return_intermediates: return a :class:`MEMCNetOutput` rather than the frame alone.

        Returns:
            The (B, 3, H, W) interpolated frame, or a :class:`MEMCNetOutput`.
        """
        _check_frames(frame0, frame1)
        self._check_fits_model(frame0)
        batch, _, height, width = frame0.shape
        t = _check_time(t, batch, frame0)

        padding = self.padding_for(height, width)
        if any(padding):
            frame0 = F.pad(frame0, padding, mode="replicate")
            frame1 = F.pad(frame1, padding, mode="replicate")
        frames = torch.cat((frame0, frame1), 0)
        dtype = frame0.dtype  # memc_ops run in the frames' dtype, also under autocast

        motion = self.estimate_motion(frame0, frame1)
        scaled = torch.cat((t * motion[0], (1.0 - t) * motion[1]), 0).to(dtype)
        if fill_holes is None:
            fill_holes = not scaled.requires_grad
        flows = memc_ops.flow_projection(scaled, fill_holes=fill_holes, fill_from_below=self.config.fill_from_below)

        kernels = self.kernel_net(frame0, frame1)
        kernel = torch.cat(kernels, 0).to(dtype)
        warped = memc_ops.adaptive_warp(frames, flows, kernel).chunk(2, 0)

        if self.mask_net is not None:
            masks = tuple(0.5 + mask for mask in self.mask_net(frame0, frame1))
            blended = masks[0] * warped[0] + masks[1] * warped[1]
            mask_channels = masks
        else:
            masks = None
            blended = (1.0 - t) * warped[0] + t * warped[1]
            mask_channels = (kernels[0][:, :1], kernels[0][:, :1])

        flows = flows.chunk(2, 0)
        post_input = [blended, *flows, *kernels, *mask_channels]
        if self.context_net is not None:
            context = self.context_net(frames).to(dtype)
            post_input += memc_ops.adaptive_warp(context, torch.cat(flows, 0), kernel).detach().chunk(2, 0)
        frame = blended + self.post_net(torch.cat(post_input, 1))

        crop = _cropper(padding, height, width)
        if not return_intermediates:
            return crop(frame)
        pair = lambda tensors: tuple(crop(x) for x in tensors)  # noqa: E731
        return MEMCNetOutput(
            frame=crop(frame),
            blended=crop(blended),
            warped=pair(warped),
            flows=pair(flows),
            motion=pair(motion),
            kernels=pair(kernels),
            masks=None if masks is None else pair(masks),
        )


# The state dict's metadata entry for the options that change the computation, not the weights.
_OPTIONS_METADATA = "memc_options"


def _record_options(model: "MEMCNet", state_dict, prefix: str, local_metadata: dict) -> None:
    local_metadata[_OPTIONS_METADATA] = {name: getattr(model.config, name) for name in RUNTIME_OPTIONS}


def _initialize_convs(nets, scheme: str) -> None:
    """Kaiming or Xavier (uniform) weights and zero biases for the convolutions of ``nets``
    (None entries skipped), as the released models initialise their U-Nets and post-processing."""
    for net in nets:
        if net is None:
            continue
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                if scheme == "kaiming":
                    nn.init.kaiming_uniform_(module.weight, a=0, mode="fan_in")
                else:
                    nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def _check_fits_model(model: nn.Module, frame: Tensor) -> None:
    """``frame`` is on ``model``'s device and, unless under autocast, in its parameters' dtype."""
    parameter = next(model.parameters())
    if frame.device != parameter.device:
        raise ValueError(
            f"the frames are on {frame.device} but the model is on {parameter.device}; "
            f"move the frames (frame.to({str(parameter.device)!r})) or the model (model.to({str(frame.device)!r}))"
        )
    # Under autocast the layers take mixed dtypes; otherwise a cast here would hide a model
    # left in float32 for half frames (or the reverse), so the caller decides.
    if frame.dtype != parameter.dtype and not torch.is_autocast_enabled(frame.device.type):
        raise TypeError(
            f"the frames are {frame.dtype} but the model's parameters are {parameter.dtype}; convert the "
            f"frames (frame.to({parameter.dtype})) or the model (model.to({frame.dtype})), or run under torch.autocast"
        )


def _check_frames(frame0: Tensor, frame1: Tensor) -> None:
    """(B, 3, H, W) floating-point tensors of one shape, dtype and device, none of B, H, W zero."""
    for name, frame in (("frame0", frame0), ("frame1", frame1)):
        if not isinstance(frame, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, 3, H, W); got {type(frame).__name__}")
        if frame.dim() != 4 or frame.shape[1] != 3:
            raise ValueError(f"{name} must have shape (B, 3, H, W); got {tuple(frame.shape)}")
        if not frame.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor in [0, 1]; got {frame.dtype}")
    if frame0.shape != frame1.shape or frame0.dtype != frame1.dtype or frame0.device != frame1.device:
        raise ValueError(
            f"frame1 must match frame0 {tuple(frame0.shape)} {frame0.dtype} on {frame0.device}; "
            f"got {tuple(frame1.shape)} {frame1.dtype} on {frame1.device}"
        )
    if frame0.numel() == 0:
        raise ValueError(f"frames must not be empty (B, H and W at least 1); got shape {tuple(frame0.shape)}")


def _check_time(t: Union[float, Tensor], batch: int, like: Tensor) -> Union[float, Tensor]:
    """``t`` as a float, or as a (B, 1, 1, 1) or (1, 1, 1, 1) tensor of ``like``'s dtype and device."""
    if isinstance(t, Tensor):
        if t.numel() not in (1, batch):
            raise ValueError(f"t must be a float or a tensor of 1 or {batch} times (one per sample); "
                             f"got shape {tuple(t.shape)}")
        if not bool(((t > 0) & (t < 1)).all()):
            raise ValueError("every t must lie in (0, 1)")
        return t.to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1, 1)
    if not isinstance(t, numbers.Real):
        raise TypeError(f"t must be a float or a tensor of times; got {type(t).__name__}")
    t = float(t)
    if not 0.0 < t < 1.0:
        raise ValueError(f"t must lie in (0, 1); got {t}")
    return t


def _centred_padding(height: int, width: int, multiple: int) -> Tuple[int, int, int, int]:
    """(left, right, top, bottom) replication padding up to a multiple, centred (the smaller half
    left and on top) as in the released evaluation script."""
    pad_h = -height % multiple
    pad_w = -width % multiple
    return (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)


def _release_side_padding(size: int) -> Tuple[int, int]:
    # demo_MiddleBury.py: up to the next multiple of 128 ("more than necessary"), centred; a side
    # that already is a multiple of 128 still gets 32 on both ends.
    if size % 128 == 0:
        return 32, 32
    total = -size % 128
    return total // 2, total - total // 2


def release_padding(height: int, width: int) -> Tuple[int, int, int, int]:
    """(left, right, top, bottom): how the authors' evaluation script pads a frame of this size.
    Each side is padded, centred, to the next multiple of 128, or by 32 on both ends when it
    already is one: 640x480 -> 704x512, 640x512 -> 704x576."""
    return (*_release_side_padding(width), *_release_side_padding(height))


def _cropper(padding: Tuple[int, int, int, int], height: int, width: int):
    left, _, top, _ = padding
    return lambda x: x[..., top : top + height, left : left + width]


def memc_net(kernel_size: int = 4) -> MEMCNet:
    """MEMC-Net: FlowNetS motion, kernel and mask U-Nets with batch norm, plain post-processing
    (67,260,469 parameters)."""
    return MEMCNet(MEMCNetConfig(kernel_size=kernel_size))


def memc_net_s(kernel_size: int = 4) -> MEMCNet:
    """MEMC-Net_s: SPyNet motion, a thin kernel U-Net, no masks (the warped frames are blended by
    time), plain post-processing (7,204,367 parameters)."""
    return MEMCNet(MEMCNetConfig(kernel_size=kernel_size, flow_network="spynet", thin_unet=True, masks=False))


def memc_net_star(kernel_size: int = 4) -> MEMCNet:
    """MEMC-Net*: MEMC-Net with context extraction and EDSR-style post-processing, U-Nets without
    batch norm, Xavier initialisation (70,312,501 parameters)."""
    return MEMCNet(MEMCNetConfig(kernel_size=kernel_size, batch_norm=False, context=True, init="xavier"))
