"""Reading and writing frames and videos for the command-line tools.

Images go through imageio; videos are streamed frame by frame through imageio-ffmpeg, which
ships its own FFmpeg. Every failure a user can fix is raised as :class:`UserError`.
"""

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["UserError", "read_image", "write_image", "copy_image", "to_uint8", "to_uint16", "stored_bits", "stored_as_written", "image_size", "list_frames",
           "VideoReader", "VideoWriter", "has_audio", "check_image_output", "check_video_output", "check_output"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: The output formats written with 16 bits per sample when asked to.
SIXTEEN_BIT_EXTENSIONS = (".png", ".tif", ".tiff")
# The video encoder per container: each one FFmpeg (as shipped by imageio-ffmpeg) can put in it.
VIDEO_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "libx264",
                ".webm": "libvpx-vp9"}
# The audio encoder per container, for an input's audio that cannot be copied into it as it is.
AUDIO_CODECS = {".mp4": "aac", ".m4v": "aac", ".mov": "aac", ".mkv": "aac", ".avi": "libmp3lame", ".webm": "libopus"}


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
    """An image file as a (1, 3, H, W) float32 RGB tensor in [0, 1], upright by its EXIF orientation
    (grey is repeated, alpha dropped, CMYK and palettes converted to RGB, 16-bit samples kept whole)."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory; expected an image file")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    pixels = _decode_image(path)
    if pixels.ndim == 4 and pixels.shape[0] == 1:  # a one-frame sequence is a still image
        pixels = pixels[0]
    if pixels.ndim == 4 or (pixels.ndim == 3 and pixels.shape[-1] not in (1, 2, 3, 4)):
        raise UserError(f"{path}: has {pixels.shape[0]} frames; pass still images (or one video)")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3:
        raise UserError(f"{path}: unsupported image layout {pixels.shape}")
    if pixels.shape[-1] in (1, 2):  # grey (with alpha)
        pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    pixels = np.ascontiguousarray(pixels[..., :3])
    if pixels.dtype.byteorder not in ("=", "|"):  # big-endian samples (Pillow's "I;16B") compare as such
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    if pixels.dtype == np.bool_:
        scale = 1.0
    elif pixels.dtype == np.uint8:
        scale = 255.0
    elif pixels.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(pixels.dtype, np.floating):
        # No scale can be told from floats: [0, 1] is the convention, anything else is refused
        # rather than guessed (a 0..255 TIFF read as 0..1 comes out white).
        low, high = float(pixels.min()), float(pixels.max())
        if not (low >= 0.0 and high <= 1.0):  # NaN fails too
            raise UserError(f"{path}: floating-point pixels range over [{low:g}, {high:g}]; expected values in [0, 1]")
        scale = 1.0
    elif np.issubdtype(pixels.dtype, np.integer):
        # 32-bit integer images have no agreed white level (the full int32 range would make any
        # real image black), so they are refused with what to do instead.
        raise UserError(f"{path}: {pixels.dtype} pixels (values {pixels.min()}..{pixels.max()}) have no standard "
                        "scale; save it with 8- or 16-bit integers, or floats in [0, 1]")
    else:
        raise UserError(f"{path}: unsupported pixel type {pixels.dtype}")
    return torch.from_numpy(pixels.astype(np.float32) / scale).permute(2, 0, 1).unsqueeze(0)


def stored_bits(path: str) -> int:
    """16 if the image file stores 16 bits per sample (PNG and TIFF can), else 8 (also for files
    Pillow cannot open: floats and other formats are not written back at 16 bits)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return 16 if image.mode.startswith("I;16") or _stored_with_16_bits(image) else 8
    except Exception:
        return 8


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """(width, height) of an image file as :func:`read_image` returns it, from its header alone
    (no decoding); None where that is not sure: a file Pillow cannot open, or one stored on its
    side (EXIF orientation 5-8: Pillow versions differ on which size they report for some)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format == "PNG":  # getexif() would decode a PNG: take the eXIf chunk seen so far
                exif = Image.Exif()
                if "exif" in image.info:
                    exif.load(image.info["exif"])
            else:
                exif = image.getexif()
            if exif.get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                return None
            return image.size
    except Exception:
        return None


def stored_as_written(path: str, bits: int) -> bool:
    """Whether :func:`write_image` with ``bits`` would store this file's picture as the file does:
    upright RGB (no EXIF turn, no alpha, palette, grey or CMYK) with ``bits`` per sample. Such a
    file can be copied instead of decoded and encoded again (which a lossy format would degrade)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode != "RGB" or (16 if _stored_with_16_bits(image) else 8) != bits:
                return False
            if image.format == "PNG":
                return "exif" not in image.info and "icc_profile" not in image.info
            return image.getexif().get(_EXIF_ORIENTATION, 1) == 1
    except Exception:
        return False


