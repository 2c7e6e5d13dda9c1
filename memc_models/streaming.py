"""One walk over a stream of frames: sources, sinks, scene cuts and the pairwise loop.

A *source* is an iterable of :class:`StreamFrame` (a video: :class:`VideoSource`; a folder of
image files: :class:`FolderSource`); a *sink* takes frames one at a time and puts them in place
only when the stream is complete (a video: :class:`VideoSink`; a new folder: :class:`FolderSink`;
both write through :mod:`memc_models.atomic`). :func:`interpolate_stream` feeds the frames
between each pair of a source, and the source's own frames, into a sink; :func:`windows` gives
any tool the sliding windows of N frames it needs (a 7-frame enhancement network, say). Sources
are plain iterators and sinks plain ``write`` calls, so a threaded pipeline can put queues
between them: ``interpolate_stream(..., pipelined=True)`` decodes (and estimates the motion of a
:class:`Staged` interpolator) on one thread, renders on the caller's and encodes on a third.

    with FolderSink("out/", count, ".png") as sink:         # commits on success, else discards
        result = interpolate_stream(FolderSource("in/"), sink, interpolate, [0.5])
"""

import collections
import os
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .atomic import AtomicFolder, Transaction
from .errors import UserError
from .frames import check_same_size, from_pixels, to_uint8
from .images import SIXTEEN_BIT_EXTENSIONS, copy_image, image_size, list_frames, read_image, stored_as_written, \
    stored_bits, write_image
from .video import VideoReader, VideoWriter

__all__ = ["SCENE_THRESHOLD", "FolderSink", "FolderSource", "Staged", "StreamFrame", "StreamResult", "VideoSink",
           "VideoSource", "centred_windows", "colour_overlap", "interpolate_stream", "is_scene_cut", "windows"]

#: Interpolates (1, 3, H, W) frames in [0, 1] at several times in (0, 1).
Interpolator = Callable[[Tensor, Tensor, Sequence[float]], List[Tensor]]


class Staged:
    """An :data:`Interpolator` in two stages that a pipeline can overlap: ``motion(frame0,
    frame1)`` (the pair's motion, whatever object the method needs; it must be safe to run on
    another thread than ``render``) and ``render(frame0, frame1, motion, times)`` (the frames at
    ``times``). Called as a plain interpolator, it runs one after the other."""

    def __init__(self, motion: Callable[[Tensor, Tensor], Any],
                 render: Callable[[Tensor, Tensor, Any, Sequence[float]], List[Tensor]]):
        self.motion, self.render = motion, render

    def __call__(self, frame0: Tensor, frame1: Tensor, times: Sequence[float]) -> List[Tensor]:
        return self.render(frame0, frame1, self.motion(frame0, frame1), times)


class StreamFrame(NamedTuple):
    """A frame of a source: ``image`` (1, 3, H, W) float32 in [0, 1], its ``index`` from 0, its
    ``name`` for messages (``clip.mp4 frame 12`` or the file), and the ``path`` of the file it was
    read from (folder sources), so that a sink may copy it unchanged."""

    image: Tensor
    index: int
    name: str
    path: Optional[str] = None


# ----------------------------------------------------------------------------------------------
# Sources


class VideoSource:
    """The frames of a video (see :class:`~memc_models.video.VideoReader`): ``fps``, ``size``
    (W, H) and ``count`` (an estimate of the frames, or None) are known before iterating."""

    def __init__(self, path: str, constant_rate: bool = True):
        self.path = path
        self.reader = VideoReader(path, constant_rate=constant_rate)
        self.fps, self.size, self.count = self.reader.fps, self.reader.size, self.reader.frame_count

    def __iter__(self) -> Iterator[StreamFrame]:
        for index, pixels in enumerate(self.reader):
            yield StreamFrame(from_pixels(pixels), index, f"{self.path} frame {index}")

    def close(self) -> None:
        self.reader.close()


