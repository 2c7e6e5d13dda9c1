"""What the console programs share: :func:`run`, which turns every way a run can end into an exit
status and at most one line; the options and argument types the programs have in common; and their
shared handling of inputs and outputs (checks, an input video's notes, the progress bar)."""

import argparse
import contextlib
import ctypes
import itertools
import math
import os
import signal
import sys
import textwrap
import traceback
import warnings
from typing import Callable, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar

from ..atomic import discard_pending
from ..errors import UserError, first_line
from ..images import IMAGE_EXTENSIONS, check_output, file_extension
from ..streaming import VideoSource
from ..video import VIDEO_CODECS
from ..variants import VARIANTS

__all__ = ["STOP_SIGNALS", "HelpFormatter", "Interrupted", "add_method_options", "artefact_strength",
           "check_new_folder", "check_outputs", "enhancement_scale", "enhancement_task", "half_notes", "input_video",
           "keep_freed_memory", "method_notes", "new_folder_output", "noise_sigma", "note_lost_audio", "peek",
           "positive_int", "progress_bar", "run", "say", "signal_number", "unit_interval", "user_message"]

T = TypeVar("T")

#: The signals that stop a run cleanly: what it was writing is removed, the targets stay as they were
#: (those the platform has: Windows has no SIGHUP).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (SIGINT), SIGTERM or SIGHUP; ``message`` says what was kept."""

    def __init__(self, signum: int = signal.SIGINT, message: Optional[str] = None):
        super().__init__(message or "")
        self.signum, self.message = signum, message

    def describe(self) -> str:
        if self.message:
            return self.message
        if self.signum == signal.SIGINT:
            return "interrupted"
        return f"stopped by {signal.Signals(self.signum).name}"


def signal_number(interruption: KeyboardInterrupt) -> int:
    """The signal behind a KeyboardInterrupt (SIGINT unless it is an :class:`Interrupted`)."""
    return interruption.signum if isinstance(interruption, Interrupted) else signal.SIGINT


class _StopOnSignals:
    """While active, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread, once:
    the unwinding that follows (removing partial outputs) is not interrupted by a second signal.
    A signal the process was started ignoring (``nohup`` ignores SIGHUP) stays ignored.
    :meth:`unblock` lets them through where they are blocked."""

    def __enter__(self):
        self.previous = {}
        self.stopping = False
        for signum in STOP_SIGNALS:
            try:
                # One the program was started ignoring stays ignored: nohup's SIGHUP (a long run
                # must outlive the terminal), the SIGINT of a shell's background job.
                if signal.getsignal(signum) == signal.SIG_IGN:
                    continue
                self.previous[signum] = signal.signal(signum, self._handle)
            except (ValueError, OSError):  # not the main thread, or a signal the platform lacks
                pass
        self.blocked = None
        return self

    def unblock(self) -> None:
        """Unblocks the handled signals in this thread until the end: a process started with them
        blocked (a blocked mask is inherited across exec) would otherwise never see them, and a
        SIGTERM sent to stop it would only take effect once the run had ended on its own. One that
        is pending already raises :class:`Interrupted` here."""
        if self.previous and hasattr(signal, "pthread_sigmask"):  # POSIX
            self.blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the mask as it is
            signal.pthread_sigmask(signal.SIG_UNBLOCK, list(self.previous))

    def _handle(self, signum, frame) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise Interrupted(signum)

    def __exit__(self, *exc) -> bool:
        if self.blocked is not None:  # blocked again where they were; the rest of the mask as the run left it
            signal.pthread_sigmask(signal.SIG_BLOCK, self.blocked & set(self.previous))
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False


def _one_line_warnings(prog: str):
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).strip()
        print(f"{prog}: warning: {text.splitlines()[0] if text else category.__name__}", file=sys.stderr)

    return show


