"""Running a method on frames: the device to run on, and an interpolator for the training-free
path or a MEMC-Net checkpoint, whose outputs are checked to be finite."""

from typing import Callable, List, Optional, Sequence

import torch
from torch import Tensor

from .checkpoint import load_enhancement_model, load_model
from .errors import UserError
from .frames import check_finite
from .streaming import Staged

__all__ = ["Enhancer", "Interpolator", "build_enhancer", "build_interpolator", "pick_device", "release_mode_note"]

#: Interpolates (1, 3, H, W) frames in [0, 1] at several times in (0, 1).
Interpolator = Callable[[Tensor, Tensor, Sequence[float]], List[Tensor]]

#: Restores the centre frame of a window: (T, 3, H, W) frames in [0, 1] (T from 3 to 7) and the
#: centre's index -> (3, H, W), or (3, scale*H, scale*W) for super-resolution.
Enhancer = Callable[[Tensor, int], Tensor]


def pick_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when a GPU and our CUDA kernels are there, else the CPU), ``"cpu"`` or
    ``"cuda"`` (a UserError when it cannot run)."""
    import memc_ops

    cuda_ok = torch.cuda.is_available() and memc_ops.cuda_kernels_built()
    if name == "auto":
        return torch.device("cuda" if cuda_ok else "cpu")
    if name == "cuda" and not cuda_ok:
        why = "no CUDA GPU is visible" if not torch.cuda.is_available() else "memc_ops was built without CUDA kernels"
        raise UserError(f"--device cuda: {why}; use --device cpu")
    return torch.device(name)


def release_mode_note(model) -> Optional[str]:
    """What ``model`` computes as the authors' release does and memc by default would not (the
    released weights load so: see :func:`memc_models.load_original_checkpoint`), or None."""
    config = model.config
    release = []
    if config.padding == "release":
        release.append("pads frames as the released evaluation script (to multiples of 128)")
    if not config.fill_from_below:
        release.append("fills flow holes as the released kernel (never from below)")
    if not release:
        return None
    return f"run in the authors' release mode: {' and '.join(release)}"


def build_interpolator(device: torch.device, checkpoint: Optional[str] = None, model: str = "memc",
                       half: bool = False, fast: bool = False,
                       note: Optional[Callable[[str], None]] = None) -> Interpolator:
    """The default training-free path (one orientation instead of the four-way self-ensemble when
    ``fast``), or the MEMC-Net ``model`` from ``checkpoint`` (float16 autocast on CUDA with
    ``half``). An output that is not finite is a UserError naming the checkpoint (or the path).
    The training-free path comes as a :class:`~memc_models.streaming.Staged` interpolator (DIS
    motion, then rendering), whose stages a pipeline can overlap. ``note`` is told, in one line,
    when the checkpoint runs in the authors' release mode (:func:`release_mode_note`)."""
    if checkpoint is None:
        from .classical import ClassicalConfig, ClassicalInterpolator

        classical = ClassicalInterpolator(ClassicalConfig(orientations=1 if fast else 4))

        def motion(frame0: Tensor, frame1: Tensor):
            return classical.motion(frame0.to(device), frame1.to(device))

        def render(frame0: Tensor, frame1: Tensor, pair_motion, times: Sequence[float]) -> List[Tensor]:
            frames = classical.render(frame0.to(device), frame1.to(device), pair_motion, times)
            return [check_finite(frame, "the training-free path") for frame in frames]

        return Staged(motion, render)
    net = load_model(checkpoint, model, device)
    mode = release_mode_note(net)
    if note is not None and mode is not None:
        note(f"--checkpoint {checkpoint}: {mode}")
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=half and device.type == "cuda")
    made_by = f"--checkpoint {checkpoint}"

    @torch.no_grad()
    def run(frame0: Tensor, frame1: Tensor, times: Sequence[float]) -> List[Tensor]:
        frame0, frame1 = frame0.to(device), frame1.to(device)
        with autocast:  # checked before clamping, which would turn inf into white
            return [check_finite(net(frame0, frame1, float(t)).float(), made_by).clamp(0, 1) for t in times]

    return run


def build_enhancer(device: torch.device, task: str, checkpoint: Optional[str] = None, *,
                   sigma: Optional[float] = None, scale: Optional[int] = None,
                   strength: Optional[float] = None, half: bool = False) -> Enhancer:
    """The training-free enhancement of :func:`memc_models.enhancement.enhance` for ``task``
    (``sigma`` for ``"denoise"``: None estimates it per frame; ``scale`` for ``"sr"``; ``strength``
    for ``"deblock"``: None is the library's default), or the
    MEMC-Net_VE model from ``checkpoint`` (:func:`memc_models.checkpoint.load_enhancement_model`),
    which for ``"sr"`` takes the frames bicubic-upsampled by ``scale`` first (the authors' input
    convention) and does not take ``sigma`` or ``strength`` (float16 autocast on CUDA with ``half``).
    Runs on ``device`` (DIS flow on the CPU); an output that is not finite is a UserError naming
    the checkpoint (or the path)."""
    from . import enhancement

    if task not in enhancement.TASKS:
        raise ValueError(f"task must be one of {', '.join(enhancement.TASKS)}; got {task!r}")
    if task == "sr" and scale is None:
        raise ValueError("the sr task needs a scale: 2 or 4")
    if checkpoint is None:
        options = {"denoise": {"sigma": sigma}, "deblock": {"strength": strength}, "sr": {"scale": scale}}[task]

        def restore(frames: Tensor, centre: int) -> Tensor:
            restored = enhancement.enhance(frames.to(device), centre, task, **options)
            return check_finite(restored, "the training-free path")

        return restore
    net = load_enhancement_model(checkpoint, device)
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=half and device.type == "cuda")
    made_by = f"--checkpoint {checkpoint}"

    @torch.no_grad()
    def run(frames: Tensor, centre: int) -> Tensor:
        frames = frames.to(device)
        if task == "sr":
            frames = enhancement.bicubic_upsample(frames, scale)
        with autocast:  # checked before clamping, which would turn inf into white
            return check_finite(net(frames.unsqueeze(0), centre)[0].float(), made_by).clamp(0, 1)

    return run
