"""``memc-eval``: interpolation quality on Middlebury and Vimeo90K, for our method and frame averaging.

    memc-eval middlebury DIR [--save OUT] [--checkpoint PATH --model memc_star]
    memc-eval vimeo DIR [--limit N]

Metrics, on the output rounded to 8 bits and the 8-bit truth, both on 0..255:

* IE, as MEMC-Net's and DAIN's tables compute it: mean |output - truth| over pixels and colour
  channels.
* RMSE, Middlebury's interpolation error (Baker et al., IJCV 2011): the root of the mean over
  pixels of the squared length of the RGB difference vector.
* PSNR: 10 log10(255^2 / MSE), MSE over pixels and channels.
* SSIM (Wang et al. 2004): Gaussian window (sigma 1.5, 11 taps), K1 = 0.01, K2 = 0.03, over the
  windows that lie inside the frame, averaged over channels (scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
"""

import argparse
import os
import sys
import time
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .io import UserError, read_image, to_uint8, write_image

__all__ = ["Sample", "interpolation_error", "rmse", "psnr", "ssim", "metrics", "middlebury_samples", "vimeo_samples", "main"]

METRICS = ("IE", "RMSE", "PSNR", "SSIM")


def _levels(frame: Tensor) -> Tensor:
    """(…, 3, H, W) in [0, 1] -> float64 8-bit levels 0..255 (rounded)."""
    return (frame.detach().double().clamp(0, 1) * 255.0).round()


def interpolation_error(output: Tensor, truth: Tensor) -> float:
    """Mean absolute difference of the 8-bit images over pixels and channels (MEMC-Net's IE)."""
    return float((_levels(output) - _levels(truth)).abs().mean())


def rmse(output: Tensor, truth: Tensor) -> float:
    """Middlebury's IE: sqrt(mean over pixels of |RGB difference|^2), on 0..255."""
    return float((_levels(output) - _levels(truth)).square().sum(-3).mean().sqrt())


def psnr(output: Tensor, truth: Tensor) -> float:
    mse = float((_levels(output) - _levels(truth)).square().mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(output: Tensor, truth: Tensor) -> float:
    """Mean SSIM over the channels of the 8-bit images (data range 255), valid windows only."""
    x, y = _levels(output), _levels(truth)
    if x.dim() == 3:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    channels = x.shape[1]
    g = _gaussian_window().to(x.device)
    taps = g.numel()

    def blur(image: Tensor) -> Tensor:  # separable, 'valid' windows
        image = F.conv2d(image, g.view(1, 1, 1, taps).expand(channels, 1, 1, taps), groups=channels)
        return F.conv2d(image, g.view(1, 1, taps, 1).expand(channels, 1, taps, 1), groups=channels)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def metrics(output: Tensor, truth: Tensor) -> Dict[str, float]:
    return {"IE": interpolation_error(output, truth), "RMSE": rmse(output, truth), "PSNR": psnr(output, truth),
            "SSIM": ssim(output, truth)}


class Sample(NamedTuple):
    """One test: the frame at time 0.5 between ``first`` and ``second`` should be ``truth``."""

    name: str
    first: str
    second: str
    truth: str


def middlebury_samples(root: str) -> List[Sample]:
    """Every folder under ``root`` (or ``root`` itself) holding frame10.png, frame11.png and the
    truth frame10i11.png, in name order."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such folder")
    folders = [root] + [os.path.join(root, name) for name in sorted(os.listdir(root))]
    samples = []
    for folder in folders:
        paths = [os.path.join(folder, name) for name in ("frame10.png", "frame11.png", "frame10i11.png")]
        if all(os.path.isfile(p) for p in paths):
            samples.append(Sample(os.path.basename(os.path.normpath(folder)), *paths))
    if not samples:
        raise UserError(f"{root}: no sequence with frame10.png, frame11.png and frame10i11.png (Middlebury's layout)")
    return samples


def vimeo_samples(root: str) -> List[Sample]:
    """Vimeo90K: folders with im1..im3.png (triplets: im2 from im1, im3) or im1..im7.png
    (septuplets: im2, im4, im6 from their neighbours). The test list (tri_testlist.txt or
    sep_testlist.txt) is used when present, else every such folder under ``root``."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such folder")
    folders = []
    for list_name in ("tri_testlist.txt", "sep_testlist.txt"):
        list_path = os.path.join(root, list_name)
        if os.path.isfile(list_path):
            base = os.path.join(root, "sequences") if os.path.isdir(os.path.join(root, "sequences")) else root
            with open(list_path) as handle:
                folders = [os.path.join(base, line.strip()) for line in handle if line.strip()]
            break
    if not folders:
        folders = sorted(dirpath for dirpath, _, files in os.walk(root) if "im1.png" in files)
    samples = []
    for folder in folders:
        name = os.path.relpath(folder, root)
        frames = [os.path.join(folder, f"im{k}.png") for k in range(1, 8)]
        if all(os.path.isfile(p) for p in frames):
            for k in (0, 2, 4):
                samples.append(Sample(f"{name}/im{k + 2}", frames[k], frames[k + 2], frames[k + 1]))
        elif all(os.path.isfile(p) for p in frames[:3]):
            samples.append(Sample(name, frames[0], frames[2], frames[1]))
    if not samples:
        raise UserError(f"{root}: no Vimeo90K sequence (folders with im1.png, im2.png, im3.png)")
    return samples


