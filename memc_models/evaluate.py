"""``memc-eval``: interpolation quality on Middlebury and Vimeo90K, for our method and frame averaging.

    memc-eval middlebury DIR [--save OUT] [--checkpoint PATH --model memc_star]
    memc-eval vimeo DIR [--limit N]
    memc-eval video FILE [--limit N]     (every frame i+1 from frames i and i+2)

Metrics, on the output rounded to 8 bits and the 8-bit truth, both on 0..255:

* IE, as MEMC-Net's and DAIN's tables compute it: mean |output - truth| over pixels and colour
  channels.
* RMSE, Middlebury's interpolation error (Baker et al., IJCV 2011): the root of the mean over
  pixels of the squared length of the RGB difference vector.
* PSNR: 10 log10(255^2 / MSE), MSE over pixels and channels.
* SSIM (Wang et al. 2004): Gaussian window (sigma 1.5, 11 taps), K1 = 0.01, K2 = 0.03, over the
  windows that lie inside the frame, averaged over channels (scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
  Frames narrower or lower than the 11 x 11 window have no SSIM: the table shows n/a for them
  (a smaller window would give numbers that do not compare with published ones).
"""

import argparse
import collections
import os
import sys
import time
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .io import UserError, VideoReader, read_image, to_uint8, write_image

__all__ = ["Sample", "interpolation_error", "rmse", "psnr", "ssim", "ssim_defined", "metrics", "middlebury_samples", "vimeo_samples",
           "video_samples", "read_samples", "main"]

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


SSIM_WINDOW = 11  # taps of SSIM's Gaussian window, in each direction


def _gaussian_window(sigma: float = 1.5, radius: int = SSIM_WINDOW // 2) -> Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim_defined(frame: Tensor) -> bool:
    """Whether SSIM's 11 x 11 window fits inside a (…, H, W) frame."""
    return min(frame.shape[-2:]) >= SSIM_WINDOW


def ssim(output: Tensor, truth: Tensor) -> float:
    """Mean SSIM over the channels of the 8-bit images (data range 255), valid windows only.

    Raises ValueError for frames smaller than the 11 x 11 window in either direction (as
    scikit-image does): SSIM is not defined for them.
    """
    if not ssim_defined(output):
        raise ValueError(f"ssim: frames of height {output.shape[-2]} and width {output.shape[-1]} are smaller than "
                         f"SSIM's {SSIM_WINDOW} x {SSIM_WINDOW} window")
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
    """IE, RMSE, PSNR and SSIM; SSIM is NaN (shown as n/a) when the frames are smaller than its window."""
    return {"IE": interpolation_error(output, truth), "RMSE": rmse(output, truth), "PSNR": psnr(output, truth),
            "SSIM": ssim(output, truth) if ssim_defined(output) else float("nan")}


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
    sep_testlist.txt, entries under ``root/sequences`` or ``root``) is used when present, else every
    such folder under ``root``. A listed folder that is missing or lacks its frames is an error (as
    for memc-train), not skipped: the table would otherwise cover less than the test set."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such folder")
    folders = None
    for list_name, frame_count in (("tri_testlist.txt", 3), ("sep_testlist.txt", 7)):
        list_path = os.path.join(root, list_name)
        if os.path.isfile(list_path):
            folders = _read_test_list(root, list_path, frame_count)
            break
    if folders is None:
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


#: A test, loaded: (name, frame 0, frame 1, the true frame between them), frames (1, 3, H, W) in [0, 1].
LoadedSample = Tuple[str, Tensor, Tensor, Tensor]


def read_samples(samples: Iterable[Sample]) -> Iterator[LoadedSample]:
    """The samples' frames, read one sample at a time."""
    for sample in samples:
        yield (sample.name, *(read_image(path) for path in (sample.first, sample.second, sample.truth)))


class video_samples:
    """A video with every inner frame held out in turn: frame i + 1 between frames i and i + 2
    (numbered from 0), for every i, up to ``limit`` tests; iterating streams them with three frames
    in memory at a time. Named ``frameNNNNN`` by the held-out frame. The file is opened here, so that
    an unreadable one fails before any work; ``total`` estimates the number of tests."""

    def __init__(self, path: str, limit: Optional[int] = None):
        if os.path.isdir(path):
            raise UserError(f"{path} is a folder; expected a video file")
        self.path, self.limit = path, limit
        self.reader = VideoReader(path, constant_rate=False)  # the stored frames, none repeated
        count = self.reader.frame_count
        if count is not None and count < 3:
            self.reader.close()
            raise UserError(f"{path}: the video has {count} frame(s); holding one out needs at least 3")
        self.total = None if count is None else count - 2 if limit is None else min(count - 2, limit)

    def __iter__(self) -> Iterator[LoadedSample]:
        try:
            window = collections.deque(maxlen=3)
            tests = 0
            for index, pixels in enumerate(self.reader):
                window.append(torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0))
                if len(window) == 3:
                    yield (f"frame{index - 1:05d}", window[0], window[2], window[1])
                    tests += 1
                    if tests == self.limit:
                        return
            if tests == 0:
                raise UserError(f"{self.path}: the video has {len(window)} frame(s); holding one out needs at least 3")
        finally:
            self.reader.close()


