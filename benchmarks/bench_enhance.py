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
  (back-projection, ``temporal=False``) and ours (multi-frame back-projection).
* deblock (H.264 at ``--qp``, the window encoded as one clip): the decoded input; ours on one
  frame and ours.

Time is wall time per restored frame, in this process, one method after the other on the same
frames (the noise level is given to every denoiser, as OpenCV needs it), with freed memory kept
for reuse as memc-enhance keeps it (unless --hand-back-freed-memory; the first line says which).
"""

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from memc_models import enhancement  # noqa: E402
from memc_models.enhancement_eval import (Method, clip_windows, evaluate_enhancement, folder_clips,  # noqa: E402
                                          frames_clip, reference_methods)


def middlebury_windows(root):
    """[Window] for each sequence folder under ``root``: its middle frame from the other two."""
    clips, unusable = folder_clips(root)
    for problem in unusable:
        print(f"# skipped {problem}")
    return list(clip_windows(clips))


def video_windows(path, count):
    """``count`` 7-frame windows of the video, their centres spread evenly (first and last
    windows inside the clip)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    width, height = meta["size"]
    frames = [torch.from_numpy(np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()).permute(2, 0, 1).float() / 255.0
              for raw in reader]
    if len(frames) < 7:
        raise SystemExit(f"{path}: {len(frames)} frames, fewer than one 7-frame window")
    return list(clip_windows([frames_clip(os.path.splitext(os.path.basename(path))[0], frames)], count))


def methods_for(task, args, scale=None):
    """[Method]: the input and the peers (memc_models.enhancement_eval.reference_methods), then ours
    and its variants, for ``task``."""
    references = reference_methods(task, sigma=args.sigma, qp=args.qp, scale=scale or 4, nlm_h=args.nlm_h)
    if task == "denoise":
        sigma = args.sigma
        return references + [
            Method("ours, 1 frame", lambda frames, c: enhancement.denoise(frames, c, sigma, temporal=False)),
            Method("ours", lambda frames, c: enhancement.denoise(frames, c, sigma)),
            Method("ours, sigma estimated", lambda frames, c: enhancement.denoise(frames, c)),
        ]
    if task == "sr":
        return references + [
            Method("ours, 1 frame", lambda frames, c: enhancement.super_resolve(frames, c, scale, temporal=False)),
            Method("ours (multi-frame)", lambda frames, c: enhancement.super_resolve(frames, c, scale)),
        ]
    return references + [
        Method("ours, 1 frame", lambda frames, c: enhancement.deblock(frames, c, temporal=False)),
        Method("ours", lambda frames, c: enhancement.deblock(frames, c)),
    ]


def run(windows, task, args, scale=None):
    """Rows (method, PSNR, SSIM, seconds per frame) averaged over the windows."""
    scores = evaluate_enhancement(windows, task, methods_for(task, args, scale), seed=args.seed, sigma=args.sigma,
                                  qp=args.qp, scale=scale or 4)
    return [tuple(score) for score in scores]


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
    parser.add_argument("--nlm-h", type=float, default=None,
                        help="OpenCV NLM filter strength h = hColor (default 0.6 sigma: 12 at sigma 20)")
    parser.add_argument("--qp", type=int, default=37, help="H.264 quantiser (default 37, as the authors' deblocking data)")
    parser.add_argument("--scales", type=int, nargs="+", choices=enhancement.SCALES, default=[2, 4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    common.add_heap_option(parser)
    args = parser.parse_args(argv)
    if not args.middlebury and not args.video:
        parser.error("give --middlebury DIR and/or --video FILE")
    if args.threads:
        torch.set_num_threads(args.threads)

    import cv2

    heap = common.set_heap(args)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), OpenCV {cv2.__version__} "
          f"({cv2.getNumThreads()} threads), heap {heap}, {time.strftime('%Y-%m-%d %H:%M')}")
    datasets = []
    if args.middlebury:
        datasets.append(("Middlebury", middlebury_windows(args.middlebury)))
    if args.video:
        datasets.append((os.path.basename(args.video), video_windows(args.video, args.windows)))
    for dataset, windows in datasets:
        size = "x".join(str(n) for n in windows[0].frames.shape[:1:-1])
        about = f"{len(windows)} windows of {windows[0].frames.shape[0]} frames, {size} (first)"
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