def list_frames(folder: str) -> List[str]:
    """The image files in ``folder`` (by extension, hidden files skipped) in natural order: the
    numbers in their names compare as numbers, so frame2.png comes before frame10.png."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: no such folder")
    names = [name for name in os.listdir(folder)
             if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
             and os.path.isfile(os.path.join(folder, name))]
    extensions = sorted({os.path.splitext(name)[1].lower() for name in names})
    if len(extensions) > 1:  # two sequences (or one saved twice) would interleave in name order
        raise UserError(f"{folder}: holds images of several formats ({', '.join(extensions)}); "
                        "keep one sequence of frames per folder")

    def natural(name: str):
        return [(0, int(part), part) if part.isdecimal() else (1, 0, part) for part in re.split(r"(\d+)", name)]

    return [os.path.join(folder, name) for name in sorted(names, key=natural)]


def _decode_image(path: str) -> np.ndarray:
    """The pixels as Pillow decodes them (EXIF orientation applied; modes it stores in other ways
    converted to RGB or L; 16-bit colour through OpenCV, which keeps every bit), else as imageio
    does (float TIFF through tifffile, videos through PyAV: these come back as they are, perhaps
    with several frames)."""
    import imageio.v3 as iio
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise UserError(f"{path}: has {frames} frames; pass still images (or one video)")
            sixteen_bits = _stored_with_16_bits(image)  # first: reading a PNG's EXIF loads it, which clears image.tile
            sixteen_bit_colour = sixteen_bits and image.mode in ("RGB", "RGBA")
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            planar = image.format == "TIFF" and image.tag_v2.get(_TIFF_PLANAR_CONFIGURATION) == 2
            if planar and sixteen_bits:
                # Pillow (and OpenCV) decode these to noise: refuse rather than interpolate it.
                raise UserError(f"{path}: a 16-bit TIFF with separate colour planes is not supported; save it with "
                                "interleaved samples (PlanarConfiguration 1)")
            image.load()  # decodes (at 8 bits): a damaged file fails here, before OpenCV prints about it
            # Pillow keeps only the high byte of 16-bit colour; OpenCV reads all of it. OpenCV turns
            # a TIFF by its orientation tag itself, and fails on some: those keep Pillow's 8 bits.
            if sixteen_bit_colour and (image.format == "PNG" or orientation == 1):
                pixels = _decode_16_bit_colour(path)
                if pixels is not None:
                    return _upright(pixels, orientation)
            image = ImageOps.exif_transpose(image)
            if image.mode == "1":  # 1-bit: as 0 / 255 grey
                image = image.convert("L")
            elif image.mode in ("P", "PA"):
                image = image.convert("RGBA")
            elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
                image = image.convert("RGB")
            return np.asarray(image)
    except UnidentifiedImageError:
        pass  # not a format Pillow knows: imageio's other plugins may
    except UserError:
        raise
    except Exception as error:  # a file Pillow knows but cannot decode (truncated, damaged)
        raise UserError(f"cannot read {path} as an image ({_first_line(error)})") from None
    try:
        with warnings.catch_warnings():  # probing a garbage file wakes deprecated plugins (DICOM)
            warnings.simplefilter("ignore", DeprecationWarning)
            return iio.imread(path)
    except Exception:  # imageio's message lists plugins to install, which would not help here
        raise UserError(f"cannot read {path} as an image (unknown format or damaged file)") from None


_EXIF_ORIENTATION = 0x0112
_TIFF_BITS_PER_SAMPLE = 258
_TIFF_PLANAR_CONFIGURATION = 284


def _stored_with_16_bits(image) -> bool:
    """Whether ``image`` (opened, not yet loaded) stores 16 bits per sample: its TIFF tag says so,
    or the raw mode Pillow decodes it from does ("RGB;16B")."""
    if image.format == "TIFF":
        bits = image.tag_v2.get(_TIFF_BITS_PER_SAMPLE, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) == 16
    for tile in image.tile:
        args = tile[3]  # (codec, extents, offset, args): a plain tuple before Pillow 11
        raw_mode = args[0] if isinstance(args, tuple) else args
        if isinstance(raw_mode, str) and ";16" in raw_mode:
            return True
    return False


def _decode_16_bit_colour(path: str) -> Optional[np.ndarray]:
    """A 16-bit RGB(A) PNG or TIFF as (H, W, 3 or 4) uint16 RGB(A), as stored (no EXIF rotation);
    None where OpenCV cannot decode it."""
    import cv2

    previous_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # a failure falls back to Pillow
    try:
        pixels = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        pixels = None
    finally:
        cv2.utils.logging.setLogLevel(previous_level)
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[-1] not in (3, 4):
        return None
    order = [2, 1, 0, 3][: pixels.shape[-1]]  # OpenCV's BGR(A) to RGB(A)
    return pixels[..., order]


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Pixels stored under EXIF ``orientation`` (1..8) turned upright, as Pillow's exif_transpose does."""
    turned = {
        2: lambda p: p[:, ::-1],           # mirrored left-right
        3: lambda p: p[::-1, ::-1],        # upside down
        4: lambda p: p[::-1],              # mirrored top-bottom
        5: lambda p: p.swapaxes(0, 1),     # transposed
        6: lambda p: np.rot90(p, -1),      # on its side: turn clockwise
        7: lambda p: p[::-1, ::-1].swapaxes(0, 1),  # transverse
        8: lambda p: np.rot90(p, 1),       # on its other side: turn anticlockwise
    }.get(orientation)
    return np.ascontiguousarray(turned(pixels)) if turned else pixels


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