class FolderSource:
    """The image files of a folder in natural name order (see
    :func:`~memc_models.images.list_frames`), read one at a time. Frames whose headers give
    another size than the first's are an error here, before any work; ``bits`` is 16 when every
    frame is a 16-bit PNG or TIFF, else 8."""

    def __init__(self, folder: str):
        self.folder = folder
        self.paths = list_frames(folder)
        self.count: Optional[int] = len(self.paths)
        if self.paths:
            first_size = image_size(self.paths[0])
            for path in self.paths[1:]:
                size = image_size(path)
                if first_size is not None and size is not None and size != first_size:
                    raise UserError(f"the frames differ in size: {path} is {size[0]}x{size[1]}, "
                                    f"{self.paths[0]} {first_size[0]}x{first_size[1]}")
        self.extension = os.path.splitext(self.paths[0])[1].lower() if self.paths else ""
        sixteen = self.extension in SIXTEEN_BIT_EXTENSIONS and all(stored_bits(path) == 16 for path in self.paths)
        self.bits = 16 if sixteen else 8

    def __iter__(self) -> Iterator[StreamFrame]:
        for index, path in enumerate(self.paths):
            yield StreamFrame(read_image(path), index, path, path)

    def close(self) -> None:
        pass


def windows(frames: Iterable[StreamFrame], size: int) -> Iterator[Tuple[StreamFrame, ...]]:
    """The runs of ``size`` consecutive frames: (f0..f{size-1}), (f1..f{size}), ...; ``size``
    frames in memory at a time. Frames of another size than the first are an error naming both."""
    if size < 1:
        raise ValueError(f"size must be at least 1; got {size}")
    window = collections.deque(maxlen=size)
    for frame in frames:
        if window:
            check_same_size(frame.image, frame.name, window[0].image, window[0].name)
        window.append(frame)
        if len(window) == size:
            yield tuple(window)


