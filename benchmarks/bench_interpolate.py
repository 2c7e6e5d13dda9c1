"""Times whole-frame interpolation: the training-free path and the MEMC-Net models, per frame.

    python benchmarks/bench_interpolate.py                       # every device present
    python benchmarks/bench_interpolate.py --device cuda --dtype float32 --dtype float16
    python benchmarks/bench_interpolate.py --device cpu --method free-fast --method free

What memc-interpolate does per output frame, from two (1, 3, H, W) frames in memory to the middle
frame: "free-fast" is the training-free path in one orientation (--fast), "free" its default
4-orientation ensemble; both include OpenCV's DIS flow, which runs on the CPU whatever the device
(its share is the "flow ms" column). "memc_s", "memc" and "memc_star" are the networks with
random weights (the speed of trained ones is the same), in eval mode without gradients; float16
and bfloat16 run them under autocast and apply only to them. The frames are a synthetic textured
image moved by a smooth motion of a few pixels.
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import memc_models  # noqa: E402
from memc_models.classical import ClassicalConfig, ClassicalInterpolator, dis_flows  # noqa: E402

# (name, height, width)
SIZES = [("vimeo90k", 256, 448), ("middlebury", 480, 640), ("720p", 720, 1280), ("1080p", 1080, 1920)]
# On a CPU by default: the networks take seconds a frame there, and more at larger sizes.
CPU_SIZES = [("vimeo90k", 256, 448)]
METHODS = ["free-fast", "free", "memc_s", "memc", "memc_star"]
MODEL_FACTORIES = {"memc_s": memc_models.memc_net_s, "memc": memc_models.memc_net, "memc_star": memc_models.memc_net_star}


def moving_frames(height, width, device):
    """Two frames of a smooth random texture, the second moved by up to ~4 px (zoom and shift)."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, height // 8 + 2, width // 8 + 2, generator=generator)
    fine = torch.rand(1, 3, height, width, generator=generator)
    texture = 0.8 * F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False) + 0.2 * fine
    ys = torch.linspace(-1, 1, height).view(height, 1).expand(height, width)
    xs = torch.linspace(-1, 1, width).view(1, width).expand(height, width)
    grid = torch.stack((xs * 0.995 + 4.0 / width, ys * 0.995 - 3.0 / height), -1).unsqueeze(0)
    moved = F.grid_sample(texture, grid, mode="bicubic", padding_mode="reflection", align_corners=True)
    return texture.clamp(0, 1).to(device), moved.clamp(0, 1).to(device)


def interpolator(method, device, dtype):
    """A function of (frame0, frame1) giving the middle frame, or None where the dtype does not apply."""
    if method.startswith("free"):
        if dtype != torch.float32:
            return None  # the training-free path computes in float32
        path = ClassicalInterpolator(ClassicalConfig(orientations=1 if method == "free-fast" else 4))
        return lambda frame0, frame1: path(frame0, frame1, 0.5)
    model = MODEL_FACTORIES[method]().to(device).eval()

    def run(frame0, frame1):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return model(frame0, frame1, t=0.5)
    return run


def flow_ms(method, frame0, frame1, device, repeats):
    """Milliseconds of the DIS flows in a training-free frame: per orientation, both directions
    computed together, as the training-free path does."""
    if not method.startswith("free"):
        return None
    orientations = [(), (3,), (2,), (2, 3)][: 1 if method == "free-fast" else 4]
    pairs = [(frame0.flip(dims), frame1.flip(dims)) if dims else (frame0, frame1) for dims in orientations]

    def flows():
        for a, b in pairs:
            dis_flows([(a, b), (b, a)])
    return common.time_ms(flows, device, repeats, warmup=1)


def rows_for(methods, sizes_for):
    def rows(device, dtype, repeats):
        result = []
        for name, height, width in sizes_for(device):
            frame0, frame1 = moving_frames(height, width, device)
            for method in methods:
                run = interpolator(method, device, dtype)
                if run is None:
                    continue
                try:
                    milliseconds = common.time_ms(lambda: run(frame0, frame1), device, repeats, warmup=1)
                except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError is torch 2.5 and later
                    milliseconds = None
                    torch.cuda.empty_cache()
                result.append({
                    "case": name, "size": f"{width}x{height}", "dtype": str(dtype).replace("torch.", ""),
                    "method": method, "ms": milliseconds,
                    "fps": None if milliseconds is None else 1e3 / milliseconds,
                    "flow_ms": flow_ms(method, frame0, frame1, device, repeats),
                })
        return result
    return rows


COLUMNS = [
    ("case", "case", "{}"), ("size", "WxH", "{}"), ("dtype", "dtype", "{}"), ("method", "method", "{}"),
    ("ms", "ms/frame", "{:.1f}"), ("fps", "frames/s", "{:.2f}"), ("flow_ms", "flow ms", "{:.1f}"),
]


def main(argv=None):
    parser = common.argument_parser(__doc__, default_dtypes=["float32"], cpu_repeats=3)
    parser.add_argument("--method", choices=METHODS, action="append", help="method(s) to time (default: all)")
    parser.add_argument("--full", action="store_true", help="on a CPU too, 640x480, 720p and 1080p")
    args = parser.parse_args(argv)

    def sizes_for(device):
        return SIZES if device.type == "cuda" or args.full else CPU_SIZES

    common.run_benchmark(parser, args, "frame interpolation, one middle frame", rows_for(args.method or METHODS, sizes_for),
                         COLUMNS)


if __name__ == "__main__":
    main()