# glibc's mallopt parameters.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Lets the C library's allocator keep what the process frees for its next allocations (glibc:
    large blocks from its heap, not from fresh mappings, and the heap never trimmed). A program
    that works frame after frame allocates the same large tensors again and again: fresh mappings
    are faulted in and zeroed page by page every time (at 4K, about 1.6 GB a frame and a third of
    memc-interpolate's time: README). The process keeps its peak memory until it ends, and memory
    freed between frames of other sizes is reused only where it fits (more may be held than at the
    default). A setting of the whole process, for a program's own: :func:`run` makes it only for a
    program started as one. True where the setting took (glibc); elsewhere nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def run(main: Callable[[Optional[Sequence[str]]], int], prog: str, argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``main(argv)`` and returns the exit status, ending every way in at most one line on
    stderr: a :class:`UserError` (status 1), Ctrl-C, SIGTERM or SIGHUP (128 + the signal's number),
    an OS error or an exhausted memory (1), or an unexpected error (2, with the traceback when the
    environment variable ``MEMC_TRACEBACK`` is set). Warnings print as one line each. Whatever
    output was still being written is removed before returning (:func:`memc_models.atomic.discard_pending`).
    With ``argv`` None, the program as started (its console script or ``python -m``, reading
    ``sys.argv``), freed memory is kept for reuse (:func:`keep_freed_memory`); a caller that passes
    its own ``argv`` (a test, a script) keeps its C library's allocator as it was."""
    if argv is None:
        keep_freed_memory()
    with _StopOnSignals() as stop, warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings(prog)
        try:
            stop.unblock()
            return main(argv)
        except UserError as error:
            stop.stopping = True
            print(f"{prog}: error: {user_message(error)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as interruption:
            stop.stopping = True
            describe = interruption.describe() if isinstance(interruption, Interrupted) else "interrupted"
            print(f"{prog}: {describe}", file=sys.stderr)
            return 128 + signal_number(interruption)
        except MemoryError:
            stop.stopping = True
            print(f"{prog}: error: out of memory", file=sys.stderr)
            return 1
        except OSError as error:
            stop.stopping = True
            where = f"{error.filename}: " if error.filename else ""
            print(f"{prog}: error: {where}{error.strerror or first_line(error)}", file=sys.stderr)
            return 1
        except Exception as error:  # a bug: one line, and the traceback on request
            stop.stopping = True
            if os.environ.get("MEMC_TRACEBACK"):
                traceback.print_exc()
            print(f"{prog}: internal error: {type(error).__name__}: {first_line(error)} (set MEMC_TRACEBACK=1 to see "
                  "where)", file=sys.stderr)
            return 2
        finally:
            stop.stopping = True
            discard_pending()


def user_message(error: UserError) -> str:
    """The message of a UserError, also when a DataLoader worker raised it: the loader re-raises it
    in the main process with the worker's traceback as its text, whose last line is
    ``memc_models.errors.UserError: <message>``."""
    text = str(error)
    if text.startswith("Caught UserError") and "Traceback" in text:
        return text.rstrip().splitlines()[-1].split(": ", 1)[-1]
    return text


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The programs' --help: the description's and the epilog's prose wrapped to the terminal, as
    argparse wraps the options; their example lines (those indented) kept as written, one command a
    line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            if any(line.startswith(" ") for line in paragraph.splitlines()):
                paragraphs.append(super()._fill_text(paragraph, width, indent))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent,
                                                subsequent_indent=indent, break_on_hyphens=False))
        return "\n\n".join(paragraphs)


def say(quiet: bool, message: str) -> None:
    """A note on stderr unless ``quiet``."""
    if not quiet:
        print(message, file=sys.stderr)


def positive_int(text: str) -> int:
    """argparse type: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more; got {text}")
    return value


def unit_interval(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1; got {text}")
    return value


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """--device, --half, --checkpoint, --model and --fast: which method runs, and where."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to run (default: auto)")
    parser.add_argument("--half", action="store_true", help="float16 autocast for the MEMC-Net model on CUDA")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="a MEMC-Net checkpoint: ours (memc-train best.pt or last.pt) or the authors' release "
                        "(default: the training-free path)")
    parser.add_argument("--model", choices=list(VARIANTS), help="the checkpoint's variant (default: memc)")
    parser.add_argument("--fast", action="store_true",
                        help="training-free path: one orientation, no self-ensemble (4x faster, ~2%% higher error)")


def half_notes(args) -> list:
    """A note if --half is given without --checkpoint (it applies to a model only)."""
    if args.half and args.checkpoint is None:
        return ["--half applies to MEMC-Net models; the default path runs in float32"]
    return []


def method_notes(args) -> list:
    """Method options given that do nothing with the others given, each as a note."""
    notes = half_notes(args)
    if args.checkpoint is None:
        if args.model is not None:
            notes.append("--model applies with --checkpoint; without one the training-free path runs")
    elif args.fast:
        notes.append("--fast applies to the training-free path; it does not change a --checkpoint model")
    return notes


def new_folder_output(output: str, folder: str) -> None:
    """-o for a folder of frames read from ``folder``: a new or empty folder that is not the input,
    named without a video's or an image's extension (memc-interpolate's and memc-enhance's). A
    UserError saying which, before any work."""
    _check_not_a_file("-o", output)
    # A name like a video's or an image's would get a folder of frames, silently: say so instead.
    extension = file_extension(os.path.normpath(output))
    if extension in VIDEO_CODECS or extension in IMAGE_EXTENSIONS:
        kind, article = ("video", "a") if extension in VIDEO_CODECS else ("image", "an")
        raise UserError(f"-o {output}: a folder of frames becomes a folder of frames, not {article} {kind}; give a "
                        f"folder name without {article} {kind} extension ({extension})")
    if os.path.isdir(output) and os.path.samefile(output, folder):
        raise UserError(f"-o {output} is the input folder; choose another output folder")
    _check_empty("-o", output)


def check_new_folder(option: str, path: str) -> None:
    """``path``, given to ``option``, as an output folder (written by an
    :class:`~memc_models.atomic.AtomicFolder`): new or empty, never mixing one run's files with
    another's. A UserError saying which, before any work."""
    _check_not_a_file(option, path)
    _check_empty(option, path)


def _check_not_a_file(option: str, path: str) -> None:
    if os.path.islink(path):  # the finished folder is renamed into place: it would not replace a link
        raise UserError(f"{option} {path} is a link; expected a new or empty folder")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option} {path} is a file; expected a new or empty folder")


