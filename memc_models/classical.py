"""The training-free motion path: "conventional MEMC" (Fig. 2a of the MEMC-Net paper) on memc_ops.

No weights: OpenCV's DIS estimator gives the optical flow in both directions, and everything per
pixel after it runs on ``memc_ops`` or vectorised tensor code, on the frames' device.

For two frames I0, I1 and a time t in (0, 1):

1. Motion: F01 and F10 by DIS (on the CPU, on grey 8-bit frames), at the working resolution: the
   frames' own up to ``max_flow_pixels`` (640x480 worth by default), above it the largest size of
   their aspect ratio within that many pixels (DIS's finest scale 0 there; its medium preset
   would otherwise stop at half). At 1080p this costs a fraction of full-resolution flow; on
   upscaled real frames (the only HD proxy with ground truth here) the error stayed within 1% of
   full-resolution flow's, lower on some sets, higher on others (README).
2. Occlusion by forward-backward consistency: a pixel x of frame 0 is occluded in frame 1 (or its
   flow is unreliable) when ``|F01(x) + F10(x + F01(x))|^2 > alpha (|F01|^2 + |F10(..)|^2) + beta``
   (Sundaram, Brox and Keutzer, ECCV 2010), or when x + F01(x) leaves the frame; likewise for
   frame 1.
3. Projection: ``memc_ops.flow_projection`` of t F01 and of (1 - t) F10, weighting the
   consistent sources far above the occluded ones: where two sources meet at time t, the one that
   stays visible in the other frame is the one in front. Where both frames see a pixel, its two
   projected flows, two estimates of one linear motion, are averaged.
4. Warping: each frame warped with its projected flow by ``memc_ops.bicubic_warp`` (adaptive
   warping with the per-pixel 4x4 bicubic coefficients (Keys, a = -0.5) that :func:`bicubic_kernel`
   gives, computed inside the op), or by ``memc_ops.adaptive_warp`` with plain bilinear weights.
5. Blending: the warped frames weighted by time, (1 - t) and t, times their visibility at time t:
   frame 0 counts only where some source of frame 0 landed (no hole in its projection) and where
   frame 1's sample is not one that frame 0 cannot see, and vice versa. Where neither frame
   explains a pixel, both warps (whose flows the projection filled from the nearest projected
   neighbours) are blended by time alone.
6. Self-ensemble over orientations: steps 1-5 run on the frames as given, mirrored left-right,
   upside down and rotated by 180 degrees, and each result is turned back. DIS's patch grid and
   pyramid fall differently on each, so their flow errors differ. Per pixel, the results are
   averaged with weights softmax(-disagreement / s), the disagreement being the mean |warp0 - warp1|
   over a 7x7 window (where both frames see the pixel; a fixed 0.1 elsewhere): an orientation
   whose two warps agree has found a motion that explains both frames. The ensemble is exactly
   mirror-symmetric, and on the shared Middlebury frames and a held-aside real video it lowered
   the interpolation error by 2-3% (README) at four times the cost; ``orientations=1`` skips it.

Above the working resolution, steps 2, 3 and the ensemble's disagreement run there (on bilinear
warps of the downscaled frames, which serve only the disagreement), and so do the weights: per
pixel, each orientation's ensemble weight (step 6) times the time-and-visibility weights of its
two warps (step 5), one weight per frame
and orientation, summing to 1. Only the projected flows (turned back to the frames' orientation)
and these weights are resized to the frames' size, where the full-size frames are warped (step
4) and accumulated with them into one frame: the same blend as resizing the visibility and
disagreement first, but for where the resampling falls (on the upscaled HD proxy the error was
the same or lower, README).

Two stages, for a pipeline: :meth:`ClassicalInterpolator.motion` (steps 1-2: DIS for every
orientation and both directions at once, CPU-bound) gives a :class:`PairMotion`, from which
:meth:`ClassicalInterpolator.render` gives the frames at any times (steps 3-6, on the frames'
device). Every time from one motion is bit-for-bit what that time alone gives.
"""

import dataclasses
import math
import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import memc_ops
from memc_ops import bicubic_kernel  # public here too: the kernel of the warps this path makes
from memc_ops.reference import warp_valid

from .memc_net import _check_frames, _check_time

