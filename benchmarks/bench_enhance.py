"""Training-free video enhancement against its peers: quality (PSNR, SSIM) and time per frame.

    python benchmarks/bench_enhance.py --middlebury /work/shared/data/middlebury \\
        --video /work/shared/data/video/car-turn.mp4
    python benchmarks/bench_enhance.py --video clip.mp4 --tasks denoise --windows 4

Data: a folder of Middlebury sequences (``SEQ/frame10.png, frame10i11.png, frame11.png``: the
middle frame restored from the other two) and/or a video, cut into 7-frame windows whose centres
are spread evenly over the clip. The clean frames are degraded reproducibly from ``--seed``
(:func:`memc_models.enhancement.degrade`); every method restores the centre frame of each window,
and is scored on 8-bit levels against the clean centre.

* denoise (Gaussian noise of ``--sigma`` on 0..255): the noisy input; OpenCV's
  ``fastNlMeansDenoisingColored`` (single frame) and ``fastNlMeansDenoisingColoredMulti`` (the
  whole window, temporalWindowSize = window length), with h = hColor = ``--nlm-h``, 7x7
  templates, 21x21 search; ours with ``temporal=False`` (the same spatial stage, one frame) and
  ours.
* sr (bicubic downscaling by each of ``--scales``): bicubic upsampling; ours on one frame
  (back-projection) and ours.
* deblock (H.264 at ``--qp``, the window encoded as one clip): the decoded input; ours on one
  frame and ours.

Time is wall time per restored frame, in this process, one method after the other on the same
frames (the noise level is given to every denoiser, as OpenCV needs it).
"""

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from memc_models import enhancement  # noqa: E402
from memc_models.images import read_image  # noqa: E402

MIDDLEBURY_FRAMES = ("frame10.png", "frame10i11.png", "frame11.png")
WINDOW = 7


def middlebury_windows(root):
    """[(name, (3, 3, H, W) clean frames, centre 1)] for each sequence folder holding the three frames."""
    windows = []
    for name in sorted(os.listdir(root)):
        paths = [os.path.join(root, name, frame) for frame in MIDDLEBURY_FRAMES]
        if all(os.path.isfile(path) for path in paths):
            windows.append((name, torch.stack([read_image(path)[0] for path in paths]), 1))
    if not windows:
        raise SystemExit(f"{root}: no sequence folder holds {', '.join(MIDDLEBURY_FRAMES)}")
    return windows


