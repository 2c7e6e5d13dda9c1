"""Quality of the training-free path at HD on the only proxy available: upscaled real frames.

    python benchmarks/hd_proxy.py --middlebury ../shared/data/middlebury --video ../shared/data/video/car-turn.mp4

No real HD set with ground truth is at hand, so real frames are upscaled (bicubic, rounded to 8
bits as a decoder would give them) and interpolated at that size: the four Middlebury sequences
by 2.25 (640x480 to 1440x1080) and every 8th triplet of the car-turn video by 3 (640x360 to
1920x1080; frame i + 1 held out between frames i and i + 2). Upscaled frames hold no more detail
than the originals, so this proxy cannot show what a capped working resolution misses on true HD
detail. Prints the mean interpolation error (IE, as memc-eval computes it) per set and method;
the numbers do not depend on the machine's load.
"""

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from memc_models.classical import ClassicalConfig, ClassicalInterpolator  # noqa: E402
from memc_models.datasets import middlebury_samples, read_samples, video_samples  # noqa: E402
from memc_models.metrics import interpolation_error  # noqa: E402

METHODS = {"free": 4, "free-fast": 1}


def upscaled(frame: torch.Tensor, size) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] resized bicubically to ``size`` and rounded to 8-bit levels."""
    return (F.interpolate(frame, size=size, mode="bicubic", align_corners=False).clamp(0, 1) * 255).round() / 255


def proxy_sets(middlebury, video, every):
    """(set name, [(frame0, frame1, truth)] upscaled) for each set given."""
    sets = []
    if middlebury:
        triplets = [tuple(upscaled(frame, (1080, 1440)) for frame in sample[1:])
                    for sample in read_samples(middlebury_samples(middlebury).samples)]
        sets.append(("Middlebury x2.25 (1440x1080)", triplets))
    if video:
        triplets = [tuple(upscaled(frame, (1080, 1920)) for frame in sample[1:])
                    for k, sample in enumerate(video_samples(video)) if k % every == 0]
        sets.append((f"car-turn x3 (1920x1080, {len(triplets)} triplets)", triplets))
    return sets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--middlebury", metavar="ROOT", help="folder of Middlebury sequences (frame10, frame11, frame10i11)")
    parser.add_argument("--video", metavar="PATH", help="a video to hold frames out of (car-turn)")
    parser.add_argument("--every", type=int, default=8, metavar="N", help="video: every Nth triplet (default 8)")
    parser.add_argument("--method", choices=list(METHODS), action="append", help="method(s) (default: both)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    if not (args.middlebury or args.video):
        parser.error("give --middlebury and/or --video")
    torch.set_num_threads(args.threads)
    sets = proxy_sets(args.middlebury, args.video, args.every)
    print("| upscaled proxy | method | mean IE | seconds |")
    print("|---|---|---|---|")
    for method in args.method or list(METHODS):
        path = ClassicalInterpolator(ClassicalConfig(orientations=METHODS[method]))
        for name, triplets in sets:
            start = time.perf_counter()
            errors = [interpolation_error(path(frame0, frame1, 0.5), truth) for frame0, frame1, truth in triplets]
            print(f"| {name} | {method} | {sum(errors) / len(errors):.3f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
