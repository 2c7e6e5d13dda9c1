"""Training-free video enhancement: denoising, deblocking and x2/x4 super-resolution of the centre
frame of a window, by motion-compensated temporal filtering on ``memc_ops``; and the reproducible
degradations and the measures that evaluate it.

For a window of frames (the centre and 2 to 6 neighbours), to denoise or deblock (``"sr"`` below):

1. Motion: OpenCV DIS flow from the centre to each neighbour (:func:`memc_models.classical.dis_flows`),
   on frames pre-smoothed in proportion to the noise so that DIS follows the picture, not the grain.
2. Alignment: ``memc_ops.adaptive_warp`` of each neighbour onto the centre, with bilinear
   coefficients. A pixel whose target leaves the frame has no aligned sample there.
3. Robust temporal merge (:func:`temporal_merge`), the motion-compensated temporal filter: each
   aligned neighbour is weighted per pixel by how well a patch around the pixel agrees with the
   centre, relative to what the noise alone would explain. A neighbour that agrees to within the
   noise gets weight 1; one whose disagreement exceeds ``threshold`` times the noise's gets
   weight 0, so occluded or misaligned neighbours (moving edges) leave the centre as it was.
4. Spatial stage: what is left of the noise (the merge tells how much, per pixel) is removed by
   sliding-window DCT shrinkage (:func:`dct_denoise`; Yu and Sapiro, IPOL 2011) in an orthonormal
   opponent colour space, hard thresholding followed by an empirical Wiener pass. Where no
   neighbour is usable this is single-frame filtering of the centre at the full noise level.

Tasks (:func:`enhance`):

* ``"denoise"``: additive noise of standard deviation ``sigma`` on 0..255, estimated from the
  centre frame when not given (:func:`estimate_noise_sigma`).
* ``"deblock"``: compression artefacts, treated as noise of a given ``strength`` (their error is
  correlated with the neighbours', so it is not estimated from them); the merge averages the
  differently quantised frames and the spatial stage smooths the ringing and block edges.
* ``"sr"``: x2 or x4 super-resolution of low-resolution frames by multi-frame iterative
  back-projection (Irani and Peleg 1991) through the bicubic downscaling model: DIS flows between
  the low-resolution frames, scaled to the output grid; each frame's simulated low-resolution
  frame compared with the real one, the residuals weighted per pixel by how small they are (an
  occluded or misaligned neighbour gets none) and back-projected onto the centre through
  ``adaptive_warp``. ``temporal=False`` is back-projection against the centre frame alone.

Degradations for evaluation, reproducible from a seed: :func:`add_gaussian_noise`,
:func:`h264_compress` (FFmpeg from imageio-ffmpeg, libx264 at a fixed QP) and
:func:`bicubic_downscale`; :func:`degrade` dispatches on the task. :func:`quality` gives PSNR and
SSIM with the project's measures (:mod:`memc_models.metrics`).
"""

import math
import numbers
import os
import subprocess
import tempfile
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import memc_ops
from memc_ops.reference import warp_valid
from memc_ops import bicubic_kernel

from .classical import dis_flows
from .ffmpeg import ffmpeg_exe
from .metrics import psnr, ssim, ssim_defined

__all__ = [
    "TASKS",
    "Aligned",
    "Merged",
    "add_gaussian_noise",
    "align_neighbours",
    "bicubic_downscale",
    "bicubic_upsample",
    "dct_denoise",
    "deblock",
    "degrade",
    "denoise",
    "enhance",
    "estimate_noise_sigma",
    "h264_compress",
    "quality",
    "super_resolve",
    "temporal_merge",
]

TASKS = ("denoise", "deblock", "sr")
SCALES = (2, 4)

# Merge: a neighbour keeps full weight while its patch disagreement is within the noise's
# expectation (2 sigma^2 for two noisy frames) and none at THRESHOLD times that.
_MERGE_PATCH = 5
_MERGE_THRESHOLD = 1.3

# DCT shrinkage: 8x8 patches every 4 pixels (every 2 gains about 0.3 dB at 3 times the cost);
# hard threshold at 2.7 sigma (Yu and Sapiro).
_DCT_PATCH = 8
_DCT_STRIDE = 4
_DCT_HARD = 2.7

# The floor of every noise level (on 0..1): 8-bit quantisation alone leaves 1/sqrt(12) levels.
_SIGMA_FLOOR = 0.3 / 255.0

# Deblocking: the artefact level (on 0..255) and merge threshold that did best on H.264 QP 37
# (Middlebury and car-turn; levels 2 to 6 and thresholds 1.3 to 4 tried).
_DEBLOCK_STRENGTH = 6.0
_DEBLOCK_THRESHOLD = 4.0