def _error_map(output: Tensor, truth: Tensor) -> np.ndarray:
    """|output - truth| averaged over channels, x4, as a heat map (black: exact)."""
    import cv2

    error = (_levels(output) - _levels(truth)).abs().mean(-3).squeeze()
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


def evaluate(samples: Sequence[Sample], interpolate, save: Optional[str] = None, progress: bool = True) -> List[Tuple[str, Dict[str, float], Dict[str, float], float]]:
    """Per sample: (name, our metrics, frame-average metrics, seconds for our frame)."""
    from tqdm import tqdm

    rows = []
    for sample in tqdm(samples, desc="evaluating", unit="seq", disable=not progress or len(samples) < 2, leave=False):
        first, second, truth = (read_image(p) for p in (sample.first, sample.second, sample.truth))
        if not first.shape == second.shape == truth.shape:
            raise UserError(f"{sample.name}: the frames differ in size")
        start = time.perf_counter()
        ours = interpolate(first, second, [0.5])[0].cpu()
        elapsed = time.perf_counter() - start
        average = 0.5 * (first + second)
        ours_metrics, average_metrics = metrics(ours, truth), metrics(average, truth)
        rows.append((sample.name, ours_metrics, average_metrics, elapsed))
        if save:
            stem = os.path.join(save, sample.name.replace("/", "_"))
            write_image(f"{stem}_ours.png", ours)
            write_image(f"{stem}_compare.png", comparison(first, second, ours, average, truth, ours_metrics["IE"]))
    return rows


def format_table(rows) -> str:
    width = max([len("sequence"), len("mean")] + [len(name) for name, *_ in rows])
    header = f"{'sequence':<{width}}  " + "  ".join(f"{m + ' ours':>10} {m + ' avg':>9}" for m in METRICS) + f"  {'s/frame':>7}"
    lines = [header, "-" * len(header)]

    def line(name, ours, average, seconds):
        cells = []
        for m in METRICS:
            digits = 4 if m == "SSIM" else 3 if m in ("IE", "RMSE") else 2
            cells.append(f"{ours[m]:>10.{digits}f} {average[m]:>9.{digits}f}")
        return f"{name:<{width}}  " + "  ".join(cells) + f"  {seconds:>7.2f}"

    for row in rows:
        lines.append(line(*row))
    lines.append("-" * len(header))
    mean = lambda index, m: float(np.mean([row[index][m] for row in rows]))  # noqa: E731
    lines.append(line("mean", {m: mean(1, m) for m in METRICS}, {m: mean(2, m) for m in METRICS},
                      float(np.mean([row[3] for row in rows]))))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memc-eval",
        description="Interpolate the middle frame of each test sequence and print IE (mean absolute error, as "
        "MEMC-Net's tables), RMSE (Middlebury's IE), PSNR and SSIM for our method and for frame averaging.",
    )
    parser.add_argument("dataset", choices=("middlebury", "vimeo"),
                        help="middlebury: folders with frame10.png, frame11.png, frame10i11.png; vimeo: Vimeo90K "
                        "triplets (im1-3) or septuplets (im1-7)")
    parser.add_argument("root", metavar="DIR", help="the dataset folder")
    parser.add_argument("--save", metavar="OUT", help="write each interpolated frame and a side-by-side comparison PNG here")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N samples")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: auto)")
    parser.add_argument("--half", action="store_true", help="float16 autocast for the MEMC-Net model on CUDA")
    parser.add_argument("--checkpoint", metavar="PATH", help="a MEMC-Net checkpoint (default: the training-free path)")
    parser.add_argument("--model", choices=("memc", "memc_s", "memc_star"), default="memc",
                        help="the checkpoint's variant (default: memc)")
    parser.add_argument("--fast", action="store_true",
                        help="training-free path: one orientation, no self-ensemble (4x faster, ~2%% higher error)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .interpolate import build_interpolator, pick_device

    args = _parser().parse_args(argv)
    try:
        samples = middlebury_samples(args.root) if args.dataset == "middlebury" else vimeo_samples(args.root)
        if args.limit is not None:
            samples = samples[: max(args.limit, 0)]
        device = pick_device(args.device)
        interpolate = build_interpolator(device, args.checkpoint, args.model, args.half, args.fast)
        rows = evaluate(samples, interpolate, args.save, progress=not args.quiet)
    except UserError as error:
        print(f"memc-eval: error: {error}", file=sys.stderr)
        return 1
    method = f"{args.model} ({args.checkpoint})" if args.checkpoint else (
        "training-free default (DIS + projection + adaptive warping" + (", one orientation)" if args.fast else ", 4-orientation ensemble)"))
    print(f"ours: {method} on {device}; avg: frame averaging; times include optical flow")
    print(format_table(rows))
    if args.save:
        print(f"frames and comparisons written to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
