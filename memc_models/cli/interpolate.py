"""``memc-interpolate``: frames between two images, or a video or folder of frames at N times the rate.

    memc-interpolate A.png B.png -o MID.png                 # the frame at t = 0.5
    memc-interpolate A.png B.png -o OUT.png --factor 4      # OUT_t0.250.png, OUT_t0.500.png, ...
    memc-interpolate IN.mp4 -o OUT.mp4 --factor 2           # twice the frame rate
    memc-interpolate IN.mp4 -o OUT.mp4 --checkpoint memc_star.pth --model memc_star
    memc-interpolate FRAMES/ -o OUT/ --factor 2             # a folder of frames: OUT/00000.png, ...

Without ``--checkpoint`` the training-free path of :mod:`memc_models.classical` runs (nothing to
download); with one, a MEMC-Net model (ours, or a checkpoint released by the authors). Every output
is written atomically (:mod:`memc_models.atomic`): a run that fails or is stopped leaves no part of
it, and an older file at the target as it was.
"""

import argparse
import os
import sys
import time
from typing import List, Optional, Sequence

from ..atomic import AtomicFiles
from ..errors import UserError
from ..frames import check_same_size
from ..images import IMAGE_EXTENSIONS, check_image_input, check_image_output, encode_image, read_image, stored_bits
from ..inference import build_interpolator, pick_device
from ..streaming import SCENE_THRESHOLD, FolderSink, FolderSource, VideoSink, interpolate_stream
from ..video import check_video_output
from .common import (HelpFormatter, add_method_options, check_outputs, input_video, method_notes, new_folder_output,
                     note_lost_audio, peek, progress_bar, run, say, unit_interval)

__all__ = ["frame_times", "main", "output_paths"]

PROG = "memc-interpolate"


def frame_times(times: Optional[Sequence[float]], factor: Optional[int]) -> List[float]:
    """The times to interpolate: ``times`` as given, or k / factor for k = 1 .. factor - 1."""
    if factor is not None:
        if factor < 2:
            raise UserError(f"--factor must be an integer of at least 2; got {factor}")
        return [k / factor for k in range(1, factor)]
    times = list(times) if times else [0.5]
    for t in times:
        if not 0.0 < t < 1.0:
            raise UserError(f"--times must lie strictly between 0 and 1; got {t}")
        if times.count(t) > 1:
            raise UserError(f"--times lists {t} more than once")
    return times


def output_paths(output: str, times: Sequence[float]) -> List[str]:
    """OUT itself for one time, else OUT_t<time><ext> per time: to 3 decimals, or as many more as
    it takes to tell the times apart (never two times in one file)."""
    if len(times) == 1:
        return [output]
    stem, suffix = os.path.splitext(output)
    for decimals in range(3, 10):
        paths = [f"{stem}_t{t:.{decimals}f}{suffix}" for t in times]
        if len(set(paths)) == len(paths):
            return paths
    raise UserError("--times: some times differ by less than 1e-9; they would share an output file")


def _note_cuts(args, cuts: Sequence[int]) -> None:
    if cuts:
        shown = ", ".join(map(str, cuts[:10])) + (", ..." if len(cuts) > 10 else "")
        say(args.quiet, f"note: {len(cuts)} scene cut(s), before input frame(s) {shown} (counted from 0): the frames "
            "there repeat the nearest input instead of blending two shots (--scene-threshold 0 interpolates anyway)")


def _interpolator(args, device):
    return build_interpolator(device, args.checkpoint, args.model or "memc", args.half, args.fast,
                              note=lambda text: say(args.quiet, f"note: {text}"))


def _images(args, device, times: List[float]) -> None:
    for path in args.inputs:  # fail before loading a model
        check_image_input(path)
    check_image_output(args.output)
    paths = output_paths(args.output, times)
    check_outputs(paths, args.inputs)
    interpolate = _interpolator(args, device)
    frame0, frame1 = read_image(args.inputs[0]), read_image(args.inputs[1])
    check_same_size(frame1, args.inputs[1], frame0, args.inputs[0])
    # 16-bit inputs give 16-bit outputs where the output format has them.
    bits = 16 if all(stored_bits(path) == 16 for path in args.inputs) else 8
    start = time.perf_counter()
    frames = interpolate(frame0, frame1, times)
    elapsed = time.perf_counter() - start
    with AtomicFiles() as outputs:  # all the times' files, or none
        for path, frame in zip(paths, frames):
            outputs.write(path, encode_image(path, frame, bits))
    if not args.quiet:
        for path in paths:
            print(path)
    say(args.quiet, f"{len(frames)} frame(s) in {elapsed:.2f} s")


def _video(args, device, times: List[float], factor: int) -> None:
    source_path = args.inputs[0]
    check_video_output(args.output)
    check_outputs([args.output], args.inputs)
    # N times the frames at N times the rate last as long as the input: its audio still fits.
    with input_video(source_path, args.keep_audio, args.quiet, "interpolating") as (source, audio_from):
        read, frames = peek(source, 2)
        if read == 0:
            raise UserError(f"{source_path}: the video has no frames")
        # One frame leaves nothing to interpolate: most likely a still saved as a video, so say
        # so rather than write a copy that looks like success.
        if read == 1:
            raise UserError(f"{source_path}: the video has only 1 frame; there is nothing to interpolate")
        interpolate = _interpolator(args, device)
        total = None if source.count is None else factor * (source.count - 1) + 1
        fps = source.fps * factor
        with VideoSink(args.output, fps, audio_from) as sink, progress_bar(total, "interpolating", args.quiet) as bar:
            result = interpolate_stream(frames, sink, interpolate, times, args.scene_threshold, bar.update,
                                        pipelined=not args.sequential)
    note_lost_audio(sink, source_path, args.quiet)
    _note_cuts(args, result.cuts)
    say(args.quiet, f"{args.output}: {result.frames_written} frames at {fps:g} fps")


