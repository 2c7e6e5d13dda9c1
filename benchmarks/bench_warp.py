"""Times memc_ops.adaptive_warp against the pure-PyTorch reference and grid_sample.

    python benchmarks/bench_warp.py                 # every device present, float32 and float16
    python benchmarks/bench_warp.py --device cpu --quick
    python benchmarks/bench_warp.py --json results.json

For each size, dtype and pass (forward, forward+backward) it prints the median time, the effective
memory traffic (the bytes the op must at least read and write, divided by the time), that as a share
of the GPU's peak bandwidth, the speed-up over the reference and, for float16 and bfloat16, the time
relative to float32's. The dtypes and methods of a size take turns, so that the ratios between
them come from the same rounds. grid_sample (bilinear, border
padding) is the nearest built-in: it does bilinear warping without the learned 4x4 kernels.
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import memc_ops  # noqa: E402
from memc_ops.reference import adaptive_warp_reference  # noqa: E402

KERNEL_SIZE = 4

# (name, batch, channels, height, width)
SIZES = [
    ("vimeo90k-train", 16, 3, 256, 448),
    ("1080p", 1, 3, 1080, 1920),
    ("720p-context", 1, 64, 720, 1280),
]
QUICK_SIZES = [("vimeo90k-train-b2", 2, 3, 256, 448), ("720p", 1, 3, 720, 1280)]


def make_inputs(batch, channels, height, width, dtype, device):
    image = torch.rand(batch, channels, height, width, device=device, dtype=dtype)
    # A smooth motion of a few pixels, as between consecutive video frames.
    ys = torch.linspace(0, 3.14, height, device=device).view(1, height, 1)
    xs = torch.linspace(0, 3.14, width, device=device).view(1, 1, width)
    flow = torch.stack([4 * torch.sin(ys + xs), 3 * torch.cos(2 * xs - ys)], 1).expand(batch, 2, height, width)
    flow = flow.contiguous().to(dtype)
    kernel = torch.rand(batch, KERNEL_SIZE * KERNEL_SIZE, height, width, device=device, dtype=dtype) / 4
    return image, flow, kernel


def grid_sample_warp(image, flow):
    """Bilinear backward warping by flow with grid_sample: the built-in counterpart."""
    _, _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, device=image.device, dtype=image.dtype),
                            torch.arange(width, device=image.device, dtype=image.dtype), indexing="ij")
    grid_x = (xs + flow[:, 0]) * (2 / max(width - 1, 1)) - 1
    grid_y = (ys + flow[:, 1]) * (2 / max(height - 1, 1)) - 1
    grid = torch.stack([grid_x, grid_y], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def traffic_bytes(batch, channels, height, width, dtype, backward, image_grad=True):
    """Bytes adaptive_warp must move at least: read image, flow, kernel, write output; backward also
    reads grad_output and the inputs again and writes the gradients (the image's when image_grad)."""
    element = torch.empty((), dtype=dtype).element_size()
    taps = KERNEL_SIZE * KERNEL_SIZE
    per_pixel = 2 * channels + 2 + taps
    if backward:
        per_pixel += (channels + channels + 2 + taps) + ((channels if image_grad else 0) + 2 + taps)
    return batch * height * width * per_pixel * element


def run_case(name, batch, channels, height, width, dtypes, device, repeats):
    """Rows for one size, every dtype and method timed in turns (see common.time_methods)."""
    methods = {
        "memc": lambda i, f, k: memc_ops.adaptive_warp(i, f, k),
        "reference": adaptive_warp_reference,
        "grid_sample": lambda i, f, k: grid_sample_warp(i, f),
    }
    calls = {}
    for dtype in dtypes:
        inputs = make_inputs(batch, channels, height, width, dtype, device)
        for method, fn in methods.items():
            # grid_sample's half-precision CPU backward corrupts memory (seen with torch 2.14.1).
            if not (method == "grid_sample" and device.type == "cpu" and dtype != torch.float32):
                calls[dtype, method] = (fn, inputs)
    rows = []
    # The last pass is MEMC-Net training's: the frames are inputs and need no gradient.
    for backward, image_grad, pass_name in ((False, False, "fwd"), (True, True, "fwd+bwd"),
                                            (True, False, "fwd+bwd, image no grad")):
        times = common.time_methods(calls, backward, device, repeats, requires_grad=(image_grad, True, True))
        for dtype in dtypes:
            case = {"case": name, "shape": f"{batch}x{channels}x{height}x{width}",
                    "dtype": str(dtype).replace("torch.", "")}
            traffic = traffic_bytes(batch, channels, height, width, dtype, backward, image_grad)
            timed = {method: times[dtype, method] for method in methods if (dtype, method) in times}
            rows += common.result_rows(case, timed, traffic, device, backward, pass_name)
    return common.add_float32_ratio(rows, ("case", "pass", "method"))


COLUMNS = [
    ("case", "case", "{}"), ("shape", "BxCxHxW", "{}"), ("dtype", "dtype", "{}"), ("pass", "pass", "{}"),
    ("method", "method", "{}"), ("ms", "ms", "{:.3f}"), ("gbps", "GB/s", "{:.1f}"),
    ("peak_share", "of peak", "{:.0%}"), ("speedup_vs_reference", "x ref", "{:.1f}"),
    ("vs_float32", "x f32 time", "{:.2f}"),
]


def main(argv=None):
    parser = common.argument_parser(__doc__, default_dtypes=["float32", "float16"], cpu_repeats=7)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a quick look on a CPU")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES

    def rows_for(device, dtypes, repeats):
        return [row for size in sizes for row in run_case(*size, dtypes, device, repeats)]

    common.run_benchmark(parser, args, f"adaptive_warp, K={KERNEL_SIZE}", rows_for, COLUMNS)


if __name__ == "__main__":
    main()
