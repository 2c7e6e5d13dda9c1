"""Evaluating video enhancement on clean clips: windows of each clip degraded reproducibly
(:func:`memc_models.enhancement.degrade`), the centre frame restored by every method, scored on
8-bit levels against the clean centre (PSNR, SSIM: :func:`memc_models.enhancement.quality`) and
timed. ``memc-eval enhance`` and ``benchmarks/bench_enhance.py`` both run it.

    clips, unusable = folder_clips("middlebury/")             # a folder of frames, or of such folders
    windows = clip_windows(clips, unusable=unusable)          # every frame with a full window
    methods = reference_methods("denoise", sigma=20) + [Method("ours", restore)]
    scores = evaluate_enhancement(windows, "denoise", methods, seed=0, sigma=20)

A clip of T frames is evaluated on symmetric windows: h = min(3, (T - 1) // 2) neighbours on each
side, so every frame from h to T - 1 - h is a centre (a Middlebury sequence of three frames: its
middle frame from the other two; a long clip: 7-frame windows).
"""

import math
import os
import time
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from . import enhancement
from .errors import UserError
from .images import list_frames, read_image
from .memc_net_ve import WINDOW
from .streaming import FolderSource

__all__ = ["Clip", "Method", "Score", "Window", "clip_windows", "evaluate_enhancement", "folder_clips", "frames_clip",
           "nlm_denoise", "reference_methods", "window_centres"]

class Clip(NamedTuple):
    """A clip of clean frames: ``read(index)`` gives frame ``index`` (0 .. ``count`` - 1) as a
    (3, H, W) tensor in [0, 1]."""

    name: str
    count: int
    read: Callable[[int], Tensor]


class Window(NamedTuple):
    """Clean ``frames`` (T, 3, H, W) and the index of the one to restore."""

    name: str
    frames: Tensor
    centre: int


class Method(NamedTuple):
    """A method's name in the tables, and ``restore(degraded (T, 3, h, w), centre) -> (3, H, W)``."""

    name: str
    restore: Callable[[Tensor, int], Tensor]


class Score(NamedTuple):
    """A method's mean PSNR (dB; inf if every window is reproduced exactly) and SSIM (over the
    windows where it is defined: NaN if none is) and its seconds per restored frame."""

    method: str
    psnr: float
    ssim: float
    seconds: float


def frames_clip(name: str, frames: Sequence[Tensor]) -> Clip:
    """A clip of frames already in memory ((3, H, W) tensors in [0, 1])."""
    return Clip(name, len(frames), lambda index: frames[index])


def _folder_clip(folder: str, name: str) -> Clip:
    source = FolderSource(folder)  # frames whose headers give different sizes: an error here
    paths = source.paths
    return Clip(name, len(paths), lambda index: read_image(paths[index])[0])


