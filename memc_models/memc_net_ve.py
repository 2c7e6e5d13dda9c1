"""MEMC-Net_VE: the released 7-frame video enhancement variant of MEMC-Net (super-resolution,
denoising, deblocking; ``MEMC-Net_SR.pth``, ``MEMC-Net_DN.pth``, ``MEMC-Net_DB.pth``), on the
same parts as :class:`memc_models.MEMCNet`.

Super-resolution input convention (the authors' data, Vimeo90K ``sequences_blur``): the model
does not change the frame size. It takes the low-resolution frames already upsampled to the
output size with bicubic interpolation and restores the detail; use
:func:`memc_models.enhancement.bicubic_upsample` (or the same bicubic resize) before calling it.
"""

from typing import List, NamedTuple, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import memc_ops

from .memc_net import (_FLOWNETS_SCALE, _FLOWNETS_STRIDE, _centred_padding, _check_fits_model, _cropper,
                       _initialize_convs)
from .networks import ContextExtractor, FlowNetS, ResidualPostProcessNet, TwoHeadUNet

__all__ = ["MEMCNetVE", "MEMCNetVEOutput", "WINDOW", "memc_net_ve", "window_slots"]

#: The released model sees 7 frames: the centre and three neighbours on each side.
WINDOW = 7
_SIDE = WINDOW // 2


def window_slots(count: int, centre: int) -> List[int]:
    """Which of ``count`` frames (indices 0..count-1, the one to restore at ``centre``) fills each
    of the 7 slots (offsets -3..+3) of the released window.

    A slot whose frame exists takes it. At the ends of a clip the missing side is mirrored about
    the centre (offset -d takes frame centre + d, as video restorers pad at clip ends), and what
    is still missing takes the nearest existing frame on that side. With 3 to 7 frames every
    slot holds a real neighbour, never a copy of the centre (which would look like a perfectly
    aligned, perfectly clean neighbour to the network)."""
    if not 2 <= count - 1 <= WINDOW - 1:
        raise ValueError(f"the window must hold the centre frame and 2 to 6 neighbours (3 to 7 frames); "
                         f"got {count} frames")
    if not 0 <= centre < count:
        raise ValueError(f"centre must index one of the {count} frames (0 to {count - 1}); got {centre}")
    slots = []
    for offset in range(-_SIDE, _SIDE + 1):
        index = centre + offset
        if not 0 <= index < count:
            index = centre - offset  # mirrored about the centre
        if not 0 <= index < count:
            index = min(max(centre + offset, 0), count - 1)  # nearest frame on that side
        if index == centre and offset != 0:
            # One-sided windows of 3 frames: [c, n1, n2] with offset -3 mirrors to c + 3 (absent)
            # and clamps to c; take the farthest neighbour instead.
            index = 0 if centre == count - 1 else count - 1
        slots.append(index)
    return slots


class MEMCNetVEOutput(NamedTuple):
    """Everything :meth:`MEMCNetVE.forward` computes, cropped to the input size, per neighbour
    slot (the 6 slots at offsets -3, -2, -1, +1, +2, +3 from the centre).

    Attributes:
        frame: (B, 3, H, W) the restored centre frame.
        warped: six (B, 3, H, W) neighbours adaptively warped onto the centre.
        flows: six (B, 2, H, W) flows centre -> neighbour in pixels (what ``adaptive_warp`` uses).
        kernels: six (B, K*K, H, W) adaptive warping coefficients.
        slots: which input frame fills each of the 7 slots (see :func:`window_slots`).
    """

    frame: Tensor
    warped: Tuple[Tensor, ...]
    flows: Tuple[Tensor, ...]
    kernels: Tuple[Tensor, ...]
    slots: Tuple[int, ...]


