"""Video files, streamed frame by frame through the FFmpeg that imageio-ffmpeg ships.

:class:`VideoReader` decodes to (H, W, 3) uint8 RGB arrays and reports what the decoder reports
(its exit status is an error, its complaints about damaged data a :class:`DamagedInputWarning`
naming the frame); :class:`VideoWriter` encodes into an :class:`~memc_models.atomic.AtomicFile`
and checks the encoder's exit status before the video takes its name. Header facts (size, frame
rate, duration, audio) are read from FFmpeg's own description of the file, as it prints them
(``29.97 fps``, ``1k fps``): what the writer writes, the reader reads back.
"""

import contextlib
import os
import re
import subprocess
import tempfile
import threading
import warnings
from fractions import Fraction
from typing import Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from .atomic import AtomicFile
from .errors import UserError, first_line, os_reason
from .ffmpeg import ffmpeg_exe, without_address
from .images import DamagedInputWarning, file_extension

__all__ = ["VIDEO_CODECS", "AUDIO_CODECS", "VideoInfo", "VideoReader", "VideoWriter", "add_audio", "check_video_output",
           "ffmpeg_exe", "has_audio", "parse_rate", "probe"]

# The video encoder per container: each one FFmpeg (as shipped by imageio-ffmpeg) can put in it.
VIDEO_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "libx264",
                ".webm": "libvpx-vp9"}
# The audio encoder per container, for an input's audio that cannot be copied into it as it is.
AUDIO_CODECS = {".mp4": "aac", ".m4v": "aac", ".mov": "aac", ".mkv": "aac", ".avi": "libmp3lame", ".webm": "libopus"}


def check_video_output(path: str) -> None:
    """Raises UserError unless ``path`` names a video container we write (checked before any work)."""
    if file_extension(path) not in VIDEO_CODECS:
        raise UserError(f"{path}: an output video needs one of the extensions {', '.join(VIDEO_CODECS)}")


def parse_rate(text: str) -> Optional[float]:
    """A rate as FFmpeg prints it: '25', '29.97', '1k' (FFmpeg writes multiples of 1000 so)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(k?)", text.strip())
    if match is None:
        return None
    return float(match.group(1)) * (1000.0 if match.group(2) else 1.0)


class VideoInfo(NamedTuple):
    """What FFmpeg's description of a file says: ``size`` (W, H) as decoded (turned upright by its
    rotation), ``fps``, ``duration`` in seconds (0 if not announced) and whether it has audio."""

    size: Tuple[int, int]
    fps: float
    duration: float
    audio: bool


def _describe(path: str) -> str:
    """FFmpeg's description of the file (what ``ffmpeg -i`` prints)."""
    try:
        result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path], capture_output=True, text=True,
                                errors="replace", timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        raise UserError(f"{path}: cannot run FFmpeg to read it ({first_line(error)})") from None
    return result.stderr


def has_audio(path: str) -> bool:
    """Whether the file has an audio stream."""
    return re.search(r"Stream #\S+.*: Audio:", _describe(path)) is not None