# Super-resolution: single-frame back-projection iterations (it has converged after 4 at x2 and
# x4); multi-frame fusion iterations and step (the step of the weighted mean of the frames'
# corrections: 2 is the stability limit, 2.5 diverged); the RMS low-resolution residual (on
# 0..1) up to which a neighbour has full weight (none at twice it); the erosion of the weights
# (low-resolution pixels: a neighbour rejected at a pixel is rejected around it, which halved
# the losses on Middlebury's fast-moving arms); and the centre-only iterations that end the
# fusion (the neighbours' weighted mean pulls the estimate off the centre's own low-resolution
# frame; restoring it gained 0.03 to 0.4 dB). Chosen on Middlebury and car-turn: 4 to 12
# iterations, steps 1 to 3, tolerances 2 to 8 levels, erosions 0 to 9 tried.
_SR_ITERATIONS = 4
_SR_FUSION_ITERATIONS = 10
_SR_STEP = 1.75
_SR_TOLERANCE = 4.0 / 255.0
_SR_ERODE = 5
_SR_FINAL_ITERATIONS = 2

Frames = Union[Tensor, Sequence[Tensor]]


# --- Checks -----------------------------------------------------------------------------------


def _check_window(frames: Frames, centre: Optional[int], name: str = "frames") -> Tuple[Tensor, int]:
    """(T, 3, H, W) float frames in [0, 1] (from a tensor or a list of (3, H, W)) and the centre
    index (default T // 2); 3 to 7 frames."""
    if isinstance(frames, (list, tuple)):
        if not all(isinstance(f, Tensor) for f in frames):
            raise TypeError(f"{name} must be a (T, 3, H, W) tensor or a list of (3, H, W) tensors")
        if len({tuple(f.shape) for f in frames}) > 1:
            raise ValueError(f"{name} must all have one shape; got {sorted({tuple(f.shape) for f in frames})}")
        frames = torch.stack(list(frames)) if frames else torch.empty(0)
    if not isinstance(frames, Tensor):
        raise TypeError(f"{name} must be a (T, 3, H, W) tensor or a list of (3, H, W) tensors; "
                        f"got {type(frames).__name__}")
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"{name} must have shape (T, 3, H, W); got {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise TypeError(f"{name} must be floating-point RGB in [0, 1]; got {frames.dtype}")
    count = frames.shape[0]
    if not 3 <= count <= 7:
        raise ValueError(f"{name} must hold the centre frame and 2 to 6 neighbours (3 to 7 frames); got {count}")
    if min(frames.shape[2:]) < 1:
        raise ValueError(f"{name} must not be empty; got shape {tuple(frames.shape)}")
    if centre is None:
        centre = count // 2
    if isinstance(centre, bool) or not isinstance(centre, numbers.Integral) or not 0 <= centre < count:
        raise ValueError(f"centre must index one of the {count} frames (0 to {count - 1}); got {centre!r}")
    return frames.float(), int(centre)


def _check_sigma(sigma, name: str = "sigma") -> float:
    number = isinstance(sigma, numbers.Real) and not isinstance(sigma, bool)
    if not (number and math.isfinite(sigma) and 0 <= sigma <= 255):
        raise ValueError(f"{name} must be a number from 0 to 255 (the noise's standard deviation on 0..255); "
                         f"got {sigma!r}")
    return float(sigma)


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or scale not in SCALES:
        raise ValueError(f"scale must be 2 or 4; got {scale!r}")
    return int(scale)


# --- Small pieces -------------------------------------------------------------------------------


def _box(x: Tensor, size: int) -> Tensor:
    """Mean over a size x size window, edges replicated; (N, C, H, W) -> same shape."""
    pad = size // 2
    x = F.pad(x, (pad, size - 1 - pad, pad, size - 1 - pad), mode="replicate")
    return F.avg_pool2d(x, size, stride=1)


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """(N, 3, H, W) blurred by a Gaussian of ``sigma`` pixels (OpenCV, edges reflected)."""
    if sigma <= 0:
        return x
    import cv2

    images = x.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    blurred = np.stack([cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), sigma) for image in images])
    return torch.from_numpy(blurred).permute(0, 3, 1, 2).to(x)


def _warp(image: Tensor, flow: Tensor, bicubic: bool = False) -> Tensor:
    """``image`` sampled at x + flow(x): bilinear (``memc_ops.adaptive_warp`` with a kernel of
    ones) or bicubic (``memc_ops.bicubic_warp``)."""
    if bicubic:
        return memc_ops.bicubic_warp(image, flow)
    return memc_ops.adaptive_warp(image, flow, flow.new_ones(flow.shape[0], 4, *flow.shape[2:]).to(image.dtype))