def video_windows(path, count):
    """``count`` 7-frame windows of the video, their centres spread evenly (first and last
    windows inside the clip)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    width, height = meta["size"]
    frames = [torch.from_numpy(np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()) for raw in reader]
    if len(frames) < WINDOW:
        raise SystemExit(f"{path}: {len(frames)} frames, fewer than one {WINDOW}-frame window")
    first, last = WINDOW // 2, len(frames) - 1 - WINDOW // 2
    centres = np.unique(np.linspace(first, last, count).round().astype(int))
    name = os.path.splitext(os.path.basename(path))[0]
    clip = lambda c: torch.stack(frames[c - WINDOW // 2 : c + WINDOW // 2 + 1]).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    return [(f"{name}@{c}", clip(c), WINDOW // 2) for c in centres]


def _bgr8(frame):
    import cv2

    return cv2.cvtColor((frame.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8), cv2.COLOR_RGB2BGR)


def _rgb(image):
    import cv2

    return torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255.0


def nlm_single(frames, centre, h):
    import cv2

    return _rgb(cv2.fastNlMeansDenoisingColored(_bgr8(frames[centre]), None, h, h, 7, 21))


def nlm_multi(frames, centre, h):
    import cv2

    # OpenCV wants an odd temporal window centred on the frame: the widest one that fits.
    span = min(centre, len(frames) - 1 - centre)
    images = [_bgr8(frame) for frame in frames]
    return _rgb(cv2.fastNlMeansDenoisingColoredMulti(images, centre, 2 * span + 1, None, h, h, 7, 21))


def methods_for(task, args, scale=None):
    """[(method name, restore(degraded window, centre) -> (3, H, W))] for ``task``."""
    if task == "denoise":
        sigma = args.sigma
        return [
            ("noisy input", lambda frames, c: frames[c]),
            (f"OpenCV NLM, 1 frame (h={args.nlm_h:g})", lambda frames, c: nlm_single(frames, c, args.nlm_h)),
            (f"OpenCV NLM multi-frame (h={args.nlm_h:g})", lambda frames, c: nlm_multi(frames, c, args.nlm_h)),
            ("ours, 1 frame", lambda frames, c: enhancement.denoise(frames, c, sigma, temporal=False)),
            ("ours", lambda frames, c: enhancement.denoise(frames, c, sigma)),
            ("ours, sigma estimated", lambda frames, c: enhancement.denoise(frames, c)),
        ]
    if task == "sr":
        return [
            ("bicubic", lambda frames, c: enhancement.bicubic_upsample(frames[c], scale)),
            ("ours (1 frame: the default)", lambda frames, c: enhancement.super_resolve(frames, c, scale)),
            ("ours, multi-frame fusion", lambda frames, c: enhancement.super_resolve(frames, c, scale, temporal=True)),
        ]
    return [
        (f"H.264 QP {args.qp} input", lambda frames, c: frames[c]),
        ("ours, 1 frame", lambda frames, c: enhancement.deblock(frames, c, temporal=False)),
        ("ours", lambda frames, c: enhancement.deblock(frames, c)),
    ]


def run(windows, task, args, scale=None):
    """Rows (method, PSNR, SSIM, seconds per frame) averaged over the windows."""
    methods = methods_for(task, args, scale)
    totals = {name: [0.0, 0.0, 0.0] for name, _ in methods}
    for index, (_, clean, centre) in enumerate(windows):
        degraded = enhancement.degrade(clean, task, seed=args.seed + index, sigma=args.sigma, qp=args.qp, scale=scale or 4)
        truth = clean[centre]
        if task == "sr":  # the low-resolution grid covers the frame cropped to a multiple of the scale
            truth = truth[:, : degraded.shape[2] * scale, : degraded.shape[3] * scale]
        for name, restore in methods:
            start = time.perf_counter()
            output = restore(degraded, centre)
            seconds = time.perf_counter() - start
            scores = enhancement.quality(output.clamp(0, 1), truth)
            totals[name][0] += scores["PSNR"]
            totals[name][1] += scores["SSIM"]
            totals[name][2] += seconds
    count = len(windows)
    return [(name, psnr / count, ssim / count, seconds / count) for name, (psnr, ssim, seconds) in totals.items()]


def table(title, rows):
    width = max(len(row[0]) for row in rows)
    lines = [title, f"| {'method':<{width}} | PSNR dB | SSIM   | s/frame |", f"|{'-' * (width + 2)}|--------:|-------:|--------:|"]
    for name, psnr, ssim, seconds in rows:
        lines.append(f"| {name:<{width}} | {psnr:7.2f} | {ssim:.4f} | {seconds:7.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--middlebury", help="folder of Middlebury sequences (three frames each)")
    parser.add_argument("--video", help="a video, evaluated on 7-frame windows")
    parser.add_argument("--windows", type=int, default=6, help="how many windows of the video (default 6)")
    parser.add_argument("--tasks", nargs="+", choices=enhancement.TASKS, default=list(enhancement.TASKS))
    parser.add_argument("--sigma", type=float, default=20.0, help="Gaussian noise on 0..255 (default 20)")
    parser.add_argument("--nlm-h", type=float, default=12.0, help="OpenCV NLM filter strength h = hColor (default 12)")
    parser.add_argument("--qp", type=int, default=37, help="H.264 quantiser (default 37, as the authors' deblocking data)")
    parser.add_argument("--scales", type=int, nargs="+", choices=enhancement.SCALES, default=[2, 4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if not args.middlebury and not args.video:
        parser.error("give --middlebury DIR and/or --video FILE")
    if args.threads:
        torch.set_num_threads(args.threads)

    import cv2

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), OpenCV {cv2.__version__} "
          f"({cv2.getNumThreads()} threads), {time.strftime('%Y-%m-%d %H:%M')}")
    datasets = []
    if args.middlebury:
        datasets.append(("Middlebury", middlebury_windows(args.middlebury)))
    if args.video:
        datasets.append((os.path.basename(args.video), video_windows(args.video, args.windows)))
    for dataset, windows in datasets:
        size = "x".join(str(n) for n in windows[0][1].shape[:1:-1])
        about = f"{len(windows)} windows of {windows[0][1].shape[0]} frames, {size} (first)"
        for task in args.tasks:
            if task == "denoise":
                print(table(f"\n## {dataset}: denoising, sigma {args.sigma:g} ({about})", run(windows, task, args)), flush=True)
            elif task == "deblock":
                print(table(f"\n## {dataset}: deblocking, H.264 QP {args.qp} ({about})", run(windows, task, args)), flush=True)
            else:
                for scale in args.scales:
                    print(table(f"\n## {dataset}: super-resolution x{scale} ({about})", run(windows, task, args, scale)), flush=True)


if __name__ == "__main__":
    main()
