"""Reading and writing frames and videos for the command-line tools.

Images go through imageio; videos are streamed frame by frame through imageio-ffmpeg, which
ships its own FFmpeg. Every failure a user can fix is raised as :class:`UserError`.
"""

import os
import re
import subprocess
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["UserError", "read_image", "write_image", "to_uint8", "VideoReader", "VideoWriter", "has_audio",
           "check_image_output", "check_video_output"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# The video encoder per container: each one FFmpeg (as shipped by imageio-ffmpeg) can put in it.
VIDEO_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "libx264",
                ".webm": "libvpx-vp9"}


def _extension(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def check_image_output(path: str) -> None:
    """Raises UserError unless ``path`` names an image format we write (checked before any work)."""
    if _extension(path) not in IMAGE_EXTENSIONS:
        raise UserError(f"{path}: an output image needs one of the extensions {', '.join(IMAGE_EXTENSIONS)}")


def check_video_output(path: str) -> None:
    """Raises UserError unless ``path`` names a video container we write (checked before any work)."""
    if _extension(path) not in VIDEO_CODECS:
        raise UserError(f"{path}: an output video needs one of the extensions {', '.join(VIDEO_CODECS)}")


class UserError(Exception):
    """A problem with the user's input that they can act on; the tools print it without a traceback."""


def read_image(path: str) -> Tensor:
    """An image file as a (1, 3, H, W) float32 RGB tensor in [0, 1] (grey is repeated, alpha dropped)."""
    import imageio.v3 as iio

    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        pixels = iio.imread(path)
    except Exception as error:  # imageio raises many types for files it cannot decode
        raise UserError(f"{path}: cannot read it as an image ({error})") from None
    if pixels.ndim == 3 and pixels.shape[0] > 1 and pixels.shape[-1] not in (1, 2, 3, 4):
        raise UserError(f"{path}: has {pixels.shape[0]} frames; pass still images (or one video)")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4):
        raise UserError(f"{path}: unsupported image layout {pixels.shape}")
    if pixels.shape[-1] in (1, 2):  # grey (with alpha)
        pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    pixels = pixels[..., :3]
    if pixels.dtype == np.uint8:
        scale = 255.0
    elif pixels.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(pixels.dtype, np.floating):
        scale = 1.0
    else:
        raise UserError(f"{path}: unsupported pixel type {pixels.dtype}")
    return torch.from_numpy(np.ascontiguousarray(pixels).astype(np.float32) / scale).permute(2, 0, 1).unsqueeze(0)


def to_uint8(frame: Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> (H, W, 3) uint8, rounded."""
    if frame.dim() == 4:
        frame = frame[0]
    return (frame.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def write_image(path: str, frame) -> None:
    """Writes a (1, 3, H, W) / (3, H, W) tensor in [0, 1], or an (H, W, 3) uint8 array; creates
    the folder."""
    import imageio.v3 as iio

    check_image_output(path)
    pixels = frame if isinstance(frame, np.ndarray) else to_uint8(frame)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        iio.imwrite(path, pixels)
    except Exception as error:
        raise UserError(f"{path}: cannot write the image ({error})") from None


def has_audio(path: str) -> bool:
    """Whether the file has an audio stream (asks the FFmpeg that imageio-ffmpeg ships)."""
    import imageio_ffmpeg

    try:
        result = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path],
            capture_output=True, text=True, errors="replace", timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return re.search(r"Stream #\S+.*: Audio:", result.stderr) is not None


class VideoReader:
    """Streams a video's frames as (H, W, 3) uint8 RGB arrays; ``fps``, ``size`` (W, H) and an
    estimate of ``frame_count`` are known after construction."""

    def __init__(self, path: str):
        import imageio_ffmpeg

        if not os.path.isfile(path):
            raise UserError(f"{path}: no such file")
        self.path = path
        try:
            self._frames = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
            meta = next(self._frames)
        except (StopIteration, Exception) as error:
            raise UserError(f"{path}: cannot read it as a video ({_first_line(error)})") from None
        self.fps: float = float(meta.get("fps") or 0.0)
        self.size: Tuple[int, int] = tuple(meta["size"])
        if not self.fps > 0:
            raise UserError(f"{path}: the video reports no frame rate")
        try:
            self.frame_count: Optional[int] = imageio_ffmpeg.count_frames_and_secs(path)[0]
        except Exception:
            self.frame_count = None

    def __iter__(self) -> Iterator[np.ndarray]:
        width, height = self.size
        try:
            for raw in self._frames:
                yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
        except Exception as error:
            raise UserError(f"{self.path}: cannot decode the video ({_first_line(error)})") from None

    def close(self) -> None:
        self._frames.close()


class VideoWriter:
    """Streams (H, W, 3) uint8 RGB frames into a video file at ``fps``, keeping the size exactly
    (H.264, or VP9 in .webm: see VIDEO_CODECS; yuv444p when a side is odd, which 4:2:0 cannot hold)."""

    def __init__(self, path: str, size: Tuple[int, int], fps: float, quality: float = 8):
        import imageio_ffmpeg

        check_video_output(path)
        width, height = size
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        codec = VIDEO_CODECS[_extension(path)]
        self.path = path
        self.frames_written = 0
        self._writer = imageio_ffmpeg.write_frames(
            path, (width, height), fps=fps, quality=quality, codec=codec, pix_fmt_out=pix_fmt, macro_block_size=1,
            ffmpeg_log_level="error",
        )
        try:
            self._writer.send(None)  # starts FFmpeg
        except Exception as error:
            raise UserError(f"{path}: cannot write a video there ({_first_line(error)})") from None

    def write(self, frame: np.ndarray) -> None:
        try:
            self._writer.send(np.ascontiguousarray(frame))
        except Exception as error:
            raise UserError(f"{self.path}: writing the video failed ({_first_line(error)})") from None
        self.frames_written += 1

    def close(self) -> None:
        self._writer.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