# Orthonormal opponent colour transform: noise of one sigma per RGB channel stays one sigma per
# channel, and the chroma channels are smooth, so their coefficients shrink to almost nothing.
_OPPONENT = torch.tensor([
    [1 / math.sqrt(3)] * 3,
    [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
    [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
])


def _to_opponent(x: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", _OPPONENT.to(x), x)


def _from_opponent(x: Tensor) -> Tensor:
    return torch.einsum("ji,njhw->nihw", _OPPONENT.to(x), x)


def _dct_basis(size: int) -> Tensor:
    """(size*size, size*size) orthonormal 2-D DCT-II: coefficients = basis @ patch (row-major)."""
    n = torch.arange(size, dtype=torch.float64)
    one_d = torch.cos(math.pi * (n.view(1, -1) + 0.5) * n.view(-1, 1) / size) * math.sqrt(2.0 / size)
    one_d[0] /= math.sqrt(2.0)
    return torch.kron(one_d, one_d).float()


# --- Alignment and merge ------------------------------------------------------------------------


class Aligned(NamedTuple):
    """Neighbours aligned onto the centre frame.

    Attributes:
        warped: (N, 3, H, W) each neighbour sampled at x + flow(x).
        valid: (N, 1, H, W) bool, where the sample lies inside the neighbour.
        flows: (N, 2, H, W) flows centre -> neighbour in pixels.
    """

    warped: Tensor
    valid: Tensor
    flows: Tensor


def align_neighbours(centre: Tensor, neighbours: Tensor, *, smoothing: float = 0.0, preset: str = "medium",
                     finest_scale: int = 0, bicubic: bool = False) -> Aligned:
    """DIS flow from ``centre`` (3, H, W) to each of ``neighbours`` (N, 3, H, W), and each
    neighbour warped onto the centre by ``memc_ops.adaptive_warp`` (bilinear, or bicubic
    coefficients with ``bicubic``). ``smoothing``: the standard deviation in pixels of a Gaussian
    blur applied to the frames DIS sees (not to the frames warped), to keep noise from driving
    the flow; ``preset`` and ``finest_scale`` as for :func:`memc_models.classical.dis_flows`."""
    flow_input = _gaussian_blur(torch.cat((centre.unsqueeze(0), neighbours)), smoothing).clamp(0, 1)
    pairs = [(flow_input[:1], flow_input[1 + k : 2 + k]) for k in range(len(neighbours))]
    flows = torch.cat(dis_flows(pairs, preset=preset, finest_scale=finest_scale), 0).to(centre.device)
    return Aligned(_warp(neighbours, flows, bicubic), warp_valid(flows).unsqueeze(1), flows)


class Merged(NamedTuple):
    """The result of :func:`temporal_merge`.

    Attributes:
        frame: (3, H, W) the merged centre frame.
        weights: (N, 1, H, W) each neighbour's weight per pixel, in [0, 1] (the centre's is 1).
        noise_ratio: (1, H, W) the standard deviation of the merged frame's noise relative to the
            centre's, sqrt(1 + sum w^2) / (1 + sum w): 1 where no neighbour counts.
    """

    frame: Tensor
    weights: Tensor
    noise_ratio: Tensor


def temporal_merge(centre: Tensor, warped: Tensor, sigma: float, valid: Optional[Tensor] = None, *,
                   patch: int = _MERGE_PATCH, threshold: float = _MERGE_THRESHOLD) -> Merged:
    """The robust per-pixel temporal merge of aligned neighbours with the centre frame.

    With C the centre (3, H, W), W_k the aligned neighbours (N, 3, H, W) and s = max(sigma,
    a floor of 0.3/255) the noise level on 0..1, the disagreement of neighbour k at pixel x is
    ``r_k(x) = mean over the patch x patch window at x and the channels of (W_k - C)^2 / (2 s^2)``,
    about 1 where W_k shows the same scene as C up to noise. Its weight is
    ``w_k = clamp((threshold - r_k) / (threshold - 1), 0, 1)``, zero outside ``valid``, and

        merged = C + sum_k w_k (W_k - C) / (1 + sum_k w_k).

    So a neighbour equal to the centre changes nothing, and a neighbour whose disagreement
    reaches ``threshold`` anywhere gets weight exactly 0 there: the centre pixel is returned
    unchanged where no neighbour agrees.
    """
    if centre.dim() != 3 or warped.dim() != 4 or warped.shape[1:] != centre.shape:
        raise ValueError(
            f"centre must be (3, H, W) and warped (N, 3, H, W) of the same H, W; got {tuple(centre.shape)} and "
            f"{tuple(warped.shape)}"
        )
    if not threshold > 1:
        raise ValueError(f"threshold must be greater than 1; got {threshold!r}")
    difference = warped - centre
    noise = max(float(sigma), _SIGMA_FLOOR)
    disagreement = _box(difference.square().mean(1, keepdim=True), patch) / (2.0 * noise * noise)
    weights = ((threshold - disagreement) / (threshold - 1.0)).clamp(0.0, 1.0)
    if valid is not None:
        weights = weights * valid.to(weights.dtype)
    total = 1.0 + weights.sum(0)
    frame = centre + (weights * difference).sum(0) / total
    noise_ratio = (1.0 + weights.square().sum(0)).sqrt() / total
    return Merged(frame, weights, noise_ratio)


# --- Noise level --------------------------------------------------------------------------------


def estimate_noise_sigma(frame: Tensor, patch: int = 7) -> float:
    """The standard deviation (on 0..255) of additive white noise in ``frame`` (3, H, W) in [0, 1].

    Patch-based PCA (Chen, Zhu and Heng, ICCV 2015): the covariance of the frame's patch x patch
    patches (per channel) has eigenvalues sigma^2 in every direction the clean picture does not
    use. The smallest eigenvalues are taken for as long as their mean and median agree (they
    stop agreeing where the picture's own variance starts), and sigma^2 is their mean."""
    if frame.dim() != 3 or frame.shape[0] != 3:
        raise ValueError(f"frame must have shape (3, H, W); got {tuple(frame.shape)}")
    if min(frame.shape[1:]) < patch:
        raise ValueError(f"frame must be at least {patch} x {patch} pixels to estimate its noise; "
                         f"got {tuple(frame.shape[1:])}")
    x = frame.double().unsqueeze(1) * 255.0
    stride = max(1, int(math.sqrt(frame.shape[1] * frame.shape[2] / 20000)))  # about 20,000 patches per channel
    patches = F.unfold(x, patch, stride=stride).transpose(1, 2).reshape(-1, patch * patch)
    patches = patches - patches.mean(0)
    eigenvalues = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).clamp_min(0)  # ascending
    estimate = float(eigenvalues[0])
    for count in range(len(eigenvalues), 0, -1):
        smallest = eigenvalues[:count]
        mean, median = float(smallest.mean()), float(smallest.median())
        if mean <= median + 1e-12 or count == 1:  # no large eigenvalue left to drag the mean
            estimate = mean
            break
    return math.sqrt(max(estimate, 0.0))


# --- Spatial stage --------------------------------------------------------------------------------


def dct_denoise(image: Tensor, sigma: Union[float, Tensor], *, patch: int = _DCT_PATCH, stride: int = _DCT_STRIDE,
                wiener: bool = True) -> Tensor:
    """Sliding-window DCT denoising of ``image`` (3, H, W) in [0, 1] with noise ``sigma`` on 0..1,
    a number or a (1, H, W) map.

    In the orthonormal opponent colour space, every ``patch`` x ``patch`` window (every
    ``stride`` pixels, and the last row and column) is transformed by the 2-D DCT; coefficients
    under 2.7 sigma (sigma averaged over the window) are zeroed, the DC term kept; windows are
    transformed back and averaged per pixel with weights 1 / (1 + kept coefficients). With
    ``wiener``, a second pass shrinks the noisy coefficients by p^2 / (p^2 + sigma^2), p being the
    first pass's coefficient (the empirical Wiener filter of BM3D's second step)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W); got {tuple(image.shape)}")
    _, height, width = image.shape
    sigma_map = sigma if isinstance(sigma, Tensor) else image.new_full((1, height, width), float(sigma))
    sigma_map = sigma_map.to(image).clamp_min(_SIGMA_FLOOR)
    # Pad by reflection so that every pixel is covered by as many windows as an inner one.
    pad_h = (-(height + 2 * (patch - 1) - patch)) % stride
    pad_w = (-(width + 2 * (patch - 1) - patch)) % stride
    padding = (patch - 1, patch - 1 + pad_w, patch - 1, patch - 1 + pad_h)

    def windows(x: Tensor) -> Tensor:  # (C, H, W) -> (C, patch*patch, L)
        mode = "reflect" if min(x.shape[1:]) > max(padding) else "replicate"  # reflection needs room
        return F.unfold(F.pad(x.unsqueeze(0), padding, mode=mode).transpose(0, 1), patch, stride=stride)

    def assemble(values: Tensor, weights: Tensor) -> Tensor:  # (C, P*P, L), (C, 1, L) -> (C, H, W)
        size = (height + padding[2] + padding[3], width + padding[0] + padding[1])
        total = F.fold(values * weights, size, patch, stride=stride)
        norm = F.fold(weights.expand(-1, patch * patch, -1).contiguous(), size, patch, stride=stride)
        out = total / norm.clamp_min(1e-12)
        return out[:, 0, padding[2] : padding[2] + height, padding[0] : padding[0] + width]

    basis = _dct_basis(patch).to(image)
    opponent = _to_opponent(image.unsqueeze(0))[0]
    coefficients = basis @ windows(opponent)  # (3, P*P, L)
    window_sigma = windows(sigma_map).mean(1, keepdim=True)  # (1, 1, L)
    keep = coefficients.abs() > _DCT_HARD * window_sigma
    keep[:, 0] = True
    hard = coefficients * keep
    estimate = assemble(basis.T @ hard, 1.0 / keep.sum(1, keepdim=True).to(image.dtype))
    if wiener:
        pilot = basis @ windows(estimate)
        gain = pilot.square() / (pilot.square() + window_sigma.square())
        gain[:, 0] = 1.0
        estimate = assemble(basis.T @ (coefficients * gain), 1.0 / (1.0 + gain.square().sum(1, keepdim=True)))
    return _from_opponent(estimate.unsqueeze(0))[0]


# --- The tasks ----------------------------------------------------------------------------------


def _split(frames: Tensor, centre: int) -> Tuple[Tensor, Tensor]:
    return frames[centre], torch.cat((frames[:centre], frames[centre + 1 :]))


def denoise(frames: Frames, centre: Optional[int] = None, sigma: Optional[float] = None, *,
            temporal: bool = True) -> Tensor:
    """The centre frame of ``frames`` (T, 3, H, W) in [0, 1] with additive noise of standard
    deviation ``sigma`` (on 0..255; estimated from the centre frame when None) removed.
    ``temporal=False`` is the single-frame filter alone (the same spatial stage at the full noise
    level), for comparison. Returns (3, H, W) in [0, 1]."""
    frames, centre = _check_window(frames, centre)
    sigma = estimate_noise_sigma(frames[centre]) if sigma is None else _check_sigma(sigma)
    noise = sigma / 255.0
    target, neighbours = _split(frames, centre)
    if not temporal:
        return dct_denoise(target, noise).clamp(0, 1)
    # DIS on half-resolution flow (finest_scale 1) of lightly smoothed frames: on Middlebury with
    # sigma 20 this aligned better than full resolution, and at a third of the time.
    aligned = align_neighbours(target, neighbours, smoothing=0.05 * sigma, preset="fast", finest_scale=1)
    merged = temporal_merge(target, aligned.warped, noise, aligned.valid)
    return dct_denoise(merged.frame, noise * merged.noise_ratio).clamp(0, 1)


def deblock(frames: Frames, centre: Optional[int] = None, strength: float = _DEBLOCK_STRENGTH, *,
            temporal: bool = True) -> Tensor:
    """The centre frame of compressed ``frames`` (T, 3, H, W) in [0, 1] with its compression
    artefacts reduced. ``strength``: the artefact level treated as noise, on 0..255 (6 suits
    H.264 around QP 37). The error of a compressed frame is not independent of its neighbours'
    (P-frames copy blocks of their references), so it cannot be measured from their differences;
    the merge tolerates disagreement up to 4 times the expected (threshold 4). With
    ``temporal=False``, the spatial stage alone. Returns (3, H, W)."""
    frames, centre = _check_window(frames, centre)
    level = _check_sigma(strength, "strength") / 255.0
    target, neighbours = _split(frames, centre)
    if not temporal:
        return dct_denoise(target, level).clamp(0, 1)
    aligned = align_neighbours(target, neighbours, smoothing=1.0, preset="fast", finest_scale=1)
    merged = temporal_merge(target, aligned.warped, level, aligned.valid, threshold=_DEBLOCK_THRESHOLD)
    return dct_denoise(merged.frame, level * merged.noise_ratio).clamp(0, 1)


def bicubic_upsample(frames: Tensor, scale: int) -> Tensor:
    """(…, 3, h, w) -> (…, 3, scale*h, scale*w), bicubic (a = -0.75, as torch), clamped to [0, 1]:
    the input convention of MEMC-Net_VE's super-resolution and the peer method."""
    scale = _check_scale(scale)
    shape = frames.shape
    flat = frames.reshape(-1, *shape[-3:]).float()
    up = F.interpolate(flat, scale_factor=float(scale), mode="bicubic", align_corners=False)
    return up.clamp(0, 1).reshape(*shape[:-2], *up.shape[-2:])


def bicubic_downscale(frames: Tensor, scale: int, *, quantize: bool = True) -> Tensor:
    """(…, 3, H, W) -> (…, 3, H // scale, W // scale): antialiased bicubic (a = -0.5, as PIL and
    MATLAB's imresize), after cropping H and W to multiples of ``scale``; rounded to 8-bit levels
    unless ``quantize=False``."""
    scale = _check_scale(scale)
    shape = frames.shape
    height, width = (shape[-2] // scale) * scale, (shape[-1] // scale) * scale
    if height == 0 or width == 0:
        raise ValueError(f"frames must be at least {scale} x {scale} pixels to downscale by {scale}; "
                         f"got {tuple(shape[-2:])}")
    flat = frames.reshape(-1, *shape[-3:])[..., :height, :width].float()
    down = F.interpolate(flat, size=(height // scale, width // scale), mode="bicubic", antialias=True,
                         align_corners=False)
    down = down.clamp(0, 1)
    if quantize:
        down = (down * 255.0).round() / 255.0
    return down.reshape(*shape[:-2], *down.shape[-2:])


def _upsample(x: Tensor, scale: int) -> Tensor:
    """(N, C, h, w) -> (N, C, scale*h, scale*w) bicubic, not clamped: for residuals, which are
    signed (clamping them to [0, 1] would keep only the corrections that brighten)."""
    return F.interpolate(x, scale_factor=float(scale), mode="bicubic", align_corners=False)


def _upsample_flow(flow: Tensor, scale: int) -> Tensor:
    """A flow between low-resolution frames (N, 2, h, w), in their pixels, as a flow between the
    frames ``scale`` times larger, in theirs: bilinear on the grid (pixel centres aligned, as
    :func:`bicubic_downscale`'s model) and times ``scale``."""
    return F.interpolate(flow, scale_factor=float(scale), mode="bilinear", align_corners=False) * scale


def super_resolve(frames: Frames, centre: Optional[int] = None, scale: int = 4, *, temporal: bool = True,
                  iterations: Optional[int] = None) -> Tensor:
    """The centre frame of low-resolution ``frames`` (T, 3, h, w) in [0, 1], ``scale`` (2 or 4)
    times larger: (3, scale*h, scale*w).

    Iterative back-projection (Irani and Peleg 1991) through the evaluation's degradation model,
    D = :func:`bicubic_downscale` (antialiased bicubic) and U = bicubic upsampling. The estimate X
    starts as U(y_0), the centre's low-resolution frame y_0 upsampled.

    ``temporal=False``: back-projection against the centre frame alone, ``iterations`` (default
    4) times X += U(y_0 - D X).

    ``temporal=True`` (the default): multi-frame fusion. DIS flows (preset ``medium``, full
    resolution) between the LOW-resolution frames, centre -> neighbour k (F_k) and neighbour k ->
    centre (G_k), are scaled to the output grid. Each step simulates every neighbour's
    low-resolution frame from the estimate, D(W_k X), with W_k X the estimate warped into
    neighbour k's frame through G_k by ``memc_ops.adaptive_warp`` with bicubic coefficients. Its
    residual r_k = y_k - D(W_k X) weighs the neighbour per low-resolution pixel: w_k = 1 where the
    RMS residual over 3 x 3 pixels is under 4/255, falling linearly to exactly 0 at 8/255, and 0
    where the simulation leaves the frame (occluded, misaligned or unrelated content); then each
    weight becomes the least within 5 x 5 pixels (a rejection covers the edges around it). The
    residuals are upsampled and warped back onto the centre through F_k (bilinear adaptive_warp),
    with the weights likewise (c_k), and

        X += (1 + 0.75 min(1, sum_k c_k)) (U(y_0 - D X) + sum_k c_k W_k^T U(r_k)) / (1 + sum_k c_k):

    the weighted mean of the frames' corrections, with a step of 1.75 where a neighbour counts
    (the mean converges slowly; 2 is the stability limit at low frequencies). The last 2 of the
    ``iterations`` (default 10) are the centre's alone, which bring the estimate back onto its
    own low-resolution frame. Where no neighbour counts each step is the single-frame step
    exactly, so wherever the neighbours disagree everywhere the result equals ``temporal=False``
    with the same ``iterations``. On the shared Middlebury frames and car-turn it beats the single
    frame by 0.3 to 0.9 dB on average (README; two Middlebury sequences with fast, blurred arm
    motion lose 0.1 dB at x2)."""
    frames, centre = _check_window(frames, centre)
    scale = _check_scale(scale)
    if iterations is None:
        iterations = _SR_FUSION_ITERATIONS if temporal else _SR_ITERATIONS
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0; got {iterations!r}")
    low_target, low_neighbours = _split(frames, centre)
    low_target = low_target.unsqueeze(0)
    count = len(low_neighbours)

    def downscale(x: Tensor) -> Tensor:
        return bicubic_downscale(x, scale, quantize=False)

    estimate = _upsample(low_target, scale)
    if not temporal:
        for _ in range(iterations):
            estimate = estimate + _upsample(low_target - downscale(estimate), scale)
        return estimate[0].clamp(0, 1)

    pairs = [(low_target, low_neighbours[k : k + 1]) for k in range(count)]
    pairs += [(low_neighbours[k : k + 1], low_target) for k in range(count)]
    flows = dis_flows(pairs, preset="medium", finest_scale=0)
    forward = _upsample_flow(torch.cat(flows[:count]).to(frames), scale)  # centre -> neighbour
    backward = _upsample_flow(torch.cat(flows[count:]).to(frames), scale)  # neighbour -> centre
    forward_valid = warp_valid(forward).unsqueeze(1).to(frames.dtype)
    # A low-resolution pixel of a neighbour is simulated from the centre where all its
    # scale x scale pixels find their source inside the frame.
    backward_valid = -F.max_pool2d(-warp_valid(backward).unsqueeze(1).to(frames.dtype), scale)
    backward_kernel = bicubic_kernel(backward)
    forward_kernel = forward.new_ones(count, 4, *forward.shape[2:])
    final = min(iterations, _SR_FINAL_ITERATIONS)
    for _ in range(iterations - final):
        seen = memc_ops.adaptive_warp(estimate.expand(count, -1, -1, -1), backward, backward_kernel)
        residual = low_neighbours - downscale(seen)
        misfit = _box(residual.square().mean(1, keepdim=True), 3).sqrt()
        weights = ((2.0 * _SR_TOLERANCE - misfit) / _SR_TOLERANCE).clamp(0.0, 1.0) * backward_valid
        weights = -F.max_pool2d(-weights, _SR_ERODE, 1, _SR_ERODE // 2)  # each weight the least around it
        # The upsampled residuals and weights go back onto the centre in one warp.
        weights = F.interpolate(weights, scale_factor=float(scale), mode="bilinear", align_corners=False)
        back = memc_ops.adaptive_warp(torch.cat((_upsample(residual, scale), weights), 1), forward, forward_kernel)
        weights = back[:, 3:] * forward_valid
        total = weights.sum(0, keepdim=True)
        correction = _upsample(low_target - downscale(estimate), scale) + (back[:, :3] * weights).sum(0, keepdim=True)
        step = 1.0 + (_SR_STEP - 1.0) * total.clamp(max=1.0)
        estimate = estimate + step * correction / (1.0 + total)
    for _ in range(final):  # the centre alone, back onto its own low-resolution frame
        estimate = estimate + _upsample(low_target - downscale(estimate), scale)
    return estimate[0].clamp(0, 1)


def enhance(frames: Frames, centre: Optional[int] = None, task: str = "denoise", *, sigma: Optional[float] = None,
            scale: Optional[int] = None, strength: Optional[float] = None, temporal: Optional[bool] = None) -> Tensor:
    """The training-free enhancement of the centre frame of a window.

    Args:
        frames: (T, 3, H, W) RGB in [0, 1] (or a list of T (3, H, W) frames): the frame to enhance
            and 2 to 6 neighbours (fewer at the ends of a clip), in time order. For ``"sr"``, the
            low-resolution frames as they are (not upsampled).
        centre: the index of the frame to enhance (default T // 2).
        task: ``"denoise"``, ``"deblock"`` or ``"sr"``.
        sigma: for ``"denoise"``, the noise's standard deviation on 0..255 (None: estimated).
        scale: for ``"sr"``, 2 or 4.
        strength: for ``"deblock"``, the artefact level on 0..255 (None: 6).
        temporal: use the neighbours (None: True, the default of every task); False gives the
            single-frame method.

    Returns:
        (3, H, W) in [0, 1] (``scale`` times larger for ``"sr"``).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    for name, value, owner in (("sigma", sigma, "denoise"), ("strength", strength, "deblock"), ("scale", scale, "sr")):
        if value is not None and task != owner:
            raise ValueError(f"{name} applies to the {owner} task only; got {name}={value!r} with task {task!r}")
    options = {} if temporal is None else {"temporal": bool(temporal)}
    if task == "denoise":
        return denoise(frames, centre, sigma, **options)
    if task == "deblock":
        return deblock(frames, centre, _DEBLOCK_STRENGTH if strength is None else strength, **options)
    if scale is None:
        raise ValueError("the sr task needs a scale: 2 or 4")
    return super_resolve(frames, centre, scale, **options)


# --- Degradations and measures --------------------------------------------------------------------


def add_gaussian_noise(frames: Tensor, sigma: float, seed: int) -> Tensor:
    """``frames`` in [0, 1] plus white Gaussian noise of standard deviation ``sigma`` on 0..255,
    drawn from ``torch.Generator().manual_seed(seed)``, clipped to [0, 1] and rounded to 8-bit
    levels (as a saved noisy frame would be). The same seed gives the same noise."""
    sigma = _check_sigma(sigma)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer; got {type(seed).__name__}")
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(frames.shape, generator=generator, dtype=torch.float64) * (sigma / 255.0)
    noisy = (frames.double().cpu() + noise).clamp(0, 1)
    return ((noisy * 255.0).round() / 255.0).to(device=frames.device, dtype=torch.float32)


def _run_ffmpeg(arguments: List[str], what: str, stdin: Optional[bytes] = None) -> bytes:
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin" if stdin is None else "-y", *arguments]
    result = subprocess.run(command, input=stdin, capture_output=True)
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        last = detail[-1] if detail else "no message"
        raise RuntimeError(f"FFmpeg failed to {what} (exit status {result.returncode}): {last}")
    return result.stdout


def h264_compress(frames: Tensor, qp: int) -> Tensor:
    """``frames`` (T, 3, H, W) in [0, 1] encoded as one H.264 clip (libx264, constant QP ``qp``
    from 0 to 51, preset medium, 4:2:0, one thread so the result is the same on every run) by the
    FFmpeg of imageio-ffmpeg, and decoded back: (T, 3, H, W) at 8-bit levels. Odd sizes are padded
    by edge replication for 4:2:0 and cropped back. FFmpeg's exit status is checked."""
    if isinstance(qp, bool) or not isinstance(qp, numbers.Integral) or not 0 <= qp <= 51:
        raise ValueError(f"qp must be an integer from 0 to 51; got {qp!r}")
    if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must have shape (T, 3, H, W) with T >= 1; got {tuple(frames.shape)}")
    count, _, height, width = frames.shape
    padded = F.pad(frames.float().cpu(), (0, width % 2, 0, height % 2), mode="replicate")
    pad_h, pad_w = padded.shape[2:]
    raw = (padded.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy().tobytes()
    with tempfile.TemporaryDirectory(prefix="memc-h264-") as folder:
        clip = os.path.join(folder, "clip.mkv")
        _run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{pad_w}x{pad_h}", "-r", "25", "-i", "pipe:0",
                     "-c:v", "libx264", "-preset", "medium", "-qp", str(int(qp)), "-threads", "1",
                     "-pix_fmt", "yuv420p", clip], f"encode H.264 at QP {qp}", stdin=raw)
        decoded = _run_ffmpeg(["-i", clip, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], "decode the H.264 clip")
    expected = count * pad_h * pad_w * 3
    if len(decoded) != expected:
        raise RuntimeError(f"FFmpeg decoded {len(decoded)} bytes, expected {expected} ({count} frames of "
                           f"{pad_w}x{pad_h})")
    pixels = torch.from_numpy(np.frombuffer(decoded, dtype=np.uint8).reshape(count, pad_h, pad_w, 3).copy())
    return (pixels.permute(0, 3, 1, 2).float() / 255.0)[..., :height, :width].to(frames.device)


def degrade(frames: Tensor, task: str, *, seed: int = 0, sigma: float = 20.0, qp: int = 37, scale: int = 4) -> Tensor:
    """The evaluation's degradation of clean ``frames`` (T, 3, H, W) for ``task``: Gaussian noise
    of ``sigma`` (seeded) for ``"denoise"``, H.264 at ``qp`` for ``"deblock"``, bicubic
    downscaling by ``scale`` for ``"sr"``."""
    if task == "denoise":
        return add_gaussian_noise(frames, sigma, seed)
    if task == "deblock":
        return h264_compress(frames, qp)
    if task == "sr":
        return bicubic_downscale(frames, scale)
    raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")


def quality(output: Tensor, truth: Tensor) -> Dict[str, float]:
    """PSNR and SSIM of ``output`` against ``truth`` (3, H, W) in [0, 1], on 8-bit levels, as
    :mod:`memc_models.metrics` measures them (SSIM is NaN for frames under 11 x 11)."""
    if output.shape != truth.shape:
        raise ValueError(f"output {tuple(output.shape)} and truth {tuple(truth.shape)} must have one shape")
    return {"PSNR": psnr(output, truth), "SSIM": ssim(output, truth) if ssim_defined(output) else float("nan")}
