"""Running a method on frames: the device to run on, and an interpolator for the training-free
path or a MEMC-Net checkpoint, whose outputs are checked to be finite."""

from typing import Callable, List, Optional, Sequence

import torch
from torch import Tensor

from .checkpoint import load_model
from .errors import UserError
from .frames import check_finite

__all__ = ["Interpolator", "build_interpolator", "pick_device"]

#: Interpolates (1, 3, H, W) frames in [0, 1] at several times in (0, 1).
Interpolator = Callable[[Tensor, Tensor, Sequence[float]], List[Tensor]]


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


def build_interpolator(device: torch.device, checkpoint: Optional[str] = None, model: str = "memc",
                       half: bool = False, fast: bool = False) -> Interpolator:
    """The default training-free path (one orientation instead of the four-way self-ensemble when
    ``fast``), or the MEMC-Net ``model`` from ``checkpoint`` (float16 autocast on CUDA with
    ``half``). An output that is not finite is a UserError naming the checkpoint (or the path)."""
    if checkpoint is None:
        from .classical import ClassicalConfig, ClassicalInterpolator

        classical = ClassicalInterpolator(ClassicalConfig(orientations=1 if fast else 4))
        made_by = "the training-free path"

        def run(frame0: Tensor, frame1: Tensor, times: Sequence[float]) -> List[Tensor]:
            return classical.interpolate(frame0.to(device), frame1.to(device), times)
    else:
        net = load_model(checkpoint, model, device)
        autocast = torch.autocast("cuda", dtype=torch.float16, enabled=half and device.type == "cuda")
        made_by = f"--checkpoint {checkpoint}"

        @torch.no_grad()
        def run(frame0: Tensor, frame1: Tensor, times: Sequence[float]) -> List[Tensor]:
            frame0, frame1 = frame0.to(device), frame1.to(device)
            with autocast:  # checked before clamping, which would turn inf into white
                return [check_finite(net(frame0, frame1, float(t)).float(), made_by).clamp(0, 1) for t in times]

    def checked(frame0: Tensor, frame1: Tensor, times: Sequence[float]) -> List[Tensor]:
        return [check_finite(frame, made_by) for frame in run(frame0, frame1, times)]

    return checked
