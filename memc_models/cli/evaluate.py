"""``memc-eval``: interpolation quality on Middlebury, Vimeo90K and videos, for our method and
frame averaging; enhancement quality on folders of clean frames, for ours, the degraded input and
the peer methods.

    memc-eval middlebury DIR [--save OUT] [--checkpoint PATH --model memc_star]
    memc-eval vimeo DIR [--limit N]
    memc-eval video FILE [--limit N]     (every frame i+1 from frames i and i+2)
    memc-eval enhance DIR --task denoise [--sigma 20] [--seed 0] [--windows N]
    memc-eval enhance DIR --task deblock [--qp 37] [--strength 6]  |  --task sr [--scale 4]

The metrics (IE, RMSE, PSNR, SSIM) are :mod:`memc_models.metrics`'. Every sequence or sample that
cannot be used is named, with a count ("evaluated 7 of 8; Beta: no frame10i11.png"); a run where
none can is an error. ``--limit N`` evaluates the first N samples that can be used (the ones
skipped on the way are named and do not count). ``--save`` images go into a new or empty folder,
claimed while the run writes it and appearing whole at the end (as ``-o`` folders do), once the
table is printed; if other files appeared in the folder meanwhile, the images are kept in
``OUT-2`` (or the next free ``OUT-N``) and the run ends with an error (status 1) saying where.
``enhance`` runs :func:`memc_models.enhancement_eval.evaluate_enhancement` (the same evaluation as
``benchmarks/bench_enhance.py``) and prints one row per method.
"""

import argparse
import contextlib
import os
import sys
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..atomic import AtomicFolder, write_file
from ..datasets import LoadedSample, middlebury_samples, read_samples, video_samples, vimeo_samples
from ..errors import UserError, first_few
from ..frames import to_uint8
from ..images import encode_image
from ..inference import build_enhancer, build_interpolator, pick_device
from ..metrics import METRICS, SSIM_WINDOW, error_levels, metrics
from .common import (HelpFormatter, add_method_options, artefact_strength, check_new_folder, enhancement_scale,
                     enhancement_task, half_notes, method_notes, noise_sigma, positive_int, run, say)

__all__ = ["comparison", "evaluate", "format_enhancement_table", "format_table", "main"]

PROG = "memc-eval"

#: One evaluated sample: (name, our metrics, frame-average metrics, seconds for our frame).
Row = Tuple[str, Dict[str, float], Dict[str, float], float]