def probe(path: str) -> VideoInfo:
    """The :class:`VideoInfo` of a video file; a UserError for a file FFmpeg cannot read as one."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder; expected a video file")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    text = _describe(path)
    stream = re.search(r"Stream #\S+.*: Video: (.*)", text)
    if stream is None:
        said = [re.sub(r"^Error opening input: ", "", match.group(1))
                for match in re.finditer(r"^\[[^\]]+ @ 0x[0-9a-f]+\] (.*)$", text, re.MULTILINE)]
        reason = "; ".join(dict.fromkeys(said)) or "it holds no video stream"
        raise UserError(f"{path}: cannot read it as a video ({reason})")
    line = stream.group(1)
    size = re.search(r"\b(\d{1,6})x(\d{1,6})\b", line)
    rate = re.search(r"([\d.]+k?) fps", line) or re.search(r"([\d.]+k?) tbr", line)
    fps = parse_rate(rate.group(1)) if rate else None
    if size is None:
        raise UserError(f"{path}: the video reports no frame size")
    if not fps:
        raise UserError(f"{path}: the video reports no frame rate")
    width, height = int(size.group(1)), int(size.group(2))
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", text) or re.search(r"rotate\s*:\s*(-?\d+)", text)
    if rotation is not None and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width  # FFmpeg turns it upright while decoding
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    seconds = 0.0
    if duration is not None:
        seconds = int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3))
    audio = re.search(r"Stream #\S+.*: Audio:", text) is not None
    return VideoInfo((width, height), fps, seconds, audio)


class VideoReader:
    """Streams a video's frames as (H, W, 3) uint8 RGB arrays. ``fps``, ``size`` (W, H), an
    estimate of ``frame_count`` (the frames stored) and of ``decoded_seconds`` (both None if
    unknown), and ``duration`` (seconds, as the container announces it; 0 if it does not) are
    known after construction.

    With ``constant_rate`` (for writing at N times the rate) a variable-frame-rate video comes at
    its nominal ``fps``, FFmpeg repeating or dropping frames to keep time; without it, every stored
    frame comes once (for holding frames out and comparing).

    Decoding errors: a decoder that fails (non-zero exit status, or a frame cut short) is a
    UserError naming the file and the frame reached; data it reports as damaged but decodes
    anyway is a :class:`DamagedInputWarning` naming the frame being read when it said so."""

    def __init__(self, path: str, constant_rate: bool = True):
        import imageio_ffmpeg

        info = probe(path)
        self.path = path
        self.size: Tuple[int, int] = info.size
        self.fps: float = info.fps
        self.duration: float = info.duration
        self.audio: bool = info.audio
        self.constant_rate = constant_rate
        self.frame_count: Optional[int] = None
        self.decoded_seconds: Optional[float] = None
        try:
            self.frame_count, self.decoded_seconds = imageio_ffmpeg.count_frames_and_secs(path)
        except Exception:
            pass
        self._process: Optional[subprocess.Popen] = None

    def looks_cut_short(self) -> bool:
        """Whether the video stops clearly (10%) before the duration its container announces, as a
        file cut short does (a partial download or copy, a killed recording): its header still
        holds the full length. A file with audio is not judged: the announced duration is its
        longest stream's, and audio may run on after the pictures."""
        if self.decoded_seconds is None or not self.duration > 0:
            return False
        if self.decoded_seconds >= 0.9 * self.duration - 1.0 / self.fps:
            return False
        return not self.audio

    def __iter__(self) -> Iterator[np.ndarray]:
        width, height = self.size
        frame_bytes = width * height * 3
        command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", self.path, "-map", "0:v:0"]
        if not self.constant_rate:
            command += ["-fps_mode", "passthrough"]
        command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True)
        except OSError as error:
            raise UserError(f"{self.path}: cannot run FFmpeg to decode it ({os_reason(error)})") from None
        self._process = process
        complaints: List[Tuple[int, str]] = []  # (frames delivered when it was said, what)
        delivered = [0]

        def listen() -> None:
            for raw in process.stderr:
                text = raw.decode("utf-8", "replace").strip()
                if text:
                    complaints.append((delivered[0], without_address(text).rstrip(".")))

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        warned = False
        try:
            while True:
                data = _read_exactly(process.stdout, frame_bytes)
                if len(data) < frame_bytes:
                    break
                if complaints and not warned:  # FFmpeg decodes ahead: the damage is at this frame or later
                    self._warn(f"at frame {delivered[0]} or later (counted from 0): {complaints[0][1]}")
                    warned = True
                yield np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
                delivered[0] += 1
            status = process.wait()
            listener.join(timeout=10)
            if status != 0 or len(data) not in (0, frame_bytes):
                reason = complaints[-1][1] if complaints else f"FFmpeg exit status {status}"
                raise UserError(f"{self.path}: cannot decode the video after frame {delivered[0]} (counted from 0): "
                                f"{reason}")
            if complaints and not warned:
                self._warn(f"near its end: {complaints[0][1]}")
            elif len(complaints) > 1:
                self._warn(f"{len(complaints) - 1} more time(s) after frame {complaints[1][0]} (counted from 0)")
        finally:
            self.close()

    def _warn(self, what: str) -> None:
        warnings.warn(DamagedInputWarning(f"{self.path}: the decoder reports damage {what}; those frames may be "
                                          "wrong"), stacklevel=3)

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(Exception):
                process.stdout.close()
            process.wait()
            with contextlib.suppress(Exception):
                process.stderr.close()


def _read_exactly(stream, count: int) -> bytes:
    chunks, have = [], 0
    while have < count:
        chunk = stream.read(count - have)
        if not chunk:
            break
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