def centred_windows(frames: Iterable[StreamFrame], size: int) -> Iterator[Tuple[Tuple[StreamFrame, ...], int]]:
    """For every frame, in order, the window of up to ``size`` (odd) frames centred on it and its
    position in the window: (f0..f{h}) with 0, (f0..f{h+1}) with 1, ..., (f{i-h}..f{i+h}) with h,
    where h = size // 2; the ends of the stream have fewer neighbours on one side. One window per
    frame, ``size`` frames in memory at a time. Frames of another size than the first are an error
    naming both."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd number, 1 or more; got {size}")
    half = size // 2
    held: collections.deque = collections.deque()  # frames from position first on
    first = centre = 0

    def ready(ended: bool) -> Iterator[Tuple[Tuple[StreamFrame, ...], int]]:
        """The windows that can be given: each whose last frame is held, or at the end every one left
        (with fewer neighbours after them)."""
        nonlocal first, centre
        while centre < first + len(held) and (ended or centre + half < first + len(held)):
            yield tuple(held)[: centre + half + 1 - first], centre - first
            centre += 1
            if centre - half > first:
                held.popleft()
                first += 1

    for frame in frames:
        if held:
            check_same_size(frame.image, frame.name, held[0].image, held[0].name)
        held.append(frame)
        yield from ready(ended=False)
    yield from ready(ended=True)


# ----------------------------------------------------------------------------------------------
# Sinks


class VideoSink(Transaction):
    """A video at ``fps`` (of the size of the first frame written): frames go to a
    :class:`~memc_models.video.VideoWriter`; :meth:`commit` (at the end of a ``with`` block)
    finishes it, adding the audio of ``audio_from`` if given: ``audio_problem`` then says why that
    audio could not be added, or is None."""

    def __init__(self, path: str, fps: float, audio_from: Optional[str] = None):
        self.path, self.fps, self.audio_from = path, fps, audio_from
        self.writer: Optional[VideoWriter] = None
        self.frames_written = 0
        self.audio_problem: Optional[str] = None

    def write(self, image: Tensor, source: Optional[StreamFrame] = None) -> None:
        pixels = to_uint8(image)
        if self.writer is None:
            self.writer = VideoWriter(self.path, (pixels.shape[1], pixels.shape[0]), self.fps)
        self.writer.write(pixels)
        self.frames_written += 1

    def commit(self) -> None:
        if self.writer is None:
            raise UserError(f"{self.path}: no frames to write")
        self.audio_problem = self.writer.close(audio_from=self.audio_from)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.discard()


class FolderSink(Transaction):
    """A new (or empty) folder of ``count`` frames named ``00000.EXT``, ``00001.EXT``, ... (5
    digits, or as many as ``count`` needs), written into an :class:`~memc_models.atomic.AtomicFolder`:
    claimed at once (a second run into it is refused), renamed into place by :meth:`commit`.
    Input frames passed with their :class:`StreamFrame` are copied byte for byte when their file
    already stores what would be written (upright RGB at ``bits``; a JPEG is not encoded twice)."""

    def __init__(self, folder: str, count: int, extension: str, bits: int = 8):
        digits = max(5, len(str(count - 1)))
        self.names = [f"{index:0{digits}d}{extension}" for index in range(count)]
        self.folder, self.bits = folder, bits
        self.frames_written = 0
        self._output = AtomicFolder(folder, "frames into it")

    def write(self, image: Tensor, source: Optional[StreamFrame] = None) -> None:
        if self.frames_written >= len(self.names):
            raise ValueError(f"{self.folder}: more than the {len(self.names)} frames planned")
        path = self._output.file_path(self.names[self.frames_written])
        try:
            if source is not None and source.path is not None and stored_as_written(source.path, self.bits):
                copy_image(source.path, path)
            else:
                write_image(path, image, self.bits)
        except UserError as error:  # named by where the frame was going, not by the temporary folder
            raise UserError(str(error).replace(self._output.temporary, self.folder)) from None
        self.frames_written += 1

    def commit(self) -> None:
        if self.frames_written != len(self.names):
            self.discard()
            raise UserError(f"{self.folder}: {self.frames_written} frames written of the {len(self.names)} planned")
        self._output.commit()

    def discard(self) -> None:
        self._output.discard()


# ----------------------------------------------------------------------------------------------
# Scene cuts and the pairwise walk

#: Below this overlap of two frames' colour histograms a video is taken to cut to another shot.
#: Consecutive frames of one shot overlap by 0.95 or more, frames 0.4 s apart by 0.85 or more;
#: different photographs by 0.3-0.7 (measured on a real video and scikit-image's samples).
SCENE_THRESHOLD = 0.75


def colour_overlap(frame0: Tensor, frame1: Tensor, bins: int = 32) -> float:
    """How much two (1, 3, H, W) frames in [0, 1] share their colours: the intersection of their
    per-channel histograms (``bins`` levels), averaged over the channels; 1 for the same colours,
    near 0 for none in common. Motion within a shot hardly changes it; a cut to another shot does."""
    levels = (torch.stack((frame0[0], frame1[0])).float().clamp(0, 1) * (bins - 1)).round().long()  # (2, 3, H, W)
    offsets = torch.arange(6, device=levels.device).view(2, 3, 1, 1) * bins  # one histogram per frame and channel
    counts = torch.bincount((levels + offsets).flatten(), minlength=6 * bins).view(2, 3, bins).float()
    shares = counts / counts.sum(-1, keepdim=True)
    return float(torch.minimum(shares[0], shares[1]).sum(-1).mean())


def is_scene_cut(frame0: Tensor, frame1: Tensor, threshold: float = SCENE_THRESHOLD) -> bool:
    """Whether two frames are from different shots: their :func:`colour_overlap` is below
    ``threshold`` (0 never cuts)."""
    return threshold > 0 and colour_overlap(frame0, frame1) < threshold


class StreamResult(NamedTuple):
    frames_read: int     # frames of the source
    frames_written: int  # frames given to the sink
    cuts: List[int]      # source indices of the frames that begin a new shot


def interpolate_stream(source: Iterable[StreamFrame], sink, interpolate: Interpolator, times: Sequence[float],
                       scene_threshold: float = SCENE_THRESHOLD,
                       on_frame: Optional[Callable[[], None]] = None, pipelined: bool = False) -> StreamResult:
    """Writes to ``sink`` every frame of ``source`` and, between each pair, the frames at
    ``times`` (in (0, 1)); one pair in memory at a time. Across a scene cut (see
    :func:`is_scene_cut`) motion means nothing (interpolating blends two unrelated pictures), so
    each time repeats the frame nearest to it instead. ``on_frame`` is called after each frame
    written (for a progress bar). The sink is not committed: the caller does that (``with sink:``).

    ``pipelined``: the stages overlap on threads (see :func:`_pipelined_stream`), with a few frames
    in memory at a time; the frames written are the same."""
    if pipelined:
        return _pipelined_stream(source, sink, interpolate, times, scene_threshold, on_frame)
    previous: Optional[StreamFrame] = None
    read = written = 0
    cuts: List[int] = []
    for frame in source:
        read += 1
        between: List[Tensor] = []
        if previous is not None:
            check_same_size(frame.image, frame.name, previous.image, f"the frames before it ({previous.name})")
            if is_scene_cut(previous.image, frame.image, scene_threshold):
                cuts.append(frame.index)
                between = _nearest(previous, frame, times)
            else:
                between = interpolate(previous.image, frame.image, times)
        for image, origin in [(image, None) for image in between] + [(frame.image, frame)]:
            sink.write(image, origin)
            written += 1
            if on_frame is not None:
                on_frame()
        previous = frame
    return StreamResult(read, written, cuts)


def _nearest(previous: StreamFrame, frame: StreamFrame, times: Sequence[float]) -> List[Tensor]:
    """Across a scene cut: per time, the frame nearer to it."""
    return [previous.image if t < 0.5 else frame.image for t in times]


# The pipeline's queue items besides frames: the end of the stream, and "a scene cut here".
_END, _CUT = object(), object()
# How often (seconds) a thread waiting on a queue looks whether the run has stopped.
_POLL = 0.05
# How long a stopped run waits for its reading thread to notice (it may be inside a long DIS).
_READER_GRACE = 2.0


class _Pipeline:
    """What the pipeline's threads share: the stop flag, the first error, and the counts."""

    def __init__(self):
        self.stop = threading.Event()
        self.errors: List[BaseException] = []
        self.read = self.written = 0
        self.cuts: List[int] = []

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)
        self.stop.set()

    def put(self, channel: "queue.Queue", item) -> bool:
        """Puts ``item`` when there is room; False (not put) when the run stopped first."""
        while not self.stop.is_set():
            try:
                channel.put(item, timeout=_POLL)
                return True
            except queue.Full:
                pass
        return False

    def items(self, channel: "queue.Queue") -> Iterator:
        """The items put into ``channel``, until _END is put or the run stops."""
        while not self.stop.is_set():
            try:
                item = channel.get(timeout=_POLL)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item