def _error_map(output: Tensor, truth: Tensor) -> np.ndarray:
    """|output - truth| averaged over channels, x4, as a heat map (black: exact)."""
    import cv2

    error = error_levels(output, truth).squeeze()
    grey = (error * 4).clamp(0, 255).to(torch.uint8).cpu().numpy()
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def _labelled(pixels: np.ndarray, label: str) -> np.ndarray:
    import cv2

    pixels = np.ascontiguousarray(pixels).copy()
    scale = max(pixels.shape[1] / 640.0, 0.4)
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(pixels, label, (8, int(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, colour, thickness,
                    cv2.LINE_AA)
    return pixels


def comparison(first: Tensor, second: Tensor, ours: Tensor, average: Tensor, truth: Tensor, ie: float) -> np.ndarray:
    """Side by side, two rows: frame 0, frame 1, frame average / ours, truth, error map of ours."""
    top = [_labelled(to_uint8(first), "frame 0"), _labelled(to_uint8(second), "frame 1"),
           _labelled(to_uint8(average), "frame average")]
    bottom = [_labelled(to_uint8(ours), f"ours (IE {ie:.2f})"), _labelled(to_uint8(truth), "truth"),
              _labelled(_error_map(ours, truth), "|ours - truth| x4")]
    return np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)


def evaluate(samples: Iterable[LoadedSample], interpolate, saved: Optional[AtomicFolder] = None,
             progress: bool = True, total: Optional[int] = None, unusable: Optional[List[str]] = None,
             limit: Optional[int] = None) -> List[Row]:
    """Per sample: (name, our metrics, frame-average metrics, seconds for our frame). A sample
    whose frames differ in size is not evaluated: it is added to ``unusable`` (a list of
    ``NAME: why``). With ``limit``, evaluation stops after ``limit`` samples have been evaluated
    (the skipped ones do not count; no sample after the last one evaluated is taken from
    ``samples``). With ``saved``, each output and a comparison are written into that folder
    (in place when the caller commits it). ``total``, the number of samples to
    evaluate if known, is for the progress bar."""
    from tqdm import tqdm

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be 1 or more (or None); got {limit}")
    rows: List[Row] = []
    bar = tqdm(desc="evaluating", unit="sample", total=total, disable=not progress or total == 1, leave=False)
    with bar:
        for name, first, second, truth in samples:
            if not first.shape == second.shape == truth.shape:
                if unusable is None:
                    raise UserError(f"{name}: the frames differ in size")
                unusable.append(f"{name}: the frames differ in size")
                continue
            rows.append(_evaluated(name, first, second, truth, interpolate, saved))
            bar.update()
            if len(rows) == limit:
                break
    return rows


def _evaluated(name: str, first: Tensor, second: Tensor, truth: Tensor, interpolate,
               saved: Optional[AtomicFolder]) -> Row:
    """One sample's row, its output and comparison written into ``saved`` (see :func:`evaluate`)."""
    start = time.perf_counter()
    ours = interpolate(first, second, [0.5])[0].cpu()
    elapsed = time.perf_counter() - start
    average = 0.5 * (first + second)
    ours_metrics, average_metrics = metrics(ours, truth), metrics(average, truth)
    if saved is not None:
        stem = name.replace("/", "_")
        _save(saved, f"{stem}_ours.png", ours)
        _save(saved, f"{stem}_compare.png", comparison(first, second, ours, average, truth, ours_metrics["IE"]))
    return name, ours_metrics, average_metrics, elapsed


def _save(saved: AtomicFolder, name: str, picture) -> None:
    target = os.path.join(saved.path, name)  # errors name where the file is going, not the temporary folder
    try:
        write_file(saved.file_path(name), encode_image(target, picture))
    except UserError as error:
        raise UserError(str(error).replace(saved.temporary, saved.path)) from None


def _readable(samples, unusable: List[str]) -> Iterable[LoadedSample]:
    """The samples' frames; a sample whose files cannot be read is named in ``unusable``."""
    for sample in samples:
        try:
            loaded = next(read_samples([sample]))
        except UserError as error:
            unusable.append(f"{sample.name}: {error}")
            continue
        yield loaded


def format_table(rows) -> str:
    """The per-sample table with a mean row. SSIM shows n/a where it is NaN (frames smaller than its
    window) and PSNR inf where a frame is reproduced exactly; the mean of each is over the other
    samples (one inf would make it inf), and a footnote says so."""
    width = max([len("sample"), len("mean")] + [len(name) for name, *_ in rows])
    columns = "  ".join(f"{m + ' ours':>10} {m + ' avg':>9}" for m in METRICS)
    header = f"{'sample':<{width}}  {columns}  {'s/frame':>7}"
    lines = [header, "-" * len(header)]

    def cell(value: float, digits: int, columns: int) -> str:
        return f"{'n/a':>{columns}}" if np.isnan(value) else f"{value:>{columns}.{digits}f}"

    def line(name, ours, average, seconds):
        cells = []
        for m in METRICS:
            digits = 4 if m == "SSIM" else 3 if m in ("IE", "RMSE") else 2
            cells.append(f"{cell(ours[m], digits, 10)} {cell(average[m], digits, 9)}")
        return f"{name:<{width}}  " + "  ".join(cells) + f"  {seconds:>7.2f}"

    def mean(index: int, m: str) -> float:
        values = [row[index][m] for row in rows if np.isfinite(row[index][m])]
        if values:
            return float(np.mean(values))
        return float("inf") if any(np.isinf(row[index][m]) for row in rows) else float("nan")

    for row in rows:
        lines.append(line(*row))
    lines.append("-" * len(header))
    lines.append(line("mean", {m: mean(1, m) for m in METRICS}, {m: mean(2, m) for m in METRICS},
                      float(np.mean([row[3] for row in rows]))))
    without_ssim = sum(np.isnan(row[1]["SSIM"]) for row in rows)
    if without_ssim:
        others = "; the mean SSIM is over the others" if without_ssim < len(rows) else ""
        lines.append(f"SSIM n/a: {without_ssim} of {len(rows)} sample(s) have frames smaller than SSIM's "
                     f"{SSIM_WINDOW} x {SSIM_WINDOW} window{others}")
    for index, method in ((1, "ours"), (2, "frame average")):
        exact = sum(np.isinf(row[index]["PSNR"]) for row in rows)
        if exact:
            lines.append(f"PSNR inf: {method} reproduces {exact} of {len(rows)} sample(s) exactly"
                         + ("; its mean PSNR is over the others" if exact < len(rows) else ""))
    return "\n".join(lines)


def _check_save_folder(path: str) -> None:
    """A --save folder that cannot be one fails before any work: below a file, in a folder that
    cannot be written, or not new or empty (it is made when the files are written)."""
    existing = path
    while not os.path.exists(existing):
        parent = os.path.dirname(os.path.abspath(existing))
        if parent == os.path.abspath(existing):
            break
        existing = parent
    if not os.path.isdir(existing):
        raise UserError(f"--save {path}: {existing} exists and is not a folder")
    if not os.access(existing, os.W_OK):
        raise UserError(f"--save {path}: the folder {existing} is not writable")
    check_new_folder("--save", path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Interpolate the middle frame of each test sequence and print IE (mean absolute error, as "
        "MEMC-Net's tables), RMSE (Middlebury's IE), PSNR and SSIM for our method and for frame averaging. "
        "Sequences that cannot be used are named, with a count. memc-eval enhance evaluates denoising, deblocking and "
        "super-resolution instead (see below).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("dataset", choices=("middlebury", "vimeo", "video", "enhance"),
                        help="middlebury: folders with frame10.png, frame11.png, frame10i11.png; vimeo: Vimeo90K "
                        "triplets (im1-3) or septuplets (im1-7); video: a video file, each inner frame held out "
                        "and interpolated from its two neighbours; enhance: a folder of clean frames (one clip) or "
                        "of such folders, degraded (--task) and restored (see below)")
    parser.add_argument("root", metavar="PATH", help="the dataset folder, or the video file")
    parser.add_argument("--save", metavar="OUT",
                        help="a new or empty folder: each interpolated frame and a side-by-side comparison PNG, "
                        "in place at the end, after the table is printed; if files appear in OUT while the run "
                        "goes on, the images are kept in OUT-2 (or the next free OUT-N) instead, and the run ends "
                        "with an error (status 1) saying where")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="evaluate the first N samples that can be used (N >= 1): those skipped on the way (named "
                        "after the table) do not count; a video: its first N held-out frames; enhance: the first N "
                        "clips that can be used")
    add_method_options(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    enhance = parser.add_argument_group(
        "memc-eval enhance", "Each frame of a clip with 3 neighbours on each side (or as many as the clip allows "
        "on both sides: a 3-frame Middlebury sequence gives its middle frame) is degraded reproducibly from --seed "
        "and restored; PSNR and SSIM against the clean frame, and seconds per frame, for ours (the training-free "
        "path, or --checkpoint MEMC-Net_VE weights), the degraded input and the peers (OpenCV non-local means on "
        "one frame and on the window for denoise; bicubic upsampling for sr). --device, --half (with --checkpoint) "
        "and --limit (clips) apply.")
    enhance.add_argument("--task", metavar="denoise|deblock|sr", help="the degradation and restoration")
    enhance.add_argument("--sigma", metavar="S", help="denoise: Gaussian noise on 0..255 (default 20), given to "
                         "every method that takes it")
    enhance.add_argument("--qp", metavar="QP", help="deblock: the H.264 quantiser, 0 to 51 (default 37)")
    enhance.add_argument("--strength", metavar="S", help="deblock: the artefacts' level our restoration treats as "
                         "noise, on 0..255 (default 6)")
    enhance.add_argument("--scale", metavar="2|4", help="sr: bicubic downscaling by 2 or 4 (default 4)")
    enhance.add_argument("--seed", type=int, help="the noise's seed (default 0; window k uses seed + k)")
    enhance.add_argument("--windows", type=positive_int, metavar="N",
                         help="at most N windows a clip, spread evenly (default: every frame with full neighbours)")
    return parser


def _evaluate(argv: Optional[Sequence[str]]) -> int:
    args = _parser().parse_args(argv)
    if args.dataset == "enhance":
        return _evaluate_enhancement(args)
    enhancement_options = (("--task", args.task), ("--sigma", args.sigma), ("--qp", args.qp),
                           ("--strength", args.strength), ("--scale", args.scale), ("--seed", args.seed),
                           ("--windows", args.windows))
    given = [option for option, value in enhancement_options if value is not None]
    if given:
        raise UserError(f"{given[0]} applies to memc-eval enhance; memc-eval {args.dataset} evaluates interpolation")
    unusable: List[str] = []
    if args.dataset == "video":
        samples = video_samples(args.root, args.limit)
        total = samples.total
        candidates = None  # every frame of a video can be used: nothing is named unusable
        if samples.source.reader.looks_cut_short():
            say(args.quiet, f"note: {args.root} stops well before the {samples.source.reader.duration:g} s its header "
                "announces: the file looks cut short; evaluating the frames it holds")
    else:
        found = middlebury_samples(args.root) if args.dataset == "middlebury" else vimeo_samples(args.root)
        unusable.extend(found.unusable)
        samples = _readable(found.samples, unusable)  # read lazily: nothing past the limit is read
        total = len(found.samples) if args.limit is None else min(args.limit, len(found.samples))
        candidates = len(found.samples) + len(found.unusable)
    if args.save:
        _check_save_folder(args.save)
    for note in method_notes(args):
        say(args.quiet, f"note: {note}")
    device = pick_device(args.device)
    # Claimed at once, as -o folders are: a second run into it is refused, never mixing files in.
    saved = AtomicFolder(args.save, "comparisons into it") if args.save else None
    with saved if saved is not None else contextlib.nullcontext():
        interpolate = build_interpolator(device, args.checkpoint, args.model or "memc", args.half, args.fast,
                                         note=lambda text: say(args.quiet, f"note: {text}"))
        rows = evaluate(samples, interpolate, saved, progress=not args.quiet, total=total, unusable=unusable,
                        limit=args.limit)
        if not rows:
            raise UserError(f"{args.root}: no sample could be evaluated: {first_few(unusable, 5, '; ')}")
        method = f"{args.model or 'memc'} ({args.checkpoint})" if args.checkpoint else (
            "training-free fast (DIS + projection + adaptive warping, one orientation)" if args.fast
            else "training-free default (DIS + projection + adaptive warping, 4-orientation ensemble)")
        # The table first: whatever happens to the saved folder, the run's results are shown.
        print(f"ours: {method} on {device}; avg: frame averaging; times include optical flow")
        print(format_table(rows))
        if unusable:
            considered = len(rows) + len(unusable)
            # The limit is named only where it left samples unread (not where exactly N could be used).
            stopped = f" (--limit {args.limit})" if candidates is not None and considered < candidates else ""
            print(f"evaluated {len(rows)} of {considered}{stopped}; {first_few(unusable, 10, '; ')}")
        sys.stdout.flush()
        kept = saved.commit_or_keep_beside() if saved is not None else None
    if kept is not None and kept != saved.path:
        raise UserError(f"--save {args.save}: other files appeared in it during the run, so this run's frames and "
                        f"comparisons were kept in {kept} instead (the table is above)")
    if kept is not None:
        print(f"frames and comparisons written to {args.save}")
    return 0


# ----------------------------------------------------------------------------------------------
# memc-eval enhance


def _qp(text: Optional[str], task: str) -> int:
    if text is None:
        return 37
    if task != "deblock":
        raise UserError(f"--qp applies to --task deblock (the H.264 quantiser); got --task {task}")
    if not text.isdecimal() or not 0 <= int(text) <= 51:
        raise UserError(f"--qp must be a whole number from 0 to 51 (the H.264 quantiser); got {text}")
    return int(text)


def format_enhancement_table(scores) -> str:
    """One row per method (:class:`memc_models.enhancement_eval.Score`): PSNR, SSIM (n/a where the
    frames are smaller than its window) and seconds per frame."""
    width = max([len("method")] + [len(score.method) for score in scores])
    header = f"{'method':<{width}}  {'PSNR dB':>8}  {'SSIM':>6}  {'s/frame':>7}"
    lines = [header, "-" * len(header)]
    for score in scores:
        ssim = "n/a" if np.isnan(score.ssim) else f"{score.ssim:.4f}"
        lines.append(f"{score.method:<{width}}  {score.psnr:>8.2f}  {ssim:>6}  {score.seconds:>7.2f}")
    return "\n".join(lines)


def _windows_of_usable_clips(clips, windows: Optional[int], limit: Optional[int], unusable: List[str],
                             used: List[str]) -> Iterator:
    """The windows of ``clips`` (:func:`memc_models.enhancement_eval.clip_windows`, at most
    ``windows`` a clip) until ``limit`` clips have given one; a clip none of whose windows can be
    read is named in ``unusable`` and does not count. ``used`` receives the name of each clip that
    gave a window."""
    from ..enhancement_eval import clip_windows

    for clip in clips:
        gave = False
        for window in clip_windows([clip], windows, unusable):
            if not gave:
                used.append(clip.name)
                gave = True
            yield window
        if len(used) == limit:
            return


def _evaluate_enhancement(args) -> int:
    from tqdm import tqdm

    from ..enhancement_eval import Method, evaluate_enhancement, folder_clips, reference_methods, window_centres

    task = enhancement_task(args.task)
    if args.seed is None:
        args.seed = 0
    scale, sigma, qp = enhancement_scale(args.scale, task), noise_sigma(args.sigma, task, 20.0), _qp(args.qp, task)
    for option, given in (("--save", args.save), ("--model", args.model), ("--fast", args.fast)):
        if given:
            raise UserError(f"{option} applies to the interpolation datasets, not to memc-eval enhance")
    for note in half_notes(args):
        say(args.quiet, f"note: {note}")
    if os.path.isfile(args.root):
        raise UserError(f"{args.root} is a file; memc-eval enhance takes a folder of frames, or a folder of such "
                        "folders")
    clips, unusable = folder_clips(args.root)
    device = pick_device(args.device)
    restore = build_enhancer(device, task, args.checkpoint, sigma=sigma, scale=scale,
                             strength=artefact_strength(args.strength, task), half=args.half)
    ours = Method("ours" if args.checkpoint is None else "ours (MEMC-Net_VE)", restore)
    methods = reference_methods(task, sigma=sigma or 0.0, qp=qp, scale=scale or 4) + [ours]
    total = sum(len(window_centres(clip.count, args.windows)[1]) for clip in clips[: args.limit])
    evaluated, used = [], []
    with tqdm(total=total, desc="evaluating", unit="window", disable=args.quiet or total == 1, leave=False) as bar:
        windows = _windows_of_usable_clips(clips, args.windows, args.limit, unusable, used)
        scores = evaluate_enhancement(windows, task, methods, seed=args.seed, sigma=sigma or 0.0, qp=qp,
                                      scale=scale or 4, on_window=lambda: (evaluated.append(1), bar.update()))
    if not scores:
        raise UserError(f"{args.root}: no window could be evaluated: {first_few(unusable, 5, '; ')}")
    if task == "denoise":
        degradation = (f"Gaussian noise of sigma {sigma:g} on 0..255 (given to every method that takes it), "
                       f"seed {args.seed}")
    else:
        degradation = f"H.264 (libx264) at QP {qp}" if task == "deblock" else f"bicubic downscaling by {scale}"
    method = f"MEMC-Net_VE ({args.checkpoint})" if args.checkpoint else "the training-free path"
    print(f"{task}: {degradation}; ours: {method} on {device}; {len(evaluated)} window(s) from {len(used)} clip(s)")
    print(format_enhancement_table(scores))
    if unusable:
        print(f"not evaluated: {first_few(unusable, 10, '; ')}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_evaluate, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