class VideoWriter:
    """Streams (H, W, 3) uint8 RGB frames into a video file at ``fps``, keeping the size exactly
    (H.264, or VP9 in .webm: see VIDEO_CODECS; yuv444p when a side is odd, which 4:2:0 cannot hold).

    The encoder writes an :class:`~memc_models.atomic.AtomicFile` (NAME.partial-XXXX.EXT beside
    ``path``); :meth:`close` checks its exit status and moves the video to ``path``, :meth:`discard`
    stops it and deletes the temporary. A failed run never leaves a cut-off video (or a
    half-overwritten old one) under the final name. As a context manager: close on success,
    discard on any exception."""

    def __init__(self, path: str, size: Tuple[int, int], fps: float, quality: float = 8):
        check_video_output(path)
        width, height = size
        self.path, self.size, self.fps = path, (int(width), int(height)), float(fps)
        self.frames_written = 0
        self._output = AtomicFile(path)
        extension = file_extension(path)
        codec = VIDEO_CODECS[extension]
        compression = 1 - quality / 10.0
        quality_options = ["-crf", str(int(compression * 51))] if codec == "libx264" else \
            ["-qscale:v", str(int(compression * 30) + 1)]
        pixel_format = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        rate = Fraction(self.fps).limit_denominator(1001000)  # 30000/1001 stays exact
        command = [ffmpeg_exe(), "-y", "-hide_banner", "-nostdin", "-v", "error",
                   "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}", "-pix_fmt", "rgb24",
                   "-r", str(rate), "-i", "-", "-an", "-vcodec", codec, "-pix_fmt", pixel_format, *quality_options,
                   self._output.temporary]
        self._log = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                             stderr=self._log, start_new_session=True)
        except OSError as error:
            self._log.close()
            self._output.discard()
            raise UserError(f"{path}: cannot start the video encoder ({os_reason(error)})") from None

    def _encoder_failure(self) -> UserError:
        """The encoder's complaint (or exit status) as a UserError naming the video."""
        try:
            status = self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            status = self._process.wait()
        self._log.seek(0)
        log = self._log.read().decode("utf-8", "replace")
        lines = [without_address(line) for line in log.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {status}"
        return UserError(f"{self.path}: the video encoder failed ({reason})")

    def write(self, frame: np.ndarray) -> None:
        width, height = self.size
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected an ({height}, {width}, 3) uint8 frame; got a {frame.dtype} array of shape "
                             f"{frame.shape}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except OSError:
            raise self._encoder_failure() from None
        self.frames_written += 1

    def close(self, audio_from: Optional[str] = None) -> Optional[str]:
        """Finishes the video and moves it to ``path``; with ``audio_from``, a video whose audio is
        to be added first. Returns why that audio could not be added, or None. An encoder that
        fails (a full disk, say) is a UserError, and nothing is moved."""
        try:
            try:
                self._process.stdin.close()
            except OSError:
                raise self._encoder_failure() from None
            if self._process.wait() != 0:
                raise self._encoder_failure()
            audio_problem = add_audio(self._output.temporary, audio_from) if audio_from is not None else None
            self._output.commit()
        except BaseException:
            self.discard()
            raise
        finally:
            self._log.close()
        return audio_problem

    def discard(self) -> None:
        """Stops the encoder and deletes the unfinished video; ``path`` is left as it was."""
        if self._process.poll() is None:
            self._process.kill()
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        self._process.wait()
        self._output.discard()
        with contextlib.suppress(Exception):
            self._log.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is not None:
            self.discard()
        return False


def add_audio(video: str, audio_from: str) -> Optional[str]:
    """Puts the audio streams of ``audio_from`` into the file ``video`` (its video copied as it is):
    copied where the container takes them, else re-encoded (AUDIO_CODECS). Returns None, or FFmpeg's
    reason when neither works (``video`` is then left as it was)."""
    extension = file_extension(video)
    reason = "unknown"
    for audio_codec in ("copy", AUDIO_CODECS[extension]):
        muxed = AtomicFile(video)
        command = [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-i", video, "-i", audio_from,
                   "-map", "0:v:0", "-map", "1:a", "-c:v", "copy", "-c:a", audio_codec, muxed.temporary]
        try:
            result = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=3600,
                                    start_new_session=True)
        except BaseException as error:
            muxed.discard()
            if isinstance(error, (OSError, subprocess.SubprocessError)):
                return first_line(error)
            raise
        if result.returncode == 0:
            muxed.commit()
            return None
        muxed.discard()
        reason = (result.stderr.strip().splitlines() or ["FFmpeg failed"])[-1]
    return reason