def _folder(args, device, times: List[float], factor: int) -> None:
    folder, output = args.inputs[0], args.output
    source = FolderSource(folder)
    if len(source.paths) < 2:
        raise UserError(f"{folder}: holds {len(source.paths)} image(s); a folder of frames needs at least 2 "
                        f"({', '.join(IMAGE_EXTENSIONS)})")
    new_folder_output(output, folder)
    count = factor * (len(source.paths) - 1) + 1
    with FolderSink(output, count, source.extension, source.bits) as sink:  # claims the folder
        interpolate = _interpolator(args, device)
        with progress_bar(count, "interpolating", args.quiet) as bar:
            result = interpolate_stream(source, sink, interpolate, times, args.scene_threshold, bar.update,
                                        pipelined=not args.sequential)
    _note_cuts(args, result.cuts)
    say(args.quiet, f"{output}: {result.frames_written} frames from {result.frames_read}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Interpolate the frames between two images, or raise the frame rate of a video or a folder of "
        "frames, with MEMC-Net's flow projection and adaptive warping. Without --checkpoint a training-free path "
        "runs (DIS optical flow, projection, bicubic adaptive warping, occlusion-aware blending). Outputs appear "
        "whole or not at all: a run that fails or is stopped (Ctrl-C, SIGTERM, SIGHUP) removes what it wrote.",
        epilog="examples:\n  memc-interpolate a.png b.png -o mid.png\n"
        "  memc-interpolate a.png b.png -o out.png --factor 4   (writes out_t0.250.png ...)\n"
        "  memc-interpolate in.mp4 -o out.mp4 --factor 2\n"
        "  memc-interpolate frames/ -o out_frames/ --factor 2   (writes out_frames/00000.png ...)",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="two images (A B), one video, or one folder of frames (in natural name order)")
    parser.add_argument("-o", "--output", required=True,
                        help="output image (with several times, one file per time: NAME_t0.250.EXT ...), video, "
                        "or folder (for a folder of frames)")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--times", type=float, nargs="+", metavar="T",
                        help="times in (0, 1) between two images (default 0.5)")
    timing.add_argument("--factor", type=int, metavar="N",
                        help="N-1 evenly spaced frames between each pair; a video comes out at N times its frame rate "
                        "(default 2 for videos and folders of frames)")
    add_method_options(parser)
    parser.add_argument("--scene-threshold", type=unit_interval, metavar="X",
                        help="videos and folders of frames: two frames whose colour histograms overlap less than X "
                        f"(0..1) are a cut to another shot, where the nearest input frame is repeated instead of "
                        f"interpolated (default {SCENE_THRESHOLD}; 0 interpolates everywhere)")
    parser.add_argument("--keep-audio", action="store_true",
                        help="videos: copy the input's audio into the output (it lasts as long: N times the frames at "
                        "N times the rate); by default the output has none")
    parser.add_argument("--sequential", action="store_true",
                        help="videos and folders of frames: read, estimate motion, render and write one step after "
                        "another on one thread (by default these overlap on threads; the frames are the same)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    return parser


def _interpolate(argv: Optional[Sequence[str]]) -> int:
    args = _parser().parse_args(argv)
    if len(args.inputs) > 2:
        raise UserError(f"expected two images, one video or one folder of frames; got {len(args.inputs)} inputs "
                        "(put a sequence's frames in a folder and pass the folder)")
    if len(args.inputs) == 1 and not os.path.exists(args.inputs[0]):  # before -o is read as a video's or a folder's
        raise UserError(f"{args.inputs[0]}: no such file or folder")
    folder = len(args.inputs) == 1 and os.path.isdir(args.inputs[0])
    video = len(args.inputs) == 1 and not folder
    if video and os.path.splitext(args.inputs[0])[1].lower() in IMAGE_EXTENSIONS:
        raise UserError(f"{args.inputs[0]} is an image; pass two images, one video or one folder of frames")
    if (video or folder) and args.times is not None:
        raise UserError(f"--times applies to two images; for a {'video' if video else 'folder of frames'} "
                        "use --factor N")
    factor = args.factor if args.factor is not None else (2 if video or folder else None)
    times = frame_times(args.times, factor)
    notes = method_notes(args)
    if args.keep_audio and not (len(args.inputs) == 1 and os.path.isfile(args.inputs[0])):
        notes.append("--keep-audio applies to an input video")
    for option, given in (("--sequential", args.sequential), ("--scene-threshold", args.scene_threshold is not None)):
        if given and not (video or folder):
            notes.append(f"{option} applies to a video or a folder of frames")
    if args.scene_threshold is None:
        args.scene_threshold = SCENE_THRESHOLD
    for note in notes:
        say(args.quiet, f"note: {note}")
    device = pick_device(args.device)
    if folder:
        _folder(args, device, times, factor)
    elif video:
        _video(args, device, times, factor)
    else:
        _images(args, device, times)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_interpolate, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
