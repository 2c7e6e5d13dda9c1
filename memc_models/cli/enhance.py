"""``memc-enhance``: a video or a folder of frames denoised, deblocked or super-resolved, each frame
restored from its motion-compensated neighbours.

    memc-enhance noisy.mp4 -o clean.mp4 --task denoise              # the noise level estimated per frame
    memc-enhance noisy.mp4 -o clean.mp4 --task denoise --sigma 20   # ... or given, on 0..255
    memc-enhance blocky.mp4 -o out.mp4 --task deblock               # compression artefacts
    memc-enhance blocky.mp4 -o out.mp4 --task deblock --strength 9  # ... smoothed more (default 6)
    memc-enhance frames/ -o large/ --task sr --scale 4              # 4 times the width and height
    memc-enhance small.mp4 -o large.mp4 --task sr --checkpoint MEMC-Net_SR.pth

Each frame is restored from a sliding window of up to 7 frames centred on it (three neighbours on
each side; fewer at the ends of the clip), so the output has one frame per input frame, in order.
Without ``--checkpoint`` the training-free path of :mod:`memc_models.enhancement` runs (nothing to
download); with one, the authors' MEMC-Net_VE (``MEMC-Net_SR.pth``, ``_DN.pth``, ``_DB.pth``).
Every output is written atomically (:mod:`memc_models.atomic`): a run that fails or is stopped
leaves no part of it, and an older file at the target as it was.
"""

import argparse
import os
import re
import sys
from typing import Optional, Sequence

import torch

from ..enhancement import SCALES, TASKS
from ..errors import UserError
from ..images import IMAGE_EXTENSIONS, file_extension
from ..inference import build_enhancer, pick_device
from ..memc_net_ve import WINDOW
from ..streaming import FolderSink, FolderSource, VideoSink, centred_windows
from ..video import check_video_output
from .common import (HelpFormatter, artefact_strength, check_outputs, enhancement_scale, enhancement_task,
                     half_notes, input_video, new_folder_output, noise_sigma, note_lost_audio, peek, progress_bar,
                     run, say)

__all__ = ["main"]

PROG = "memc-enhance"

#: What each released MEMC-Net_VE checkpoint was trained for, by the file's name.
_RELEASED_FOR = {"SR": ("sr", "super-resolution"), "DN": ("denoise", "denoising"), "DB": ("deblock", "deblocking")}


def _notes(args) -> list:
    notes = []
    if args.checkpoint is not None:
        for option, given in (("--sigma", args.sigma), ("--strength", args.strength)):
            if given is not None:
                notes.append(f"{option} applies to the training-free path; the --checkpoint model does not take it")
        released = re.search(r"MEMC-Net_(SR|DN|DB)\b", os.path.basename(args.checkpoint), re.IGNORECASE)
        if released:
            task, what = _RELEASED_FOR[released.group(1).upper()]
            if task != args.task:
                notes.append(f"--checkpoint {args.checkpoint} was released for {what}; running it for "
                             f"--task {args.task}")
    notes.extend(half_notes(args))
    if args.keep_audio and os.path.isdir(args.input):
        notes.append("--keep-audio applies to an input video")
    return notes


def _check_input(path: str) -> bool:
    """Whether ``path`` is a folder of frames (else a video file); an error for anything else."""
    if os.path.isdir(path):
        return True
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or folder")
    if file_extension(path) in IMAGE_EXTENSIONS:
        raise UserError(f"{path} is an image; memc-enhance takes a video or a folder of frames (each frame is "
                        "restored from its neighbours)")
    return False


def _check_count(name: str, count: int) -> None:
    """The one check that a stream (a video or a folder, named ``name``) of ``count`` frames is long
    enough: each frame is restored from at least 2 neighbours. Made before the enhancer, the output
    and the progress bar (a video's frames are counted by reading 3 ahead: :func:`peek`)."""
    if count < 3:
        held = f"{count} frame(s)" if count else "no frames"
        raise UserError(f"{name}: holds {held}; memc-enhance needs at least 3 (each frame is restored from 2 to 6 "
                        "neighbours)")


def _enhance_stream(source, sink, enhance, on_frame) -> int:
    """Writes to ``sink`` each frame of ``source`` restored from its centred window; returns how
    many. ``source`` holds at least 3 frames (:func:`_check_count`), so every window has 3 or more."""
    written = 0
    for window, centre in centred_windows(source, WINDOW):
        frames = torch.cat([frame.image for frame in window])
        sink.write(enhance(frames, centre).unsqueeze(0))
        written += 1
        on_frame()
    return written


#: The smallest frame side from which the noise level can be estimated (the patches of
#: :func:`memc_models.enhancement.estimate_noise_sigma`).
_ESTIMATE_SIDE = 7