def check_output(path: str) -> None:
    """Raises UserError unless a file can be written at ``path``: it is not a folder, and its folder
    exists and is writable or can be made. Makes nothing (for a bad ``-o`` before any work)."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory; expected an output file name")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):  # the nearest folder that exists: the new ones go in it
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{path}: cannot create the folder {folder} ({existing} is a file)")
    try:  # trying is the only sure test (permissions, read-only file systems, /sys ...)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserError(f"{path}: cannot write into the folder {existing} ({_os_reason(error)})") from None


def _make_folder(path: str) -> None:
    """Makes the folder the file ``path`` goes in."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path}: cannot create the folder {folder} (a file is in the way)") from None
    except OSError as error:
        raise UserError(f"{path}: cannot create the folder {folder} ({_os_reason(error)})") from None


def write_image(path: str, frame, bits: int = 8) -> None:
    """Writes a (1, 3, H, W) / (3, H, W) tensor in [0, 1], or an (H, W, 3) uint8 or uint16 array;
    creates the folder. ``bits=16`` writes a tensor with 16 bits per sample where the format has
    them (PNG, TIFF), else with 8."""
    import imageio.v3 as iio

    check_image_output(path)
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16; got {bits!r}")
    extension = os.path.splitext(path)[1].lower()
    sixteen = bits == 16 and extension in SIXTEEN_BIT_EXTENSIONS
    if isinstance(frame, np.ndarray):
        pixels = frame
    else:
        pixels = to_uint16(frame) if sixteen else to_uint8(frame)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected one (H, W, 3) uint8 or uint16 frame; got a {pixels.dtype} array of shape {pixels.shape}")
    if pixels.dtype == np.uint16 and extension not in SIXTEEN_BIT_EXTENSIONS:
        raise ValueError(f"{path}: 16-bit pixels need one of {', '.join(SIXTEEN_BIT_EXTENSIONS)}")
    _make_folder(path)
    if pixels.dtype == np.uint16:  # Pillow cannot write 16-bit colour; OpenCV can
        import cv2

        try:
            written = cv2.imwrite(path, np.ascontiguousarray(pixels[..., ::-1]))
        except cv2.error as error:
            raise UserError(f"{path}: cannot write the image ({_first_line(error)})") from None
        if not written:
            raise UserError(f"{path}: cannot write the image")
        return
    # Pillow's default JPEG and WebP quality (75), and JPEG's halved colour resolution, blur the
    # fine detail that interpolation is judged on; quality 95 at full colour resolution keeps more.
    options = {".jpg": {"quality": 95, "subsampling": 0}, ".jpeg": {"quality": 95, "subsampling": 0},
               ".webp": {"quality": 95}}.get(extension, {})
    try:
        iio.imwrite(path, pixels, **options)
    except Exception as error:
        raise UserError(f"{path}: cannot write the image ({_first_line(error)})") from None


