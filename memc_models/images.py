"""Image files: reading (upright, any common layout, damage reported), encoding and writing
(atomically, through :mod:`memc_models.atomic`), folders of frames and output path checks.

Every failure a person can fix is a :class:`~memc_models.errors.UserError` naming the file.
"""

import contextlib
import os
import re
import subprocess
import tempfile
import warnings
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .atomic import copy_file, write_file
from .errors import UserError, first_few, first_line, os_reason
from .ffmpeg import ffmpeg_exe, without_address
from .frames import to_uint8, to_uint16

__all__ = ["IMAGE_EXTENSIONS", "SIXTEEN_BIT_EXTENSIONS", "DamagedInputWarning", "check_headers", "check_image_input",
           "check_image_output", "check_output", "copy_image", "encode_image", "file_extension", "image_size",
           "list_frames", "read_image", "stored_as_written", "stored_bits", "write_image"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: The output formats written with 16 bits per sample when asked to.
SIXTEEN_BIT_EXTENSIONS = (".png", ".tif", ".tiff")


class DamagedInputWarning(UserWarning):
    """An input decoded, but its decoder reported damage: the picture may be partly wrong."""


# Every damaged file is worth a word, not only the first one warned about from the same line.
warnings.filterwarnings("always", category=DamagedInputWarning)


def file_extension(path: str) -> str:
    """The extension of ``path``'s name in lower case, with its dot (``.jpg`` for ``a/B.JPG``;
    ``""`` for none): what the image and video formats are chosen by."""
    return os.path.splitext(path)[1].lower()


def check_image_output(path: str) -> None:
    """Raises UserError unless ``path`` names an image format we write (checked before any work)."""
    if file_extension(path) not in IMAGE_EXTENSIONS:
        raise UserError(f"{path}: an output image needs one of the extensions {', '.join(IMAGE_EXTENSIONS)}")


def check_image_input(path: str) -> None:
    """Raises UserError unless ``path`` is a file (a folder or a missing path, named; its content is
    read later)."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder; expected an image file")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")


def read_image(path: str) -> Tensor:
    """An image file as a (1, 3, H, W) float32 RGB tensor in [0, 1], upright by its EXIF orientation
    (grey is repeated, alpha dropped, CMYK and palettes converted to RGB, 16-bit samples kept whole)."""
    check_image_input(path)
    with _damage_check(path) as check_damage:  # a JPEG's runs beside the decode
        pixels = _decode_image(path)
        check_damage()
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
             if not name.startswith(".") and file_extension(name) in IMAGE_EXTENSIONS
             and os.path.isfile(os.path.join(folder, name))]
    extensions = sorted({file_extension(name) for name in names})
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
        raise UserError(f"cannot read {path} as an image ({first_line(error)})") from None
    try:
        with warnings.catch_warnings():  # probing a garbage file wakes deprecated plugins (DICOM)
            warnings.simplefilter("ignore", DeprecationWarning)
            return iio.imread(path)
    except Exception:  # imageio's message lists plugins to install, which would not help here
        if _is_lossless_jpeg(path):
            raise UserError(f"cannot read {path}: it is a lossless JPEG, which the image readers here cannot decode; "
                            "convert it to PNG first (for example with `ffmpeg -i in.jpg out.png`)") from None
        raise UserError(f"cannot read {path} as an image (unknown format or damaged file)") from None


# JPEG start-of-frame markers of the lossless processes (ITU T.81, Table B.1): Pillow knows only the
# DCT ones and reports these files as unidentified.
_LOSSLESS_JPEG_FRAMES = (0xC3, 0xC7, 0xCB, 0xCF)


def _is_lossless_jpeg(path: str) -> bool:
    """Whether ``path`` is a JPEG whose first frame header names a lossless process: walks the
    marker segments from the start of the file up to the first frame header."""
    try:
        with open(path, "rb") as file:
            if file.read(2) != b"\xff\xd8":
                return False
            while True:
                marker = file.read(2)
                if len(marker) < 2 or marker[0] != 0xFF:
                    return False
                if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                    return marker[1] in _LOSSLESS_JPEG_FRAMES
                length = file.read(2)
                if len(length) < 2 or int.from_bytes(length, "big") < 2:
                    return False
                file.seek(int.from_bytes(length, "big") - 2, os.SEEK_CUR)
    except OSError:
        return False


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


@contextlib.contextmanager
def _damage_check(path: str) -> Iterator[Callable[[], None]]:
    """What the decoders say beyond a successful decode, as a function to call after it. PNG:
    every chunk's checksum (Pillow decodes a PNG whose checksums fail without a word): an error.
    JPEG: libjpeg, under Pillow, skips over corrupt entropy-coded data silently, so FFmpeg's JPEG
    decoder is asked; what it reports is a :class:`DamagedInputWarning` (the file is still read: a
    decoder's complaint about an unusual but intact file must not stop a run). FFmpeg starts on
    entering, so that it decodes while Pillow does, and is stopped on leaving if still running."""
    from PIL import Image

    extension = file_extension(path)
    started = []

    def start(lowres: bool) -> Optional[subprocess.Popen]:
        decoder = _start_jpeg_decoder(path, lowres)
        if decoder is not None:
            started.append(decoder)
        return decoder

    first = start(lowres=True) if extension in (".jpg", ".jpeg") else None

    def check() -> None:
        if extension == ".png":
            try:
                with Image.open(path) as image:
                    image.verify()
            except Exception as error:
                raise UserError(f"{path}: the image is damaged ({first_line(error)})") from None
        elif first is not None:
            complaint = _decoder_complaint(first)
            if complaint:
                # The small decode is refused for some intact files (a lossless JPEG: "lowres is not
                # possible with lossless jpeg"), so a complaint stands only if a full decode repeats it.
                again = start(lowres=False)
                if again is not None:
                    complaint = _decoder_complaint(again)
            if complaint:
                warnings.warn(DamagedInputWarning(f"{path}: the JPEG decoder reports damage ({complaint}); "
                                                  "the picture may be partly wrong"), stacklevel=3)

    try:
        yield check
    finally:
        for decoder in started:  # stopped if still running, and reaped with its pipe closed either way
            if decoder.poll() is None:
                decoder.kill()
            decoder.stderr.close()
            decoder.wait()


def _start_jpeg_decoder(path: str, lowres: bool = True) -> Optional[subprocess.Popen]:
    """FFmpeg decoding the JPEG ``path`` and printing only errors (None when it cannot be run). With
    ``lowres``, at 1/8 size (``-lowres 3``): it still reads every coded coefficient, where the damage
    shows, but skips most of the transforms (the same reports as at full size on 140 randomly damaged
    JPEGs, for about 15% less CPU; starting the program is most of the rest). Pillow reads nothing of
    what FFmpeg finds there, and libjpeg's own warnings are silenced under Pillow: hence the program."""
    size = ["-lowres", "3"] if lowres else []
    try:
        return subprocess.Popen([ffmpeg_exe(), "-nostdin", "-v", "error", *size, "-i", path, "-f", "null", "-"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError:
        return None


def _decoder_complaint(decoder: subprocess.Popen) -> Optional[str]:
    """The first error the FFmpeg of :func:`_start_jpeg_decoder` reports (None when it reports none,
    or takes more than two minutes)."""
    try:
        _, errors = decoder.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        return None  # the caller stops it
    lines = [without_address(line) for line in errors.decode("utf-8", "replace").splitlines() if line.strip()]
    if decoder.returncode != 0 and not lines:
        lines = [f"FFmpeg exit status {decoder.returncode}"]
    return lines[0] if lines else None


def check_headers(paths: Iterable[str]) -> None:
    """Raises a UserError naming every file (the first few, and a count) that is missing or whose
    header does not read as an image: checked before long work (training) starts."""
    from PIL import Image

    problems = []
    for path in paths:
        if not os.path.isfile(path):
            problems.append(f"{path}: no such file")
            continue
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 (the header is parsed by open)
        except Exception as error:
            why = "a lossless JPEG, which cannot be decoded here" if _is_lossless_jpeg(path) else first_line(error)
            problems.append(f"{path}: not a readable image ({why})")
    if problems:
        raise UserError(f"{len(problems)} input file(s) cannot be used: {first_few(problems, 3, '; ')}")


def encode_image(path: str, frame, bits: int = 8) -> bytes:
    """The bytes of the image file ``path`` would hold for ``frame``: a (1, 3, H, W) / (3, H, W)
    tensor in [0, 1], or an (H, W, 3) uint8 or uint16 array, in the format of ``path``'s
    extension. ``bits=16`` encodes a tensor with 16 bits per sample where the format has them
    (PNG, TIFF), else with 8."""
    import imageio.v3 as iio

    check_image_output(path)
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16; got {bits!r}")
    extension = file_extension(path)
    sixteen = bits == 16 and extension in SIXTEEN_BIT_EXTENSIONS
    if isinstance(frame, np.ndarray):
        pixels = frame
    else:
        pixels = to_uint16(frame) if sixteen else to_uint8(frame)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected one (H, W, 3) uint8 or uint16 frame; got a {pixels.dtype} array of shape "
                         f"{pixels.shape}")
    if pixels.dtype == np.uint16 and extension not in SIXTEEN_BIT_EXTENSIONS:
        raise ValueError(f"{path}: 16-bit pixels need one of {', '.join(SIXTEEN_BIT_EXTENSIONS)}")
    if pixels.dtype == np.uint16:  # Pillow cannot write 16-bit colour; OpenCV can
        import cv2

        try:
            written, encoded = cv2.imencode(extension, np.ascontiguousarray(pixels[..., ::-1]))
        except cv2.error as error:
            raise UserError(f"{path}: cannot encode the image ({first_line(error)})") from None
        if not written:
            raise UserError(f"{path}: cannot encode the image")
        return encoded.tobytes()
    # Pillow's default JPEG and WebP quality (75), and JPEG's halved colour resolution, blur the
    # fine detail that interpolation is judged on; quality 95 at full colour resolution keeps more.
    options = {".jpg": {"quality": 95, "subsampling": 0}, ".jpeg": {"quality": 95, "subsampling": 0},
               ".webp": {"quality": 95}}.get(extension, {})
    try:
        return iio.imwrite("<bytes>", pixels, extension=extension, **options)
    except Exception as error:
        raise UserError(f"{path}: cannot encode the image ({first_line(error)})") from None


def write_image(path: str, frame, bits: int = 8) -> None:
    """Writes a frame (as :func:`encode_image` takes it) to ``path`` atomically; creates the folder."""
    write_file(path, encode_image(path, frame, bits))


def copy_image(source: str, path: str) -> None:
    """Copies the image file ``source`` to ``path`` byte for byte, atomically; creates the folder."""
    check_image_output(path)
    copy_file(source, path)


def check_output(path: str) -> None:
    """Raises UserError unless a file can be written at ``path``: it is not a folder, and its folder
    exists and is writable or can be made. Makes nothing (for a bad ``-o`` before any work)."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder; expected an output file name")
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
        raise UserError(f"{path}: cannot write into the folder {existing} ({os_reason(error)})") from None