def _enhancer(args, device, options: dict):
    """``options``: build_enhancer's sigma, scale and strength, as read from the command line."""
    enhance = build_enhancer(device, args.task, args.checkpoint, half=args.half, **options)
    if args.task != "denoise" or options["sigma"] is not None or args.checkpoint is not None:
        return enhance

    def estimating(frames, centre):
        height, width = frames.shape[-2:]
        if min(height, width) < _ESTIMATE_SIDE:
            raise UserError(f"{args.input}: the frames are {width}x{height}; estimating their noise needs at least "
                            f"{_ESTIMATE_SIDE}x{_ESTIMATE_SIDE} pixels: give --sigma")
        return enhance(frames, centre)

    return estimating


def _video(args, device, options: dict) -> None:
    source_path, output = args.input, args.output
    check_video_output(output)
    check_outputs([output], [source_path])
    with input_video(source_path, args.keep_audio, args.quiet, "enhancing") as (source, audio_from):
        read, frames = peek(source, 3)
        _check_count(source_path, read)
        enhance = _enhancer(args, device, options)
        with VideoSink(output, source.fps, audio_from) as sink, \
                progress_bar(source.count, args.task, args.quiet) as bar:
            written = _enhance_stream(frames, sink, enhance, bar.update)
    note_lost_audio(sink, source_path, args.quiet)
    say(args.quiet, f"{output}: {written} frames at {source.fps:g} fps")


def _folder(args, device, options: dict) -> None:
    folder, output = args.input, args.output
    source = FolderSource(folder)
    _check_count(folder, len(source.paths))
    new_folder_output(output, folder)
    count = len(source.paths)
    with FolderSink(output, count, source.extension, source.bits) as sink:  # claims the folder
        enhance = _enhancer(args, device, options)
        with progress_bar(count, args.task, args.quiet) as bar:
            written = _enhance_stream(source, sink, enhance, bar.update)
    say(args.quiet, f"{output}: {written} frames")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Denoise, deblock or super-resolve a video or a folder of frames, each frame restored from "
        "its neighbours aligned by motion (a sliding window of up to 7 frames; fewer at the ends of the clip). "
        "Without --checkpoint a training-free path runs (DIS optical flow, adaptive warping, a robust temporal "
        "merge that ignores neighbours which do not agree, then DCT shrinkage; for sr, multi-frame "
        "back-projection). Outputs appear whole or not at all: a run that fails or is stopped (Ctrl-C, SIGTERM, "
        "SIGHUP) removes what it wrote.",
        epilog="examples:\n  memc-enhance noisy.mp4 -o clean.mp4 --task denoise\n"
        "  memc-enhance noisy.mp4 -o clean.mp4 --task denoise --sigma 20\n"
        "  memc-enhance blocky.mp4 -o out.mp4 --task deblock\n"
        "  memc-enhance blocky.mp4 -o out.mp4 --task deblock --strength 9\n"
        "  memc-enhance frames/ -o large/ --task sr --scale 4   (writes large/00000.png ...)\n"
        "  memc-enhance small.mp4 -o large.mp4 --task sr --checkpoint MEMC-Net_SR.pth",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", metavar="IN", help="a video, or a folder of frames (in natural name order)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the output video, or a new or empty folder (for a folder of frames)")
    parser.add_argument("--task", required=True, metavar="|".join(TASKS),
                        help="denoise: additive noise; deblock: compression artefacts; sr: super-resolution")
    parser.add_argument("--scale", metavar="|".join(map(str, SCALES)),
                        help="--task sr: how many times larger the output is (default 4)")
    parser.add_argument("--sigma", metavar="S",
                        help="--task denoise: the noise's standard deviation on 0..255 (default: estimated from "
                        "each frame)")
    parser.add_argument("--strength", metavar="S",
                        help="--task deblock: the compression artefacts' level, treated as noise, on 0..255 (default "
                        "6; larger smooths more)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="the authors' MEMC-Net_VE weights (MEMC-Net_SR.pth, MEMC-Net_DN.pth, MEMC-Net_DB.pth) "
                        "or a saved memc_net_ve() (default: the training-free path)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to run (default: auto)")
    parser.add_argument("--half", action="store_true", help="float16 autocast for the --checkpoint model on CUDA")
    parser.add_argument("--keep-audio", action="store_true",
                        help="videos: copy the input's audio into the output (by default it has none)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    return parser


def _enhance(argv: Optional[Sequence[str]]) -> int:
    args = _parser().parse_args(argv)
    args.task = enhancement_task(args.task)
    options = {"scale": enhancement_scale(args.scale, args.task), "sigma": noise_sigma(args.sigma, args.task),
               "strength": artefact_strength(args.strength, args.task)}
    folder = _check_input(args.input)
    for note in _notes(args):
        say(args.quiet, f"note: {note}")
    device = pick_device(args.device)
    if folder:
        _folder(args, device, options)
    else:
        _video(args, device, options)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_enhance, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
