"""The training-free motion path: "conventional MEMC" (Fig. 2a of the MEMC-Net paper) on memc_ops.

No weights: OpenCV's DIS estimator gives the optical flow in both directions, and everything per
pixel after it runs on ``memc_ops`` or vectorised tensor code, on the frames' device.

For two frames I0, I1 and a time t in (0, 1):

1. Motion: F01 and F10 by DIS (on the CPU, on grey 8-bit frames).
   Flows are estimated at full resolution (DIS's medium preset otherwise stops at half).
2. Occlusion by forward-backward consistency: a pixel x of frame 0 is occluded in frame 1 (or its
   flow is unreliable) when ``|F01(x) + F10(x + F01(x))|^2 > alpha (|F01|^2 + |F10(..)|^2) + beta``
   (Sundaram, Brox and Keutzer, ECCV 2010), or when x + F01(x) leaves the frame; likewise for
   frame 1.
3. Projection: ``memc_ops.flow_projection`` of t F01 and of (1 - t) F10, weighting the
   consistent sources far above the occluded ones: where two sources meet at time t, the one that
   stays visible in the other frame is the one in front. Where both frames see a pixel, its two
   projected flows, two estimates of one linear motion, are averaged.
4. Warping: ``memc_ops.adaptive_warp`` of each frame with its projected flow and a fixed kernel:
   per-pixel 4x4 bicubic (Keys, a = -0.5) coefficients expressed in the op's bilinear-quadrant
   form, or plain bilinear.
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

from .memc_net import _check_frames, _check_time

__all__ = ["ClassicalConfig", "ClassicalInterpolator", "dis_flow", "dis_flows", "forward_backward_occlusion",
           "bicubic_kernel"]

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

    def __post_init__(self):
        if self.preset not in _DIS_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(_DIS_PRESETS)}; got {self.preset!r}")
        _check_finest_scale(self.finest_scale)
        if not (self.consistency_alpha >= 0 and self.consistency_beta >= 0):
            raise ValueError(
                f"consistency_alpha and consistency_beta must be >= 0; got {self.consistency_alpha} and {self.consistency_beta}"
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
    jobs, shapes = [], []
    for frame0, frame1 in pairs:
        grey0, grey1 = _grey_uint8(frame0), _grey_uint8(frame1)
        height, width = grey0.shape[1:]
        # DIS refuses frames under about 12 pixels a side: pad small ones by repeating their
        # edges, and crop the flow back.
        pad = ((0, 0), (0, max(_DIS_MIN_SIZE - height, 0)), (0, max(_DIS_MIN_SIZE - width, 0)))
        grey0, grey1 = np.pad(grey0, pad, mode="edge"), np.pad(grey1, pad, mode="edge")
        jobs += list(zip(grey0, grey1))
        shapes.append((len(grey0), height, width))
    flows = iter(_dis_calc(jobs, preset, finest_scale))
    results = []
    for (frame0, _), (batch, height, width) in zip(pairs, shapes):
        stacked = np.stack([next(flows)[:height, :width] for _ in range(batch)])
        results.append(torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous().to(frame0.device))
    return results


def _dis_calc(jobs: Sequence[Tuple[np.ndarray, np.ndarray]], preset: str, finest_scale: Optional[int]) -> List[np.ndarray]:
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
    return like.new_ones((like.shape[0], 4, like.shape[2], like.shape[3]))


def _sample(image: Tensor, flow: Tensor) -> Tensor:
    """Bilinear backward warp through memc_ops (pixels whose target leaves the frame keep their own value)."""
    return memc_ops.adaptive_warp(image, flow, _bilinear_kernel(flow).to(image.dtype))


def _targets_inside(flow: Tensor) -> Tensor:
    """(B, 1, H, W) bool: x + flow(x) lies in the frame (adaptive_warp's validity rule)."""
    _, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, width)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(height, 1)
    tx, ty = xs + flow[:, 0], ys + flow[:, 1]
    inside = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
    inside &= (flow[:, 0].abs() < width / 2) & (flow[:, 1].abs() < height / 2)
    return inside.unsqueeze(1)


def forward_backward_occlusion(flow_0to1: Tensor, flow_1to0: Tensor, alpha: float = 0.01, beta: float = 0.5) -> Tensor:
    """(B, 1, H, W) float: 1 where a pixel of frame 0 fails the forward-backward test (or leaves
    the frame), 0 where its flow is confirmed by the flow back."""
    back = _sample(flow_1to0, flow_0to1)
    mismatch = (flow_0to1 + back).square().sum(1, keepdim=True)
    scale = flow_0to1.square().sum(1, keepdim=True) + back.square().sum(1, keepdim=True)
    occluded = (mismatch > alpha * scale + beta) | ~_targets_inside(flow_0to1)
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