def _check_empty(option: str, path: str) -> None:
    if os.path.isdir(path) and os.listdir(path):
        raise UserError(f"{option} {path} already holds files; choose a new or empty folder")


def check_outputs(outputs: Sequence[str], inputs: Sequence[str]) -> None:
    """Every output file can be written and none is an input (which would be destroyed while read)."""
    for output in outputs:
        for path in inputs:
            if os.path.exists(output) and os.path.samefile(output, path):
                raise UserError(f"-o {output} is the input {path}; choose another output name")
        check_output(output)


def peek(frames: Iterable[T], count: int) -> Tuple[int, Iterator[T]]:
    """Reads the first ``count`` items of ``frames`` ahead: how many there are (fewer only when the
    stream ends sooner) and an iterator over the whole stream, those included. For a stream too
    short to work on, found before a progress bar or an output appears (a video's frame count is
    only an estimate). Each item read ahead is let go once given."""
    stream = iter(frames)
    ahead = list(itertools.islice(stream, count))

    def whole() -> Iterator[T]:
        while ahead:
            yield ahead.pop(0)
        yield from stream

    return len(ahead), whole()


def progress_bar(total: Optional[int], desc: str, quiet: bool):
    """A tqdm bar counting the frames written (none when ``quiet``)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=desc, disable=quiet, dynamic_ncols=True)


@contextlib.contextmanager
def input_video(path: str, keep_audio: bool, quiet: bool, doing: str) -> Iterator[Tuple[VideoSource, Optional[str]]]:
    """The :class:`~memc_models.streaming.VideoSource` of ``path`` and the path whose audio the
    output gets (None for none), closed on leaving. Notes what happens to its audio, and a file
    that looks cut short (``doing``, e.g. "enhancing", the frames it holds)."""
    source = VideoSource(path)
    try:
        reader = source.reader
        if keep_audio and not reader.audio:
            say(quiet, f"note: {path} has no audio to keep")
        elif not keep_audio and reader.audio:
            say(quiet, f"note: {path} has audio; the output has none (--keep-audio copies it)")
        if reader.looks_cut_short():
            say(quiet, f"note: {path} announces {reader.duration:g} s at {reader.fps:g} fps (about "
                f"{round(reader.duration * reader.fps)} frames) but holds clearly fewer: the file looks cut short; "
                f"{doing} the frames it holds")
        yield source, (path if keep_audio and reader.audio else None)
    finally:
        source.close()


def note_lost_audio(sink, path: str, quiet: bool) -> None:
    """A note when a finished :class:`~memc_models.streaming.VideoSink` could not add the audio of ``path``."""
    if sink.audio_problem is not None:
        say(quiet, f"note: could not add the audio of {path} ({sink.audio_problem}); the output has none")


# The enhancement options (memc-enhance, memc-eval enhance): read as text and checked here, so that
# each mistake is one line (status 1) saying what was expected.


def enhancement_task(text: Optional[str]) -> str:
    """--task: denoise, deblock or sr."""
    from ..enhancement import TASKS

    if text not in TASKS:
        got = "nothing" if text is None else repr(text)
        raise UserError(f"--task must be one of {', '.join(TASKS)}; got {got}")
    return text


def enhancement_scale(text: Optional[str], task: str) -> Optional[int]:
    """--scale for ``task``: 2 or 4 for sr (default 4), an error with another task."""
    from ..enhancement import SCALES

    if text is None:
        return 4 if task == "sr" else None
    if task != "sr":
        raise UserError(f"--scale applies to --task sr; --task {task} keeps the frame size")
    if text not in [str(scale) for scale in SCALES]:
        raise UserError(f"--scale must be {' or '.join(map(str, SCALES))}; got {text}")
    return int(text)


def _level(text: Optional[str], task: str, option: str, owner: str, what: str,
           default: Optional[float]) -> Optional[float]:
    """A level on 0..255 that only --task ``owner`` takes: ``default`` when not given, an error
    with another task or outside 0..255."""
    if text is None:
        return default if task == owner else None
    if task != owner:
        raise UserError(f"{option} applies to --task {owner} ({what}); got --task {task}")
    try:
        level = float(text)
    except ValueError:
        level = math.nan
    if not 0.0 <= level <= 255.0:  # NaN fails too
        raise UserError(f"{option} must be a number from 0 to 255 ({what} on 0..255); got {text}")
    return level


def noise_sigma(text: Optional[str], task: str, default: Optional[float] = None) -> Optional[float]:
    """--sigma for ``task``: the noise's standard deviation on 0..255 for denoise (``default`` when
    not given), an error with another task."""
    return _level(text, task, "--sigma", "denoise", "the noise's standard deviation", default)


def artefact_strength(text: Optional[str], task: str) -> Optional[float]:
    """--strength for ``task``: for deblock, the compression artefacts' level treated as noise on
    0..255 (None when not given: the library's default), an error with another task."""
    return _level(text, task, "--strength", "deblock", "the artefacts' level treated as noise", None)