__all__ = ["ClassicalConfig", "ClassicalInterpolator", "PairMotion", "working_size", "dis_flow", "dis_flows",
           "forward_backward_occlusion", "bicubic_kernel"]

_DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}
_DIS_MIN_SIZE = 16

# The self-ensemble's orientations as the image dimensions to flip: as given, mirrored left-right,
# upside down, rotated by 180 degrees. Each is its own inverse.
_ORIENTATIONS = ((), (3,), (2,), (2, 3))

# Disagreement assigned to pixels that only one frame (or neither) explains: there the two warps
# are not expected to agree, and every orientation should count about the same.
_UNSEEN_DISAGREEMENT = 0.1

# Frames are RGB in [0, 1]; values beyond this margin mean another scale (0..255, -1..1), which
# the 8-bit conversion for DIS would clip to a blank frame. Within it, a little overshoot (from a
# resampling filter, say) is accepted.
_RANGE_MARGIN = 0.5

#: A time: a float, or a tensor of one time or B times (one per sample).
Time = Union[float, Tensor]


@dataclasses.dataclass(frozen=True)
class ClassicalConfig:
    """Settings of the training-free path.

    Attributes:
        preset: DIS preset, ``"ultrafast"``, ``"fast"`` or ``"medium"`` (OpenCV's own presets).
        finest_scale: the pyramid level where DIS stops; 0 (full resolution) by default, None
            for the preset's own.
        kernel: the fixed warping kernel, ``"bicubic"`` or ``"bilinear"``.
        consistency_alpha, consistency_beta: the forward-backward test's relative and absolute
            tolerances (Sundaram et al.'s values).
        occluded_weight: projection weight of a source that fails the test (consistent ones: 1).
        orientations: how many orientations the self-ensemble runs: 4 (as given, mirrored
            left-right, upside down, rotated 180 degrees), 2 (the first two) or 1 (no ensemble).
        agreement_scale: s in the ensemble weights softmax(-disagreement / s), on [0, 1] levels.
        agreement_radius: the disagreement is averaged over a (2r + 1)^2 window.
        max_flow_pixels: frames with more pixels have their motion estimated, and projected, at
            the largest size of the same aspect ratio within this many pixels (the working
            resolution); the projected flows are then resized to the frames' size, and the frames
            warped and blended at their own. None: always at the frames' size.
    """

    preset: str = "medium"
    finest_scale: Optional[int] = 0
    kernel: str = "bicubic"
    consistency_alpha: float = 0.01
    consistency_beta: float = 0.5
    occluded_weight: float = 1e-3
    orientations: int = 4
    agreement_scale: float = 0.03
    agreement_radius: int = 3
    max_flow_pixels: Optional[int] = 640 * 480

    def __post_init__(self):
        if self.preset not in _DIS_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(_DIS_PRESETS)}; got {self.preset!r}")
        _check_finest_scale(self.finest_scale)
        if not (self.consistency_alpha >= 0 and self.consistency_beta >= 0):
            raise ValueError(
                "consistency_alpha and consistency_beta must be >= 0; "
                f"got {self.consistency_alpha} and {self.consistency_beta}"
            )
        if self.kernel not in ("bicubic", "bilinear"):
            raise ValueError(f"kernel must be 'bicubic' or 'bilinear'; got {self.kernel!r}")
        if not self.occluded_weight > 0:
            raise ValueError(f"occluded_weight must be positive; got {self.occluded_weight}")
        if self.orientations not in (1, 2, 4):
            raise ValueError(f"orientations must be 1, 2 or 4; got {self.orientations!r}")
        if not self.agreement_scale > 0:
            raise ValueError(f"agreement_scale must be positive; got {self.agreement_scale}")
        if not (isinstance(self.agreement_radius, int) and self.agreement_radius >= 0):
            raise ValueError(f"agreement_radius must be a non-negative integer; got {self.agreement_radius!r}")
        if self.max_flow_pixels is not None and not (
            isinstance(self.max_flow_pixels, numbers.Integral) and not isinstance(self.max_flow_pixels, bool)
            and self.max_flow_pixels >= 1
        ):
            raise ValueError(f"max_flow_pixels must be None or a positive integer; got {self.max_flow_pixels!r}")