def folder_clips(root: str) -> Tuple[List[Clip], List[str]]:
    """The clips under ``root``: the folder itself when it holds image files (one clip), else each
    folder in it that does (in name order), e.g. Middlebury's ``SEQUENCE/frame10.png,
    frame10i11.png, frame11.png``. Returns (clips, unusable), where ``unusable`` names each folder
    that cannot be used and why (``NAME: why``): fewer than 3 frames, frames of different sizes,
    several formats. A ``root`` that is missing or holds no clip is a UserError."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such folder" if not os.path.exists(root) else f"{root} is not a folder of frames")
    if list_frames(root):
        candidates = [(root, os.path.basename(os.path.normpath(root)) or root)]
    else:
        names = [name for name in os.listdir(root)
                 if not name.startswith(".") and os.path.isdir(os.path.join(root, name))]
        candidates = [(os.path.join(root, name), name) for name in sorted(names)]
    clips, unusable = [], []
    for folder, name in candidates:
        try:
            clip = _folder_clip(folder, name)
        except UserError as error:
            unusable.append(f"{name}: {error}")
            continue
        if clip.count < 3:
            if clip.count or len(candidates) == 1:
                unusable.append(f"{name}: holds {clip.count} frame(s); a window needs at least 3")
            continue
        clips.append(clip)
    if not clips:
        why = f" ({'; '.join(unusable[:5])})" if unusable else ""
        raise UserError(f"{root}: no folder of at least 3 frames (a clip, or a folder of clips){why}")
    return clips, unusable


def window_centres(count: int, limit: Optional[int] = None) -> Tuple[int, List[int]]:
    """(h, centres): the neighbours on each side, min(3, (count - 1) // 2), and the frames of a
    ``count``-frame clip that have h on both sides; at most ``limit`` of them, spread evenly (the
    first and the last included)."""
    if count < 3:
        raise ValueError(f"a clip needs at least 3 frames for a window; got {count}")
    half = min(WINDOW // 2, (count - 1) // 2)
    first, last = half, count - 1 - half
    centres = list(range(first, last + 1))
    if limit is not None and limit < len(centres):
        centres = [int(c) for c in np.unique(np.linspace(first, last, limit).round().astype(int))]
    return half, centres


def clip_windows(clips: Iterable[Clip], limit: Optional[int] = None,
                 unusable: Optional[List[str]] = None) -> Iterator[Window]:
    """The windows of every clip (see :func:`window_centres`; at most ``limit`` a clip), each frame
    read once while the windows that hold it go by. A clip whose frame cannot be read, or whose
    frames differ in size, is named in ``unusable`` (``NAME: why``; its later windows skipped) when
    a list is given, else it is a UserError."""
    for clip in clips:
        half, centres = window_centres(clip.count, limit)
        held = {}
        try:
            for centre in centres:
                span = range(centre - half, centre + half + 1)
                held = {index: held[index] if index in held else clip.read(index) for index in span}
                name = clip.name if len(centres) == 1 else f"{clip.name}@{centre}"
                first = held[span[0]]
                for index in span[1:]:
                    if held[index].shape != first.shape:
                        raise UserError(f"frame {index} is {tuple(held[index].shape[1:])}, frame {span[0]} "
                                        f"{tuple(first.shape[1:])}; the frames differ in size")
                yield Window(name, torch.stack([held[index] for index in span]), half)
        except UserError as error:
            problem = f"{clip.name}: {error}"
            if unusable is None:
                raise UserError(problem) from None
            unusable.append(problem)


# --- The reference methods ------------------------------------------------------------------------


def _bgr8(frame: Tensor) -> np.ndarray:
    import cv2

    pixels = (frame.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)


def _rgb(image: np.ndarray) -> Tensor:
    import cv2

    return torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255.0


def nlm_denoise(frames: Tensor, centre: int, h: float, multi: bool = True) -> Tensor:
    """OpenCV's non-local means of the centre of ``frames`` (T, 3, H, W) in [0, 1], h = hColor =
    ``h``, 7x7 templates, 21x21 search: ``fastNlMeansDenoisingColoredMulti`` over the widest odd
    window centred on the frame that fits (OpenCV needs one), or ``fastNlMeansDenoisingColored``
    on the frame alone when not ``multi``. Returns (3, H, W)."""
    import cv2

    if not multi:
        return _rgb(cv2.fastNlMeansDenoisingColored(_bgr8(frames[centre]), None, h, h, 7, 21))
    span = min(centre, len(frames) - 1 - centre)
    images = [_bgr8(frame) for frame in frames]
    return _rgb(cv2.fastNlMeansDenoisingColoredMulti(images, centre, 2 * span + 1, None, h, h, 7, 21))


def reference_methods(task: str, *, sigma: float = 20.0, qp: int = 37, scale: int = 4,
                      nlm_h: Optional[float] = None) -> List[Method]:
    """What ours is compared with, for ``task``: the degraded input (for ``"sr"``, bicubic
    upsampling, which brings it to the output size) and the peers: OpenCV's non-local means on one
    frame and on the window for ``"denoise"`` (h = ``nlm_h``, by default 0.6 sigma: 12 at sigma
    20). Deblocking has no peer here."""
    if task == "denoise":
        h = 0.6 * sigma if nlm_h is None else nlm_h
        return [
            Method("noisy input", lambda frames, c: frames[c]),
            Method(f"OpenCV NLM, 1 frame (h={h:g})", lambda frames, c: nlm_denoise(frames, c, h, multi=False)),
            Method(f"OpenCV NLM multi-frame (h={h:g})", lambda frames, c: nlm_denoise(frames, c, h)),
        ]
    if task == "deblock":
        return [Method(f"H.264 QP {qp} input", lambda frames, c: frames[c])]
    if task == "sr":
        return [Method("bicubic", lambda frames, c: enhancement.bicubic_upsample(frames[c], scale))]
    raise ValueError(f"task must be one of {', '.join(enhancement.TASKS)}; got {task!r}")


# --- The evaluation ---------------------------------------------------------------------------------


def evaluate_enhancement(windows: Iterable[Window], task: str, methods: Sequence[Method], *, seed: int = 0,
                         sigma: float = 20.0, qp: int = 37, scale: int = 4,
                         on_window: Optional[Callable[[], None]] = None) -> List[Score]:
    """Each window's clean frames degraded for ``task`` (:func:`memc_models.enhancement.degrade`;
    window k with seed ``seed + k``, so a run is reproducible and the windows' noise independent),
    its centre restored by every method in turn (the same degraded frames for all) and scored
    against the clean centre (for ``"sr"``, cropped to the multiple of ``scale`` the low-resolution
    grid covers). Returns a :class:`Score` per method, in order (none when there is no window);
    ``on_window`` is called after each window."""
    names = [method.name for method in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"the methods' names must differ; got {names}")
    psnrs = {name: [] for name in names}
    ssims = {name: [] for name in names}
    seconds = {name: 0.0 for name in names}
    count = 0
    for index, window in enumerate(windows):
        degraded = enhancement.degrade(window.frames, task, seed=seed + index, sigma=sigma, qp=qp, scale=scale)
        truth = window.frames[window.centre]
        if task == "sr":
            truth = truth[:, : degraded.shape[2] * scale, : degraded.shape[3] * scale]
        for method in methods:
            start = time.perf_counter()
            output = method.restore(degraded, window.centre)
            seconds[method.name] += time.perf_counter() - start
            scores = enhancement.quality(output.detach().float().cpu().clamp(0, 1), truth)
            psnrs[method.name].append(scores["PSNR"])
            ssims[method.name].append(scores["SSIM"])
        count += 1
        if on_window is not None:
            on_window()
    if count == 0:
        return []

    def mean_ssim(values: List[float]) -> float:
        defined = [value for value in values if not math.isnan(value)]
        return float(np.mean(defined)) if defined else math.nan

    return [Score(name, float(np.mean(psnrs[name])), mean_ssim(ssims[name]), seconds[name] / count) for name in names]