def _keys_cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel (a = -0.5) at distances |x| <= 2."""
    x = x.abs()
    near = (1.5 * x - 2.5) * x * x + 1.0
    far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def bicubic_kernel(flow: Tensor) -> Tensor:
    """(B, 16, H, W) adaptive_warp coefficients (K = 4) that make the warp bicubic.

    adaptive_warp weights the left two columns of its 4x4 window by (1 - a) and the right two by a
    (a the fractional part of the target), rows likewise, then by the kernel; dividing Keys'
    weights for offsets -1, 0, 1, 2 by those factors gives, per pixel, exactly bicubic weights.
    """
    _, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, width)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(height, 1)
    a = torch.frac(xs + flow[:, 0]) % 1.0  # fractional parts in [0, 1), also for negative targets
    b = torch.frac(ys + flow[:, 1]) % 1.0

    def axis(f: Tensor) -> Tensor:  # (B, 4, H, W) per-offset coefficients along one axis
        eps = 1e-6
        left, right = (1.0 - f).clamp(min=eps), f.clamp(min=eps)
        # A weight whose factor is ~0 contributes ~0 whatever it is; the cubic's zeros at the
        # integers keep the ratios bounded.
        return torch.stack(
            (_keys_cubic(1.0 + f) / left, _keys_cubic(f) / left, _keys_cubic(1.0 - f) / right, _keys_cubic(2.0 - f) / right), 1
        )

    kx, ky = axis(a), axis(b)
    kernel = ky.unsqueeze(2) * kx.unsqueeze(1)  # (B, 4 rows, 4 cols, H, W), tap = row * 4 + col
    return kernel.flatten(1, 2)


def _symmetrize(back: Tensor, t: Time, both: Tensor) -> Tensor:
    """Where a pixel at time t is seen by both frames (``both``, (B, 1, H, W) bool), its two
    projected flows are two estimates of one linear motion v: to frame 0 -t v, to frame 1
    (1 - t) v. Averaging the two estimates of v halves the variance of independent errors."""
    to0, to1 = back.chunk(2, 0)
    velocity = 0.5 * (to1 / (1.0 - t) - to0 / t)
    to0 = torch.where(both, -t * velocity, to0)
    to1 = torch.where(both, (1.0 - t) * velocity, to1)
    return torch.cat((to0, to1), 0)


class ClassicalInterpolator:
    """Training-free frame interpolation: DIS flow, flow projection, fixed-kernel adaptive warping,
    occlusion-aware blending (see the module docstring).

    ``interpolator(frame0, frame1, t)`` with (B, 3, H, W) RGB frames in [0, 1] returns the frame at
    time t; :meth:`interpolate` returns several times from one motion estimate.

    Frames are floating-point tensors of one shape, dtype and device, as for
    :class:`memc_models.MEMCNet`: integer frames are a ``TypeError``, and values clearly outside
    [0, 1] (such as 0..255 or -1..1) a ``ValueError``. A time t is a float in (0, 1) or, as for
    MEMCNet, a tensor of one time or B times (one per sample).
    """

    def __init__(self, config: ClassicalConfig = ClassicalConfig()):
        self.config = config

    def __call__(self, frame0: Tensor, frame1: Tensor, t: Time = 0.5) -> Tensor:
        return self.interpolate(frame0, frame1, [t])[0]

    def motion(self, frame0: Tensor, frame1: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """(F01, F10, occlusion of frame 0, occlusion of frame 1), float32 on the frames' device."""
        _check_frames(frame0, frame1)
        cfg = self.config
        flow01, flow10 = dis_flows([(frame0, frame1), (frame1, frame0)], cfg.preset, cfg.finest_scale)  # at once
        flows = torch.cat((flow01, flow10), 0)
        occluded = forward_backward_occlusion(flows, torch.cat((flow10, flow01), 0), cfg.consistency_alpha, cfg.consistency_beta)
        occ0, occ1 = occluded.chunk(2, 0)
        return flow01, flow10, occ0, occ1

    @torch.no_grad()
    def interpolate(self, frame0: Tensor, frame1: Tensor, times: Union[Time, Sequence[Time]]) -> List[Tensor]:
        """The frames at each time of ``times``, as a list of (B, 3, H, W) tensors in the frames'
        dtype, clamped to [0, 1]. Each time is a float in (0, 1) or a tensor of one time or B
        times (one per sample); a single time is taken as ``[time]``."""
        _check_frames(frame0, frame1)
        for name, frame in (("frame0", frame0), ("frame1", frame1)):
            low, high = float(frame.min()), float(frame.max())
            if math.isnan(low) or math.isnan(high):
                raise ValueError(f"{name} holds NaN; expected RGB values in [0, 1]")
            if not (low >= -_RANGE_MARGIN and high <= 1.0 + _RANGE_MARGIN):
                scale = " (8-bit frames: divide by 255)" if high > 1.0 + _RANGE_MARGIN else ""
                raise ValueError(f"{name} must hold RGB values in [0, 1]; got values from {low:.4g} to {high:.4g}{scale}")
        if isinstance(times, (numbers.Real, Tensor)):
            times = [times]
        # Times as floats or float32 tensors (the computation's dtype, whatever the frames').
        like = frame0.new_empty(0, dtype=torch.float32)
        times = [_check_time(t, frame0.shape[0], like) for t in times]
        cfg = self.config
        if cfg.orientations == 1:
            return [frame.clamp(0, 1).to(frame0.dtype) for frame, _ in self._interpolate_once(frame0, frame1, times)]
        # Orientation outside, times inside: one orientation's frames and motion in memory at a
        # time, and each time keeps one running blend, not one frame per orientation.
        blends = [_AgreementBlend(cfg.agreement_scale) for _ in times]
        for dims in _ORIENTATIONS[: cfg.orientations]:
            oriented = self._interpolate_once(_flip(frame0, dims), _flip(frame1, dims), times)
            for blend, (frame, disagreement) in zip(blends, oriented):
                blend.add(_flip(frame, dims), _flip(disagreement, dims))
        outputs = [blend.result().clamp(0, 1).to(frame0.dtype) for blend in blends]
        return outputs

    def _interpolate_once(self, frame0: Tensor, frame1: Tensor, times: Sequence[Time]) -> List[Tuple[Tensor, Tensor]]:
        """Steps 1-5 in one orientation: per time (a float or a (B or 1, 1, 1, 1) tensor), the
        float32 frame (unclamped) and its (B, 1, H, W) disagreement map (step 6)."""
        flow01, flow10, occ0, occ1 = self.motion(frame0, frame1)
        flows = torch.cat((flow01, flow10), 0)
        occluded = torch.cat((occ0, occ1), 0)
        weight = torch.where(occluded > 0, torch.full_like(occluded, self.config.occluded_weight), torch.ones_like(occluded))
        frames = torch.cat((frame0, frame1), 0).float()
        ones = flows.new_ones(frame0.shape[0], 1, 1, 1)
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
            kernel = bicubic_kernel(back) if self.config.kernel == "bicubic" else _bilinear_kernel(back)
            warp0, warp1 = memc_ops.adaptive_warp(frames, back, kernel).chunk(2, 0)
            visible0 = cov0 * (1.0 - occ_t1)
            visible1 = cov1 * (1.0 - occ_t0)
            # eps: where neither frame explains a pixel, both warps are blended by time alone.
            eps = 1e-3
            w0 = (1.0 - t) * (visible0 + eps)
            w1 = t * (visible1 + eps)
            frame = (w0 * warp0 + w1 * warp1) / (w0 + w1)
            results.append((frame, self._disagreement(warp0, warp1, visible0 * visible1)))
        return results

    def _disagreement(self, warp0: Tensor, warp1: Tensor, both_visible: Tensor) -> Tensor:
        """(B, 1, H, W): mean |warp0 - warp1| over channels and a (2r + 1)^2 window (clipped at
        the frame's edges), counting pixels not seen by both frames as _UNSEEN_DISAGREEMENT."""
        difference = (warp0.clamp(0, 1) - warp1.clamp(0, 1)).abs().mean(1, keepdim=True)
        difference = both_visible * difference + (1.0 - both_visible) * _UNSEEN_DISAGREEMENT
        r = self.config.agreement_radius
        return F.avg_pool2d(difference, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


class _AgreementBlend:
    """Per-pixel mean of frames weighted by softmax(-disagreement / scale) over the frames added,
    accumulated online (as streaming softmax does): the weights are taken relative to the lowest
    disagreement so far, so they never all underflow, whatever the scale."""

    def __init__(self, scale: float):
        self.scale = scale
        self.lowest: Optional[Tensor] = None
        self.weighted_sum: Optional[Tensor] = None
        self.total_weight: Optional[Tensor] = None

    def add(self, frame: Tensor, disagreement: Tensor) -> None:
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
        return self.weighted_sum / self.total_weight


def _flip(image: Tensor, dims: Tuple[int, ...]) -> Tensor:
    """``image`` flipped along ``dims`` (no copy for no dims)."""
    return image.flip(dims).contiguous() if dims else image
