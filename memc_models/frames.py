"""Frames as the tools pass them around, and the checks they get.

A frame is a (1, 3, H, W) float32 RGB tensor in [0, 1]; files and videos hold (H, W, 3) uint8 or
uint16 arrays. These conversions and checks are written once here for every reader, writer and
program.
"""

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .errors import UserError

__all__ = ["check_finite", "check_same_size", "from_pixels", "size_text", "to_uint8", "to_uint16"]


def from_pixels(pixels: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 or uint16 -> (1, 3, H, W) float32 in [0, 1]."""
    white = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return torch.from_numpy(pixels.astype(np.float32) / white).permute(2, 0, 1).unsqueeze(0)


def _levels(frame: Tensor, white: float) -> Tensor:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> (H, W, 3) levels 0..white, rounded, as float32."""
    if not ((frame.dim() == 4 and frame.shape[:2] == (1, 3)) or (frame.dim() == 3 and frame.shape[0] == 3)):
        raise ValueError(f"expected one frame of shape (1, 3, H, W) or (3, H, W); got {tuple(frame.shape)}")
    if frame.dim() == 4:
        frame = frame[0]
    return (frame.detach().float().clamp(0, 1) * white).round().permute(1, 2, 0).cpu()


def to_uint8(frame: Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> (H, W, 3) uint8, rounded."""
    return _levels(frame, 255.0).to(torch.uint8).numpy()


def to_uint16(frame: Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> (H, W, 3) uint16, rounded."""
    return _levels(frame, 65535.0).numpy().astype(np.uint16)


def size_text(frame: Tensor) -> str:
    """'WxH' of a (..., H, W) frame."""
    return f"{frame.shape[-1]}x{frame.shape[-2]}"


def check_same_size(frame: Tensor, name: str, reference: Tensor, reference_name: str) -> None:
    """A UserError naming both frames unless they have one size."""
    if frame.shape[-2:] != reference.shape[-2:]:
        raise UserError(f"the frames differ in size: {name} is {size_text(frame)}, {reference_name} is "
                        f"{size_text(reference)}")


def check_finite(frame: Tensor, made_by: str, between: Optional[str] = None) -> Tensor:
    """``frame`` unchanged if every value is finite, else a UserError naming what made it (a NaN
    would be written as black: a wrong result that looks like one)."""
    if not bool(torch.isfinite(frame).all()):
        where = f" between {between}" if between else ""
        raise UserError(f"{made_by} produced a frame{where} that is not finite (NaN or inf); "
                        "its weights or settings are broken")
    return frame