def copy_image(source: str, path: str) -> None:
    """Copies the image file ``source`` to ``path`` byte for byte; creates the folder."""
    check_image_output(path)
    _make_folder(path)
    try:
        shutil.copyfile(source, path)
    except OSError as error:
        raise UserError(f"{path}: cannot write the image ({_os_reason(error)})") from None


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
    """Streams a video's frames as (H, W, 3) uint8 RGB arrays; ``fps``, ``size`` (W, H), an
    estimate of ``frame_count`` (the frames stored) and of ``decoded_seconds`` (both None if
    unknown), and ``duration`` (seconds, as the container announces it; 0 if it does not) are
    known after construction.

    With ``constant_rate`` (for writing at N times the rate) a variable-frame-rate video comes at
    its nominal ``fps``, FFmpeg repeating or dropping frames to keep time; without it, every stored
    frame comes once (for holding frames out and comparing)."""

    def __init__(self, path: str, constant_rate: bool = True):
        import imageio_ffmpeg

        if not os.path.isfile(path):
            raise UserError(f"{path}: no such file")
        self.path = path
        output_params = None if constant_rate else ["-fps_mode", "passthrough"]
        try:
            self._frames = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24", output_params=output_params)
            meta = next(self._frames)
        except (StopIteration, Exception) as error:
            raise UserError(f"{path}: cannot read it as a video ({_first_line(error)})") from None
        self.fps: float = float(meta.get("fps") or 0.0)
        self.size: Tuple[int, int] = tuple(meta["size"])
        if not self.fps > 0:
            raise UserError(f"{path}: the video reports no frame rate")
        self.duration: float = float(meta.get("duration") or 0.0)
        self.frame_count: Optional[int] = None
        self.decoded_seconds: Optional[float] = None
        try:
            self.frame_count, self.decoded_seconds = imageio_ffmpeg.count_frames_and_secs(path)
        except Exception:
            pass

    def looks_cut_short(self) -> bool:
        """Whether the video stops clearly (10%) before the duration its container announces, as a
        file cut short does (a partial download or copy, a killed recording): its header still
        holds the full length. A file with audio is not judged: the announced duration is its
        longest stream's, and audio may run on after the pictures."""
        if self.decoded_seconds is None or not self.duration > 0:
            return False
        if self.decoded_seconds >= 0.9 * self.duration - 1.0 / self.fps:
            return False
        return not has_audio(self.path)

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
    (H.264, or VP9 in .webm: see VIDEO_CODECS; yuv444p when a side is odd, which 4:2:0 cannot hold).

    Frames go to a temporary file beside ``path`` (NAME.partial-XXXX.EXT); :meth:`close` moves it
    to ``path`` and :meth:`discard` deletes it, so a failed run never leaves a cut-off video (or
    a half-overwritten old one) under the final name."""

    def __init__(self, path: str, size: Tuple[int, int], fps: float, quality: float = 8):
        import imageio_ffmpeg

        check_video_output(path)
        check_output(path)
        _make_folder(path)
        width, height = size
        pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        extension = _extension(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        try:
            handle, self._partial = tempfile.mkstemp(prefix=f"{stem}.partial-", suffix=extension,
                                                     dir=os.path.dirname(os.path.abspath(path)))
        except OSError as error:
            raise UserError(f"{path}: cannot write a video there ({_os_reason(error)})") from None
        os.close(handle)
        # mkstemp makes the file private (0600); give it the permissions a new file would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._partial, 0o666 & ~umask)
        self.path = path
        self.frames_written = 0
        self._writer = imageio_ffmpeg.write_frames(
            self._partial, (width, height), fps=fps, quality=quality, codec=VIDEO_CODECS[extension],
            pix_fmt_out=pix_fmt, macro_block_size=1, ffmpeg_log_level="error",
        )
        try:
            self._writer.send(None)  # starts FFmpeg
        except Exception as error:
            self._remove_partial()
            raise UserError(f"{path}: cannot write a video there ({_first_line(error)})") from None

    def write(self, frame: np.ndarray) -> None:
        try:
            self._writer.send(np.ascontiguousarray(frame))
        except Exception as error:
            raise UserError(f"{self.path}: writing the video failed ({_first_line(error)})") from None
        self.frames_written += 1

    def close(self, audio_from: Optional[str] = None) -> Optional[str]:
        """Finishes the video and moves it to ``path``; with ``audio_from``, a video whose audio is
        to be added first. Returns why that audio could not be added, or None."""
        self._writer.close()
        audio_problem = None
        if audio_from is not None:
            audio_problem = _add_audio(self._partial, audio_from)
        try:
            os.replace(self._partial, self.path)
        except OSError as error:
            self._remove_partial()
            raise UserError(f"{self.path}: cannot move the finished video there ({_os_reason(error)})") from None
        return audio_problem

    def discard(self) -> None:
        """Stops FFmpeg and deletes the unfinished video; ``path`` is left as it was."""
        try:
            self._writer.close()
        finally:
            self._remove_partial()

    def _remove_partial(self) -> None:
        try:
            os.remove(self._partial)
        except OSError:
            pass


def _add_audio(video: str, audio_from: str) -> Optional[str]:
    """Puts the audio streams of ``audio_from`` into the file ``video`` (its video copied as it is):
    copied where the container takes them, else re-encoded (AUDIO_CODECS). Returns None, or FFmpeg's
    reason when neither works (``video`` is then left as it was)."""
    import imageio_ffmpeg

    extension = _extension(video)
    handle, muxed = tempfile.mkstemp(prefix="audio-", suffix=extension, dir=os.path.dirname(os.path.abspath(video)))
    os.close(handle)
    reason = "unknown"
    try:
        for audio_codec in ("copy", AUDIO_CODECS[extension]):
            command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", video, "-i", audio_from,
                       "-map", "0:v:0", "-map", "1:a", "-c:v", "copy", "-c:a", audio_codec, muxed]
            try:
                result = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=3600)
            except (OSError, subprocess.SubprocessError) as error:
                return _first_line(error)
            if result.returncode == 0:
                os.chmod(muxed, os.stat(video).st_mode & 0o777)
                os.replace(muxed, video)
                return None
            reason = (result.stderr.strip().splitlines() or ["FFmpeg failed"])[-1]
        return reason
    finally:
        with contextlib.suppress(OSError):
            os.remove(muxed)


def _os_reason(error: BaseException) -> str:
    """'Permission denied' rather than '[Errno 13] Permission denied: /x/y'."""
    return getattr(error, "strerror", None) or _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