class MEMCNetVE(nn.Module):
    """Motion-compensated video enhancement: the centre frame of a window restored from its
    neighbours (released as MEMC_Net_VE, 56,619,491 parameters).

    ``forward(frames, centre=None)`` with (B, T, 3, H, W) RGB frames in [0, 1] (or a sequence of
    T (B, 3, H, W) frames), T from 3 to 7, of any size, returns the (B, 3, H, W) restored frame
    ``frames[:, centre]``. For super-resolution the frames are the low-resolution frames
    bicubic-upsampled to the output size (the authors' data); for denoising and deblocking, the
    degraded frames themselves. The steps:

    1. The window is completed to the released 7 slots (:func:`window_slots`) and the frames are
       padded (edge replication, centred) to a multiple of 64 and the results cropped back.
    2. Motion: FlowNetS on (centre, neighbour) for every distinct neighbour, x20 and upsampled x4
       (bilinear, corners aligned): the flow from the centre to the neighbour, used directly
       (no projection, no halving).
    3. Kernels: the MEMC-Net kernel U-Net (batch norm) on (centre, neighbour), one K*K head.
    4. Warping: ``memc_ops.adaptive_warp`` of each neighbour, and of its ResNet-18 conv1
       context (detached, as released), onto the centre.
    5. Restoration: an EDSR-style network (10 residual blocks, 128 features) takes the 7 contexts
       (the centre's own, the neighbours' warped), the 6 flows, the 6 kernels and the 7 frames
       (the centre, the warped neighbours), in slot order, and its output is added to the
       centre frame.

    Use :func:`memc_net_ve` for the released architecture and
    :func:`memc_models.load_original_checkpoint` (variant ``"MEMC_Net_SR"``, ``"MEMC_Net_DN"``
    or ``"MEMC_Net_DB"``) for the released weights.
    """

    def __init__(self, kernel_size: int = 4):
        super().__init__()
        if kernel_size not in (2, 4, 6, 8):
            raise ValueError(f"kernel_size must be 2, 4, 6 or 8; got {kernel_size}")
        self.kernel_size = kernel_size
        taps = kernel_size * kernel_size
        self.flow_net = FlowNetS()
        self.kernel_net = TwoHeadUNet(taps, batch_norm=True, heads=1)
        self.context_net = ContextExtractor()
        neighbours = WINDOW - 1
        post_channels = WINDOW * (3 + ContextExtractor.out_channels) + neighbours * (2 + taps)
        self.post_net = ResidualPostProcessNet(post_channels)
        # As released: Kaiming for the kernel U-Net and the restoration network only.
        _initialize_convs((self.kernel_net, self.post_net), "kaiming")

    @property
    def size_multiple(self) -> int:
        """The frames are padded internally to a multiple of this."""
        return max(self.flow_net.size_multiple, self.kernel_net.size_multiple)

    def estimate_motion(self, centre: Tensor, neighbours: Tensor) -> Tensor:
        """Flows centre -> neighbour in pixels: centre (B, 3, H, W) repeated against neighbours
        (N*B, 3, H, W) -> (N*B, 2, H, W); H and W multiples of :attr:`size_multiple`."""
        centres = centre.repeat(neighbours.shape[0] // centre.shape[0], 1, 1, 1)
        flow = self.flow_net(torch.cat((centres, neighbours), 1))
        upsampled = F.interpolate(flow, scale_factor=float(_FLOWNETS_STRIDE), mode="bilinear", align_corners=True)
        return _FLOWNETS_SCALE * upsampled

    def forward(
        self,
        frames: Union[Tensor, Sequence[Tensor]],
        centre: Union[int, None] = None,
        *,
        return_intermediates: bool = False,
    ) -> Union[Tensor, MEMCNetVEOutput]:
        """Restores ``frames[:, centre]`` from its neighbours.

        Args:
            frames: (B, T, 3, H, W) RGB in [0, 1], or a sequence of T (B, 3, H, W) frames; T from
                3 to 7 (2 to 6 neighbours, fewer at the ends of a clip); on the model's device and
                in its parameters' dtype (any floating dtype under ``torch.autocast``).
            centre: which frame to restore (default T // 2, the middle of a full window).
            return_intermediates: return a :class:`MEMCNetVEOutput` rather than the frame alone.

        Returns:
            The (B, 3, H, W) restored frame, or a :class:`MEMCNetVEOutput`.
        """
        frames = _check_window(frames)
        count = frames.shape[1]
        if centre is None:
            centre = count // 2
        if isinstance(centre, bool) or not isinstance(centre, int):
            raise TypeError(f"centre must be an int index into the {count} frames; got {type(centre).__name__}")
        slots = window_slots(count, centre)
        _check_fits_model(self, frames)
        batch, _, _, height, width = frames.shape
        dtype = frames.dtype  # memc_ops run in the frames' dtype, also under autocast

        padding = _centred_padding(height, width, self.size_multiple)
        flat = frames.flatten(0, 1)
        if any(padding):
            flat = F.pad(flat, padding, mode="replicate")
        frames = flat.unflatten(0, (batch, count))

        # Each distinct neighbour is aligned once, however many slots it fills.
        distinct = sorted(set(slots) - {centre})
        target = frames[:, centre]
        neighbours = torch.cat([frames[:, i] for i in distinct], 0)  # (N*B, 3, H, W), neighbour-major
        flows = self.estimate_motion(target, neighbours).to(dtype)
        centres = target.repeat(len(distinct), 1, 1, 1)
        (kernels,) = self.kernel_net(centres, neighbours)
        kernels = kernels.to(dtype)
        warped = memc_ops.adaptive_warp(neighbours, flows, kernels)
        contexts = self.context_net(torch.cat((target, neighbours), 0)).to(dtype)
        centre_context, neighbour_contexts = contexts[:batch], contexts[batch:]
        warped_contexts = memc_ops.adaptive_warp(neighbour_contexts, flows, kernels).detach()

        def per_slot(tensor: Tensor) -> List[Tensor]:  # the 6 neighbour slots, in order
            chunks = tensor.chunk(len(distinct), 0)
            return [chunks[distinct.index(i)] for k, i in enumerate(slots) if k != _SIDE]

        slot_frames, slot_contexts = per_slot(warped), per_slot(warped_contexts)
        slot_frames.insert(_SIDE, target)
        slot_contexts.insert(_SIDE, centre_context)
        slot_flows, slot_kernels = per_slot(flows), per_slot(kernels)
        post_input = torch.cat((*slot_contexts, *slot_flows, *slot_kernels, *slot_frames), 1)
        frame = target + self.post_net(post_input)

        crop = _cropper(padding, height, width)
        if not return_intermediates:
            return crop(frame)
        slot_frames.pop(_SIDE)
        return MEMCNetVEOutput(
            frame=crop(frame),
            warped=tuple(crop(x) for x in slot_frames),
            flows=tuple(crop(x) for x in slot_flows),
            kernels=tuple(crop(x) for x in slot_kernels),
            slots=tuple(slots),
        )


def _check_window(frames: Union[Tensor, Sequence[Tensor]]) -> Tensor:
    """(B, T, 3, H, W) floating-point frames, from a tensor or a sequence of (B, 3, H, W)."""
    if not isinstance(frames, Tensor):
        if not isinstance(frames, (list, tuple)) or not all(isinstance(f, Tensor) for f in frames):
            raise TypeError(
                "frames must be a torch.Tensor of shape (B, T, 3, H, W) or a list of (B, 3, H, W) tensors; "
                f"got {type(frames).__name__}"
            )
        shapes = {(tuple(f.shape), f.dtype, f.device) for f in frames}
        if len(shapes) > 1:
            raise ValueError(f"the frames must all have one shape, dtype and device; "
                             f"got {sorted(str(s) for s in shapes)}")
        if any(f.dim() != 4 for f in frames):
            raise ValueError(f"each frame must have shape (B, 3, H, W); got {tuple(frames[0].shape)}")
        frames = torch.stack(frames, 1) if frames else torch.empty(0)
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must have shape (B, T, 3, H, W); got {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise TypeError(f"frames must be a floating-point tensor in [0, 1]; got {frames.dtype}")
    if frames.numel() == 0:
        raise ValueError(f"frames must not be empty (B, H and W at least 1); got shape {tuple(frames.shape)}")
    return frames


def memc_net_ve(kernel_size: int = 4) -> MEMCNetVE:
    """MEMC-Net_VE, the released enhancement architecture (super-resolution, denoising and
    deblocking share it): FlowNetS, one-head kernel U-Net with batch norm, context, EDSR-style
    restoration on 577 channels (56,619,491 parameters)."""
    return MEMCNetVE(kernel_size)