def _check_finest_scale(finest_scale: Optional[int]) -> None:
    if finest_scale is not None and not (
        isinstance(finest_scale, numbers.Integral) and not isinstance(finest_scale, bool) and finest_scale >= 0
    ):
        raise ValueError(f"finest_scale must be None or an integer >= 0 (0: full resolution); got {finest_scale!r}")


def _grey_uint8(frames: Tensor) -> np.ndarray:
    """(B, 3, H, W) RGB in [0, 1] -> (B, H, W) uint8 luma (BT.601, as OpenCV's RGB2GRAY)."""
    luma = 0.299 * frames[:, 0] + 0.587 * frames[:, 1] + 0.114 * frames[:, 2]
    return (luma.float() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def dis_flow(frame0: Tensor, frame1: Tensor, preset: str = "medium", finest_scale: Optional[int] = 0) -> Tensor:
    """Optical flow frame0 -> frame1 by OpenCV's DIS, (B, 2, H, W) float32 on the frames' device.

    DIS runs on the CPU; its variational refinement is on in every preset. ``finest_scale`` is
    the pyramid level where DIS stops (0: full resolution; None: the preset's, 1 for "medium",
    which upsamples a half-resolution flow)."""
    return dis_flows([(frame0, frame1)], preset, finest_scale)[0]


def dis_flows(pairs: Sequence[Tuple[Tensor, Tensor]], preset: str = "medium",
              finest_scale: Optional[int] = 0) -> List[Tensor]:
    """:func:`dis_flow` of each (frame0, frame1) pair, computed concurrently: DIS releases the GIL,
    and separate images keep the CPU's cores busier than DIS's own threads do within one image.
    The flows are the same as computed one by one."""
    _check_finest_scale(finest_scale)
    greys = [(_grey_uint8(frame0), _grey_uint8(frame1)) for frame0, frame1 in pairs]
    return _grey_dis_flows(greys, preset, finest_scale, [frame0.device for frame0, _ in pairs])


def _grey_dis_flows(pairs: Sequence[Tuple[np.ndarray, np.ndarray]], preset: str, finest_scale: Optional[int],
                    devices: Sequence[torch.device]) -> List[Tensor]:
    """:func:`dis_flows` of pairs of (B, H, W) uint8 grey frames (:func:`_grey_uint8`), each flow
    (B, 2, H, W) on its device."""
    jobs, shapes = [], []
    for grey0, grey1 in pairs:
        height, width = grey0.shape[1:]
        # DIS refuses frames under about 12 pixels a side: pad small ones by repeating their
        # edges, and crop the flow back. (np.pad also copies a flipped view into a plain array.)
        pad = ((0, 0), (0, max(_DIS_MIN_SIZE - height, 0)), (0, max(_DIS_MIN_SIZE - width, 0)))
        grey0, grey1 = np.pad(grey0, pad, mode="edge"), np.pad(grey1, pad, mode="edge")
        jobs += list(zip(grey0, grey1))
        shapes.append((len(grey0), height, width))
    flows = iter(_dis_calc(jobs, preset, finest_scale))
    results = []
    for device, (batch, height, width) in zip(devices, shapes):
        stacked = np.stack([next(flows)[:height, :width] for _ in range(batch)])
        results.append(torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous().to(device))
    return results


def _dis_calc(jobs: Sequence[Tuple[np.ndarray, np.ndarray]], preset: str,
              finest_scale: Optional[int]) -> List[np.ndarray]:
    """DIS flow (H, W, 2) of each pair of grey uint8 images, on a thread pool (one DIS object per
    call: they are not thread-safe)."""
    import cv2

    def calc(job):
        dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
        if finest_scale is not None:
            dis.setFinestScale(int(finest_scale))
        return dis.calc(job[0], job[1], None)

    workers = min(len(jobs), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if workers <= 1:
        return [calc(job) for job in jobs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(calc, jobs))


def _bilinear_kernel(like: Tensor) -> Tensor:
    """adaptive_warp's kernel (B, 4, H, W) of ones, which makes its warp bilinear: one value seen
    through zero strides (the op takes any strides), not a fresh tensor the size of the frame."""
    return like.new_ones(1, 1, 1, 1).expand(like.shape[0], 4, like.shape[2], like.shape[3])


def _sample(image: Tensor, flow: Tensor) -> Tensor:
    """Bilinear backward warp through memc_ops (pixels whose target leaves the frame keep their own value)."""
    return memc_ops.adaptive_warp(image, flow, _bilinear_kernel(flow).to(image.dtype))


def forward_backward_occlusion(flow_0to1: Tensor, flow_1to0: Tensor, alpha: float = 0.01, beta: float = 0.5) -> Tensor:
    """(B, 1, H, W) float: 1 where a pixel of frame 0 fails the forward-backward test (or leaves
    the frame), 0 where its flow is confirmed by the flow back."""
    back = _sample(flow_1to0, flow_0to1)
    mismatch = (flow_0to1 + back).square().sum(1, keepdim=True)
    scale = flow_0to1.square().sum(1, keepdim=True) + back.square().sum(1, keepdim=True)
    occluded = (mismatch > alpha * scale + beta) | ~warp_valid(flow_0to1).unsqueeze(1)
    return occluded.to(flow_0to1.dtype)


def _coverage(flow: Tensor) -> Tensor:
    """(B, 1, H, W) bool: the pixels that receive a source when ``flow`` (source -> time t) is
    splatted to the four integer neighbours of each in-frame target, as flow_projection does."""
    batch, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    tx, ty = xs + flow[:, 0], ys + flow[:, 1]
    usable = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
    x0 = torch.where(usable, tx, 0).floor().long()
    y0 = torch.where(usable, ty, 0).floor().long()
    x1, y1 = (x0 + 1).clamp(max=width - 1), (y0 + 1).clamp(max=height - 1)
    counts = torch.zeros(batch, height * width, device=flow.device, dtype=flow.dtype)
    ones = usable.to(flow.dtype).reshape(batch, -1)
    for rows in (y0, y1):
        for cols in (x0, x1):
            counts.scatter_add_(1, (rows * width + cols).reshape(batch, -1), ones)
    return (counts > 0).view(batch, 1, height, width)


def _symmetrize(back: Tensor, t: Time, both: Tensor) -> Tensor:
    """Where a pixel at time t is seen by both frames (``both``, (B, 1, H, W) bool), its two
    projected flows are two estimates of one linear motion v: to frame 0 -t v, to frame 1
    (1 - t) v. Averaging the two estimates of v halves the variance of independent errors."""
    to0, to1 = back.chunk(2, 0)
    velocity = 0.5 * (to1 / (1.0 - t) - to0 / t)
    to0 = torch.where(both, -t * velocity, to0)
    to1 = torch.where(both, (1.0 - t) * velocity, to1)
    return torch.cat((to0, to1), 0)


@dataclasses.dataclass
class PairMotion:
    """One pair's motion, as :meth:`ClassicalInterpolator.motion` estimates it: everything the
    frames at any time t between the pair need besides the frames themselves.

    Attributes:
        size: the frames' (H, W).
        frames: (2B, 3, h, w) float32, frame 0's samples then frame 1's, at the working resolution
            (h, w): the frames themselves when no larger than ``max_flow_pixels``.
        flows: per orientation of the self-ensemble, (2B, 2, h, w) float32: F01 then F10, in
            pixels of the working resolution, in that orientation (frames flipped, see
            ``_ORIENTATIONS``).
        occluded: per orientation, (2B, 1, h, w) float32: 1 where the flow of frame 0 (then of
            frame 1) fails the forward-backward test.
    """

    size: Tuple[int, int]
    frames: Tensor
    flows: List[Tensor]
    occluded: List[Tensor]

    @property
    def working_size(self) -> Tuple[int, int]:
        return tuple(self.frames.shape[2:])


def working_size(height: int, width: int, max_pixels: Optional[int]) -> Tuple[int, int]:
    """The (h, w) where the motion of (height, width) frames is estimated: the frame size itself,
    or when it has more than ``max_pixels`` pixels, the largest size of the same aspect ratio
    within that many (at least 1 x 1)."""
    if max_pixels is None or height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    return max(int(height * scale), 1), max(int(width * scale), 1)


def _resize_flow(flow: Tensor, size: Tuple[int, int]) -> Tensor:
    """A flow field resampled (bilinearly) to ``size`` and its vectors scaled to that size's pixels.
    Scaled before it is resampled: bilinear resampling is linear, so the field is the same up to
    rounding, and at the working resolution the multiply touches a fraction of the pixels."""
    height, width = flow.shape[2:]
    scale = flow.new_tensor([size[1] / width, size[0] / height]).view(1, 2, 1, 1)
    return F.interpolate(flow * scale, size=size, mode="bilinear", align_corners=False)


def _resize(image: Tensor, size: Tuple[int, int]) -> Tensor:
    """``image`` resampled bilinearly to ``size`` (antialiased when shrinking)."""
    if tuple(image.shape[2:]) == tuple(size):
        return image
    shrinking = size[0] < image.shape[2] or size[1] < image.shape[3]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


class ClassicalInterpolator:
    """Training-free frame interpolation: DIS flow, flow projection, fixed-kernel adaptive warping,
    occlusion-aware blending (see the module docstring).

    ``interpolator(frame0, frame1, t)`` with (B, 3, H, W) RGB frames in [0, 1] returns the frame at
    time t; :meth:`interpolate` returns several times from one motion estimate, and
    :meth:`motion` and :meth:`render` are its two stages (for a pipeline that estimates the
    next pair's motion on the CPU while the frames of this one are rendered).

    Frames are floating-point tensors of one shape, dtype and device, as for
    :class:`memc_models.MEMCNet`: integer frames are a ``TypeError``, and values clearly outside
    [0, 1] (such as 0..255 or -1..1) a ``ValueError``. A time t is a float in (0, 1) or, as for
    MEMCNet, a tensor of one time or B times (one per sample).
    """

    def __init__(self, config: ClassicalConfig = ClassicalConfig()):
        self.config = config

    def __call__(self, frame0: Tensor, frame1: Tensor, t: Time = 0.5) -> Tensor:
        return self.interpolate(frame0, frame1, [t])[0]

    @torch.no_grad()
    def interpolate(self, frame0: Tensor, frame1: Tensor, times: Union[Time, Sequence[Time]]) -> List[Tensor]:
        """The frames at each time of ``times``, as a list of (B, 3, H, W) tensors in the frames'
        dtype, clamped to [0, 1]. Each time is a float in (0, 1) or a tensor of one time or B
        times (one per sample); a single time is taken as ``[time]``. The pair's motion is
        estimated once for all the times: each frame is bit-for-bit the one that time alone gives."""
        return self.render(frame0, frame1, self.motion(frame0, frame1), times)

    @torch.no_grad()
    def motion(self, frame0: Tensor, frame1: Tensor) -> PairMotion:
        """Stage 1 (steps 1 and 2), the pair's motion: DIS flows both ways in every orientation
        (all computed at once on a thread pool, on the CPU), at the working resolution, and the
        forward-backward occlusion (on the frames' device)."""
        _check_input_frames(frame0, frame1)
        cfg = self.config
        height, width = frame0.shape[2:]
        size = working_size(height, width, cfg.max_flow_pixels)
        small0, small1 = _resize(frame0.float(), size), _resize(frame1.float(), size)
        frames = torch.cat((small0, small1), 0)
        # Each frame made grey once, and flipped as such (luma is per pixel: the same bits as the
        # flipped frame's).
        grey0, grey1 = _grey_uint8(small0), _grey_uint8(small1)
        pairs = []
        for dims in _ORIENTATIONS[: cfg.orientations]:
            axes = tuple(dim - 1 for dim in dims)  # (B, H, W) arrays
            oriented0, oriented1 = np.flip(grey0, axes), np.flip(grey1, axes)
            pairs += [(oriented0, oriented1), (oriented1, oriented0)]
        flows = _grey_dis_flows(pairs, cfg.preset, cfg.finest_scale, [frame0.device] * len(pairs))
        motion = PairMotion((height, width), frames, [], [])
        for flow01, flow10 in zip(flows[0::2], flows[1::2]):
            both = torch.cat((flow01, flow10), 0)
            motion.flows.append(both)
            motion.occluded.append(forward_backward_occlusion(
                both, torch.cat((flow10, flow01), 0), cfg.consistency_alpha, cfg.consistency_beta))
        return motion

    @torch.no_grad()
    def render(self, frame0: Tensor, frame1: Tensor, motion: PairMotion,
               times: Union[Time, Sequence[Time]]) -> List[Tensor]:
        """Stage 2 (steps 3 to 6), on the frames' device: the frames at ``times`` (as for
        :meth:`interpolate`) from the pair's ``motion``, which :meth:`motion` estimated from these
        frames with this configuration."""
        _check_frames(frame0, frame1)
        if tuple(frame0.shape[2:]) != tuple(motion.size) or len(motion.flows) != self.config.orientations:
            raise ValueError(f"motion must be estimated from these frames with this configuration: it is for "
                             f"{motion.size[0]}x{motion.size[1]} frames in {len(motion.flows)} orientations; got "
                             f"{frame0.shape[2]}x{frame0.shape[3]} frames and {self.config.orientations} orientations")
        if isinstance(times, (numbers.Real, Tensor)):
            times = [times]
        # Times as floats or float32 tensors (the computation's dtype, whatever the frames').
        like = frame0.new_empty(0, dtype=torch.float32)
        times = [_check_time(t, frame0.shape[0], like) for t in times]
        cfg = self.config
        device = frame0.device
        small = motion.frames.to(device)
        orientations = list(zip(_ORIENTATIONS, (flow.to(device) for flow in motion.flows),
                                (occluded.to(device) for occluded in motion.occluded)))
        ensemble = cfg.orientations > 1
        if tuple(small.shape[2:]) != tuple(frame0.shape[2:]):
            rendered = self._render_resized(frame0.float(), frame1.float(), small, orientations, times)
            return [frame.clamp_(0, 1).to(frame0.dtype) for frame in rendered]
        frames = torch.cat((frame0, frame1), 0).float()
        if not ensemble:
            _, flows, occluded = orientations[0]
            rendered = self._render_once(frames, flows, occluded, times)
            return [frame.clamp(0, 1).to(frame0.dtype) for frame, _, _ in rendered]
        # Orientation outside, times inside: one orientation's frames in memory at a time, and
        # each time keeps one running blend, not one frame per orientation.
        blends = [_AgreementBlend(cfg.agreement_scale) for _ in times]
        for dims, flows, occluded in orientations:
            oriented = self._render_once(_flip(frames, dims), flows, occluded, times, ensemble=True)
            for blend, (frame, _, disagreement) in zip(blends, oriented):
                blend.add(_flip(frame, dims), _flip(disagreement, dims))
        return [blend.result().clamp(0, 1).to(frame0.dtype) for blend in blends]

    def _render_resized(self, frame0: Tensor, frame1: Tensor, small: Tensor, orientations,
                        times: Sequence[Time]) -> List[Tensor]:
        """Render at a working resolution below the frames'. At the working resolution, per
        orientation, steps 3-5 (and the ensemble's disagreement), turned back to the frames'
        orientation; there too, per pixel, each orientation's ensemble weight (step 6) times the
        time-and-visibility weights of its two warps (step 5): one weight per frame and
        orientation, summing to 1 over them. At full size only what needs it: per orientation, the
        projected flows resized, both frames warped, and their weights resized and accumulated
        into one frame (the same blend as resizing visibility and disagreement first, but for
        where the resampling falls)."""
        size = tuple(frame0.shape[2:])
        ensemble = self.config.orientations > 1
        # Per time, per orientation: (projected flows, the two frames' weights), at working size.
        motions: List[List[Tuple[Tensor, Tensor]]] = [[] for _ in times]
        disagreements: List[List[Tensor]] = [[] for _ in times]
        for dims, flows, occluded in orientations:
            # One orientation needs no frames at the working resolution: just its motion.
            oriented_small = _flip(small, dims) if ensemble else None
            oriented = self._render_once(oriented_small, flows, occluded, times, ensemble=ensemble, blended=False)
            for k, (t, (_, (back, visible), disagreement)) in enumerate(zip(times, oriented)):
                motions[k].append((_flip_flow(back, dims), _blend_weights(_flip(visible, dims), t)))
                if ensemble:
                    disagreements[k].append(_flip(disagreement, dims))
        results = []
        for k in range(len(times)):
            if ensemble:  # softmax(-disagreement / s) over the orientations, per pixel
                shares = torch.softmax(torch.stack(disagreements[k]) / -self.config.agreement_scale, 0)
            frame = None
            for o, (back, weights) in enumerate(motions[k]):
                if ensemble:
                    weights = weights * shares[o]
                weight0, weight1 = _resize(weights, size).chunk(2, 1)
                to0, to1 = _resize_flow(back, size).chunk(2, 0)
                # The frames one at a time: one full-size warp in memory at once.
                warp0 = self._warp(frame0, to0)
                frame = warp0.mul_(weight0) if frame is None else frame.addcmul_(warp0, weight0)
                frame.addcmul_(self._warp(frame1, to1), weight1)
            results.append(frame)
        return results

    def _render_once(self, frames: Optional[Tensor], flows: Tensor, occluded: Tensor, times: Sequence[Time],
                     ensemble: bool = False, blended: bool = True
                     ) -> List[Tuple[Optional[Tensor], Tuple[Tensor, Tensor], Optional[Tensor]]]:
        """Steps 3-5 in one orientation at the motion's resolution, from the frames (2B, 3, h, w)
        and their flows and occlusion: per time (a float or a (B or 1, 1, 1, 1) tensor), the
        float32 frame (unclamped), its motion (projected flows (2B, 2, h, w) and visibility
        (2B, 1, h, w)) and, for the ``ensemble``, its (B, 1, h, w) disagreement map (step 6).
        ``frames`` None: the motion alone (frame and disagreement None); ``blended`` False: no
        frame (None), the motion and the disagreement alone."""
        weight = torch.where(occluded > 0, torch.full_like(occluded, self.config.occluded_weight),
                             torch.ones_like(occluded))
        ones = flows.new_ones(flows.shape[0] // 2, 1, 1, 1)
        results = []
        for t in times:
            scales = torch.cat((t * ones, (1.0 - t) * ones), 0)
            scaled = flows * scales
            # Per pixel at time t: displacement back to frame 0 (first half) and to frame 1.
            back = memc_ops.flow_projection(scaled, weight=weight, fill_holes=True)
            covered = _coverage(scaled).float()
            # The sample of each frame is content the other frame does not show where that
            # frame's own forward-backward test failed.
            own_occlusion = _sample(occluded, back)
            cov0, cov1 = covered.chunk(2, 0)
            occ_t0, occ_t1 = own_occlusion.chunk(2, 0)
            back = _symmetrize(back, t, (cov0 * cov1 * (1.0 - occ_t0) * (1.0 - occ_t1)) > 0.5)
            visible = torch.cat((cov0 * (1.0 - occ_t1), cov1 * (1.0 - occ_t0)), 0)
            if frames is None:
                results.append((None, (back, visible), None))
                continue
            # Without a blended frame the warps serve the disagreement alone: bilinear suffices.
            warps = self._warp(frames, back) if blended else _sample(frames, back)
            disagreement = self._disagreement(warps, visible) if ensemble else None
            results.append((_blend(warps, visible, t) if blended else None, (back, visible), disagreement))
        return results

    def _warp(self, frames: Tensor, back: Tensor) -> Tensor:
        """Step 4: each frame warped with its projected flow and the fixed kernel."""
        if self.config.kernel == "bilinear":
            return memc_ops.adaptive_warp(frames, back, _bilinear_kernel(back))
        # The bicubic coefficients computed per pixel inside the op: no (B, 16, H, W) kernel
        # written and read back (133 MB per warp of a 1080p frame).
        return memc_ops.bicubic_warp(frames, back)

    def _disagreement(self, warps: Tensor, visible: Tensor) -> Tensor:
        """(B, 1, H, W): mean |warp0 - warp1| over channels and a (2r + 1)^2 window (clipped at
        the frame's edges), counting pixels not seen by both frames as _UNSEEN_DISAGREEMENT."""
        warp0, warp1 = warps.clamp(0, 1).chunk(2, 0)
        visible0, visible1 = visible.chunk(2, 0)
        both_visible = visible0 * visible1
        difference = (warp0 - warp1).abs().mean(1, keepdim=True)
        difference = both_visible * difference + (1.0 - both_visible) * _UNSEEN_DISAGREEMENT
        r = self.config.agreement_radius
        return F.avg_pool2d(difference, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def _blend(warps: Tensor, visible: Tensor, t: Time) -> Tensor:
    """Step 5: the two warped frames (2B, 3, H, W) weighted by time and visibility (2B, 1, H, W)."""
    warp0, warp1 = warps.chunk(2, 0)
    visible0, visible1 = visible.chunk(2, 0)
    w0, w1 = _time_visibility(visible0, visible1, t)
    return torch.lerp(warp0, warp1, w1 / (w0 + w1))  # (w0 warp0 + w1 warp1) / (w0 + w1) in one pass


def _time_visibility(visible0: Tensor, visible1: Tensor, t: Time) -> Tuple[Tensor, Tensor]:
    """Step 5's unnormalised weights of frame 0 and frame 1: time times visibility."""
    # eps: where neither frame explains a pixel, both warps are blended by time alone.
    eps = 1e-3
    return (1.0 - t) * (visible0 + eps), t * (visible1 + eps)


def _blend_weights(visible: Tensor, t: Time) -> Tensor:
    """Step 5's weights of the two frames, (B, 2, H, W) from their visibility (2B, 1, H, W): the
    blend is weights[:, 0] warp0 + weights[:, 1] warp1 (the weights sum to 1)."""
    w0, w1 = _time_visibility(*visible.chunk(2, 0), t)
    total = w0 + w1
    return torch.cat((w0 / total, w1 / total), 1)


def _check_input_frames(frame0: Tensor, frame1: Tensor) -> None:
    """MEMCNet's checks, and values in [0, 1] (within a margin): DIS needs them as 8-bit grey."""
    _check_frames(frame0, frame1)
    for name, frame in (("frame0", frame0), ("frame1", frame1)):
        low, high = (float(value) for value in torch.aminmax(frame))
        if math.isnan(low) or math.isnan(high):
            raise ValueError(f"{name} holds NaN; expected RGB values in [0, 1]")
        if not (low >= -_RANGE_MARGIN and high <= 1.0 + _RANGE_MARGIN):
            scale = " (8-bit frames: divide by 255)" if high > 1.0 + _RANGE_MARGIN else ""
            raise ValueError(f"{name} must hold RGB values in [0, 1]; got values from {low:.4g} to {high:.4g}{scale}")


class _AgreementBlend:
    """Per-pixel mean of frames weighted by softmax(-disagreement / scale) over the frames added,
    accumulated online (as streaming softmax does): the weights are taken relative to the lowest
    disagreement so far, so they never all underflow, whatever the scale."""

    def __init__(self, scale: float):
        self.scale = scale
        self.lowest: Optional[Tensor] = None
        self.weighted_sum: Optional[Tensor] = None
        self.total_weight: Optional[Tensor] = None

    def add(self, frame: Tensor, disagreement: Optional[Tensor]) -> None:
        """Adds a frame; ``disagreement`` None: the only one (its frame is the result)."""
        if disagreement is None:
            self.weighted_sum, self.total_weight = frame, None
            return
        if self.lowest is None:
            self.lowest = disagreement
            self.weighted_sum, self.total_weight = frame.clone(), torch.ones_like(disagreement)
            return
        lowest = torch.minimum(self.lowest, disagreement)
        rescale = torch.exp((lowest - self.lowest) / self.scale)  # earlier weights, relative to the new lowest
        weight = torch.exp((lowest - disagreement) / self.scale)
        self.weighted_sum = self.weighted_sum * rescale + weight * frame
        self.total_weight = self.total_weight * rescale + weight
        self.lowest = lowest

    def result(self) -> Tensor:
        return self.weighted_sum if self.total_weight is None else self.weighted_sum / self.total_weight


def _flip_flow(flow: Tensor, dims: Tuple[int, ...]) -> Tensor:
    """A flow field (B, 2, H, W) in an orientation flipped along ``dims``, turned back: the field
    flipped, and the components along the flipped axes negated."""
    if not dims:
        return flow
    sign = flow.new_tensor([-1.0 if 3 in dims else 1.0, -1.0 if 2 in dims else 1.0]).view(1, 2, 1, 1)
    return flow.flip(dims) * sign


def _flip(image: Tensor, dims: Tuple[int, ...]) -> Tensor:
    """``image`` flipped along ``dims`` (no copy for no dims)."""
    return image.flip(dims).contiguous() if dims else image