def _pipelined_stream(source: Iterable[StreamFrame], sink, interpolate: Interpolator, times: Sequence[float],
                      scene_threshold: float, on_frame: Optional[Callable[[], None]]) -> StreamResult:
    """:func:`interpolate_stream` on three threads joined by bounded queues: a reading thread
    decodes the frames, finds the scene cuts and, for a :class:`Staged` interpolator, estimates
    each pair's motion (OpenCV's DIS releases the GIL); the caller's thread renders the frames
    between each pair; a writing thread encodes everything into the sink in order. At most two
    pairs wait for rendering and a pair's frames for writing.

    The first failure of any stage (a frame that cannot be read, an error in the motion or the
    rendering, an encoder that fails; Ctrl-C in the caller's thread) stops the others and is
    raised here, as the sequential walk would raise it, after the writing thread has ended: the
    caller may discard the sink at once. A reading thread busy in a long computation is left
    behind after a short wait (it writes nothing and stops at its next step)."""
    motion = interpolate.motion if isinstance(interpolate, Staged) else None
    run = _Pipeline()
    pairs: "queue.Queue" = queue.Queue(maxsize=2)
    writes: "queue.Queue" = queue.Queue(maxsize=len(times) + 1)

    def read() -> None:
        previous: Optional[StreamFrame] = None
        try:
            for frame in source:
                if run.stop.is_set():
                    return
                run.read += 1
                work = None
                if previous is not None:
                    check_same_size(frame.image, frame.name, previous.image, f"the frames before it ({previous.name})")
                    if is_scene_cut(previous.image, frame.image, scene_threshold):
                        run.cuts.append(frame.index)
                        work = _CUT
                    elif motion is not None:
                        work = motion(previous.image, frame.image)
                if not run.put(pairs, (frame, work)):
                    return
                previous = frame
            run.put(pairs, _END)
        except BaseException as error:  # passed on to the caller's thread, and raised there
            run.fail(error)

    def write() -> None:
        try:
            for image, frame in run.items(writes):
                sink.write(image, frame)
                run.written += 1
                if on_frame is not None:
                    on_frame()
        except BaseException as error:
            run.fail(error)

    reader = threading.Thread(target=read, name="memc-read", daemon=True)
    writer = threading.Thread(target=write, name="memc-write", daemon=True)
    reader.start()
    writer.start()
    try:
        previous: Optional[StreamFrame] = None
        for frame, work in run.items(pairs):
            if previous is not None:
                if work is _CUT:
                    between = _nearest(previous, frame, times)
                elif motion is not None:
                    between = interpolate.render(previous.image, frame.image, work, times)
                else:
                    between = interpolate(previous.image, frame.image, times)
                for image in between:
                    run.put(writes, (image, None))
            run.put(writes, (frame.image, frame))
            previous = frame
        run.put(writes, _END)
        writer.join()
    except BaseException:
        run.stop.set()
        raise
    finally:
        run.stop.set()  # the reader stops at its next step; the writer writes nothing more
        writer.join()   # before the caller discards the sink
        reader.join(_READER_GRACE)
    if run.errors:
        raise run.errors[0]
    return StreamResult(run.read, run.written, run.cuts)