def _read_test_list(root: str, list_path: str, frame_count: int) -> List[str]:
    """The folders a Vimeo90K test list names; each must hold im1.png .. im{frame_count}.png."""
    base = os.path.join(root, "sequences") if os.path.isdir(os.path.join(root, "sequences")) else root
    with open(list_path) as handle:
        folders = [os.path.normpath(os.path.join(base, line.strip())) for line in handle if line.strip()]
    if not folders:
        raise UserError(f"{list_path} is empty")
    names = [f"im{k}.png" for k in range(1, frame_count + 1)]
    missing = [folder for folder in folders if not all(os.path.isfile(os.path.join(folder, n)) for n in names)]
    if missing:
        expected = ", ".join(names) if frame_count == 3 else f"{names[0]} .. {names[-1]}"
        raise UserError(f"{list_path} lists {len(missing)} folder(s) without {expected}, e.g. "
                        + ", ".join(missing[:3]))
    return folders


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


def evaluate(samples: Iterable[LoadedSample], interpolate, save: Optional[str] = None, progress: bool = True,
             total: Optional[int] = None) -> List[Tuple[str, Dict[str, float], Dict[str, float], float]]:
    """Per sample: (name, our metrics, frame-average metrics, seconds for our frame). ``total``,
    the number of samples if known, is for the progress bar."""
    from tqdm import tqdm

    rows = []
    for name, first, second, truth in tqdm(samples, desc="evaluating", unit="sample", total=total,
                                           disable=not progress or total == 1, leave=False):
        if not first.shape == second.shape == truth.shape:
            raise UserError(f"{name}: the frames differ in size")
        start = time.perf_counter()
        ours = interpolate(first, second, [0.5])[0].cpu()
        elapsed = time.perf_counter() - start
        average = 0.5 * (first + second)
        ours_metrics, average_metrics = metrics(ours, truth), metrics(average, truth)
        rows.append((name, ours_metrics, average_metrics, elapsed))
        if save:
            stem = os.path.join(save, name.replace("/", "_"))
            write_image(f"{stem}_ours.png", ours)
            write_image(f"{stem}_compare.png", comparison(first, second, ours, average, truth, ours_metrics["IE"]))
    return rows


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of samples, 1 or more; got {text}")
    return value


def _make_save_folder(path: str) -> None:
    """Creates the --save folder before any work, so that a bad path fails at once."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--save {path}: exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UserError(f"--save {path}: cannot create the folder ({error.strerror or error})") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"--save {path}: the folder is not writable")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memc-eval",
        description="Interpolate the middle frame of each test sequence and print IE (mean absolute error, as "
        "MEMC-Net's tables), RMSE (Middlebury's IE), PSNR and SSIM for our method and for frame averaging.",
    )
    parser.add_argument("dataset", choices=("middlebury", "vimeo", "video"),
                        help="middlebury: folders with frame10.png, frame11.png, frame10i11.png; vimeo: Vimeo90K "
                        "triplets (im1-3) or septuplets (im1-7); video: a video file, each inner frame held out "
                        "and interpolated from its two neighbours")
    parser.add_argument("root", metavar="PATH", help="the dataset folder, or the video file")
    parser.add_argument("--save", metavar="OUT", help="write each interpolated frame and a side-by-side comparison PNG here")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="evaluate only the first N samples (N >= 1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: auto)")
    parser.add_argument("--half", action="store_true", help="float16 autocast for the MEMC-Net model on CUDA")
    parser.add_argument("--checkpoint", metavar="PATH", help="a MEMC-Net checkpoint (default: the training-free path)")
    parser.add_argument("--model", choices=("memc", "memc_s", "memc_star"), default="memc",
                        help="the checkpoint's variant (default: memc)")
    parser.add_argument("--fast", action="store_true",
                        help="training-free path: one orientation, no self-ensemble (4x faster, ~2%% higher error)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .interpolate import build_interpolator, pick_device

    args = _parser().parse_args(argv)
    try:
        if args.dataset == "video":
            samples = video_samples(args.root, args.limit)
            total = samples.total
            if samples.reader.looks_cut_short() and not args.quiet:
                print(f"note: {args.root} stops well before the {samples.reader.duration:g} s its header announces: "
                      "the file looks cut short; evaluating the frames it holds", file=sys.stderr)
        else:
            listed = middlebury_samples(args.root) if args.dataset == "middlebury" else vimeo_samples(args.root)
            listed = listed[: args.limit]
            samples, total = read_samples(listed), len(listed)
        if args.save:
            _make_save_folder(args.save)
        if args.half and args.checkpoint is None and not args.quiet:
            print("note: --half applies to MEMC-Net models; the default path runs in float32", file=sys.stderr)
        device = pick_device(args.device)
        interpolate = build_interpolator(device, args.checkpoint, args.model, args.half, args.fast)
        rows = evaluate(samples, interpolate, args.save, progress=not args.quiet, total=total)
    except UserError as error:
        print(f"memc-eval: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("memc-eval: interrupted", file=sys.stderr)
        return 130
    method = f"{args.model} ({args.checkpoint})" if args.checkpoint else (
        "training-free default (DIS + projection + adaptive warping" + (", one orientation)" if args.fast else ", 4-orientation ensemble)"))
    print(f"ours: {method} on {device}; avg: frame averaging; times include optical flow")
    print(format_table(rows))
    if args.save:
        print(f"frames and comparisons written to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
