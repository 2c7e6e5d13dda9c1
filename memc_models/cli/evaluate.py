"""``memc-eval``: interpolation quality on Middlebury, Vimeo90K and videos, for our method and
frame averaging.

    memc-eval middlebury DIR [--save OUT] [--checkpoint PATH --model memc_star]
    memc-eval vimeo DIR [--limit N]
    memc-eval video FILE [--limit N]     (every frame i+1 from frames i and i+2)

The metrics (IE, RMSE, PSNR, SSIM) are :mod:`memc_models.metrics`'. Every sequence or sample that
cannot be used is named, with a count ("evaluated 7 of 8; Beta: no frame10i11.png"); a run where
none can is an error. ``--save`` images are written together at the end, atomically.
"""

import argparse
import os
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..atomic import AtomicFiles
from ..datasets import LoadedSample, middlebury_samples, read_samples, video_samples, vimeo_samples
from ..errors import UserError
from ..frames import to_uint8
from ..images import encode_image
from ..inference import build_interpolator, pick_device
from ..metrics import METRICS, SSIM_WINDOW, error_levels, metrics
from .common import add_method_options, method_notes, positive_int, run, say

__all__ = ["comparison", "evaluate", "format_table", "main"]

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
        cv2.putText(pixels, label, (8, int(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, colour, thickness, cv2.LINE_AA)
    return pixels


def comparison(first: Tensor, second: Tensor, ours: Tensor, average: Tensor, truth: Tensor, ie: float) -> np.ndarray:
    """Side by side, two rows: frame 0, frame 1, frame average / ours, truth, error map of ours."""
    top = [_labelled(to_uint8(first), "frame 0"), _labelled(to_uint8(second), "frame 1"),
           _labelled(to_uint8(average), "frame average")]
    bottom = [_labelled(to_uint8(ours), f"ours (IE {ie:.2f})"), _labelled(to_uint8(truth), "truth"),
              _labelled(_error_map(ours, truth), "|ours - truth| x4")]
    return np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)


def evaluate(samples: Iterable[LoadedSample], interpolate, saved: Optional[AtomicFiles] = None,
             save_folder: Optional[str] = None, progress: bool = True, total: Optional[int] = None,
             unusable: Optional[List[str]] = None) -> List[Row]:
    """Per sample: (name, our metrics, frame-average metrics, seconds for our frame). A sample
    whose frames differ in size is not evaluated: it is added to ``unusable`` (a list of
    ``NAME: why``). With ``saved`` and ``save_folder``, each output and a comparison are encoded
    into ``saved`` (written when the caller commits it). ``total``, the number of samples if known,
    is for the progress bar."""
    from tqdm import tqdm

    rows = []
    for name, first, second, truth in tqdm(samples, desc="evaluating", unit="sample", total=total,
                                           disable=not progress or total == 1, leave=False):
        if not first.shape == second.shape == truth.shape:
            if unusable is None:
                raise UserError(f"{name}: the frames differ in size")
            unusable.append(f"{name}: the frames differ in size")
            continue
        start = time.perf_counter()
        ours = interpolate(first, second, [0.5])[0].cpu()
        elapsed = time.perf_counter() - start
        average = 0.5 * (first + second)
        ours_metrics, average_metrics = metrics(ours, truth), metrics(average, truth)
        rows.append((name, ours_metrics, average_metrics, elapsed))
        if saved is not None:
            stem = os.path.join(save_folder, name.replace("/", "_"))
            saved.write(f"{stem}_ours.png", encode_image(f"{stem}_ours.png", ours))
            picture = comparison(first, second, ours, average, truth, ours_metrics["IE"])
            saved.write(f"{stem}_compare.png", encode_image(f"{stem}_compare.png", picture))
    return rows


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
    header = f"{'sample':<{width}}  " + "  ".join(f"{m + ' ours':>10} {m + ' avg':>9}" for m in METRICS) + f"  {'s/frame':>7}"
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
        lines.append(f"SSIM n/a: {without_ssim} of {len(rows)} sample(s) have frames smaller than SSIM's "
                     f"{SSIM_WINDOW} x {SSIM_WINDOW} window" + ("; the mean SSIM is over the others" if without_ssim < len(rows) else ""))
    for index, method in ((1, "ours"), (2, "frame average")):
        exact = sum(np.isinf(row[index]["PSNR"]) for row in rows)
        if exact:
            lines.append(f"PSNR inf: {method} reproduces {exact} of {len(rows)} sample(s) exactly"
                         + ("; its mean PSNR is over the others" if exact < len(rows) else ""))
    return "\n".join(lines)


def _check_save_folder(path: str) -> None:
    """A --save folder that cannot be one fails before any work (it is made when the files are written)."""
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Interpolate the middle frame of each test sequence and print IE (mean absolute error, as "
        "MEMC-Net's tables), RMSE (Middlebury's IE), PSNR and SSIM for our method and for frame averaging. "
        "Sequences that cannot be used are named, with a count.",
    )
    parser.add_argument("dataset", choices=("middlebury", "vimeo", "video"),
                        help="middlebury: folders with frame10.png, frame11.png, frame10i11.png; vimeo: Vimeo90K "
                        "triplets (im1-3) or septuplets (im1-7); video: a video file, each inner frame held out "
                        "and interpolated from its two neighbours")
    parser.add_argument("root", metavar="PATH", help="the dataset folder, or the video file")
    parser.add_argument("--save", metavar="OUT",
                        help="write each interpolated frame and a side-by-side comparison PNG here (at the end)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="evaluate only the first N samples (N >= 1)")
    add_method_options(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    return parser


def _evaluate(argv: Optional[Sequence[str]]) -> int:
    args = _parser().parse_args(argv)
    unusable: List[str] = []
    if args.dataset == "video":
        samples = video_samples(args.root, args.limit)
        total = samples.total
        if samples.source.reader.looks_cut_short():
            say(args.quiet, f"note: {args.root} stops well before the {samples.source.reader.duration:g} s its header "
                "announces: the file looks cut short; evaluating the frames it holds")
    else:
        found = middlebury_samples(args.root) if args.dataset == "middlebury" else vimeo_samples(args.root)
        listed = found.samples[: args.limit]
        unusable.extend(found.unusable)
        samples, total = _readable(listed, unusable), len(listed)
    if args.save:
        _check_save_folder(args.save)
    for note in method_notes(args):
        say(args.quiet, f"note: {note}")
    device = pick_device(args.device)
    interpolate = build_interpolator(device, args.checkpoint, args.model or "memc", args.half, args.fast)
    with AtomicFiles() as saved:
        rows = evaluate(samples, interpolate, saved if args.save else None, args.save, progress=not args.quiet,
                        total=total, unusable=unusable)
        if not rows:
            raise UserError(f"{args.root}: no sample could be evaluated: " + "; ".join(unusable[:5])
                            + (f" and {len(unusable) - 5} more" if len(unusable) > 5 else ""))
    method = f"{args.model or 'memc'} ({args.checkpoint})" if args.checkpoint else (
        "training-free default (DIS + projection + adaptive warping"
        + (", one orientation)" if args.fast else ", 4-orientation ensemble)"))
    print(f"ours: {method} on {device}; avg: frame averaging; times include optical flow")
    print(format_table(rows))
    if unusable:
        shown = "; ".join(unusable[:10]) + (f"; and {len(unusable) - 10} more" if len(unusable) > 10 else "")
        print(f"evaluated {len(rows)} of {len(rows) + len(unusable)}; {shown}")
    if args.save:
        print(f"frames and comparisons written to {args.save}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_evaluate, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
