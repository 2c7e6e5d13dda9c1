"""Times memc_ops.flow_projection against the pure-PyTorch reference.

    python benchmarks/bench_projection.py                  # every device present (CPU: lighter cases)
    python benchmarks/bench_projection.py --device cuda --json results.json
    python benchmarks/bench_projection.py --device cpu --full --weighted

Two flows per size: "smooth" (a motion of a few pixels, few holes) and "holes" (everything
converging towards the centre, leaving the outer half of the frame as large holes: the case where
the released kernels' pixel-by-pixel hole search costs O(H*W*max(H, W))). For each size, flow and
pass (forward, forward+backward) it prints the median time, the effective memory traffic (the
bytes the op must at least read and write, divided by the time), that as a share of the GPU's peak
bandwidth, the speed-up over the reference and, for float16 and bfloat16 run beside float32
(``--dtype float32 --dtype float16``), the time relative to float32's. The dtypes and methods of
a case take turns, so that the ratios between them come from the same rounds. Hole filling is on.
Run it from the repository root with that checkout first on the path
(``PYTHONPATH=. python benchmarks/bench_projection.py``) to time that checkout's build.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import memc_ops  # noqa: E402
from memc_ops.reference import flow_projection_reference  # noqa: E402

# (name, batch, height, width)
SIZES = [("vimeo90k-train", 16, 256, 448), ("1080p", 1, 1080, 1920)]
# On a CPU by default: the same frame sizes with a smaller batch, to stay within a minute.
CPU_SIZES = [("vimeo90k-train-b2", 2, 256, 448), ("1080p", 1, 1080, 1920)]
FLOWS = ["smooth", "holes"]


def make_flow(kind, batch, height, width, dtype, device):
    ys = torch.arange(height, device=device, dtype=torch.float32).view(1, height, 1).expand(batch, height, width)
    xs = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, width).expand(batch, height, width)
    if kind == "smooth":  # a smooth motion of a few pixels, as between consecutive video frames
        u, v = ys * (3.14 / height), xs * (3.14 / width)
        flow = torch.stack([4 * torch.sin(u + v), 3 * torch.cos(2 * v - u)], 1)
    elif kind == "holes":  # zoom towards the centre: the outer half of the frame receives nothing
        flow = torch.stack([0.5 * ((width - 1) / 2 - xs), 0.5 * ((height - 1) / 2 - ys)], 1)
    else:
        raise ValueError(kind)
    return flow.contiguous().to(dtype)


def traffic_bytes(batch, height, width, dtype, weighted, backward):
    """Bytes flow_projection must move at least: read flow (and weight), write the output;
    backward also reads grad_output, flow (and weight) and writes their gradients."""
    element = torch.empty((), dtype=dtype).element_size()
    per_pixel = 2 + 2 + int(weighted)
    if backward:
        per_pixel += 2 + 2 + 2 + 3 * int(weighted)
    return batch * height * width * per_pixel * element


def run_case(name, batch, height, width, kind, dtypes, device, repeats, weighted):
    """Rows for one size and flow, every dtype and method timed in turns (see common.time_methods)."""
    methods = {"memc": memc_ops.flow_projection, "reference": flow_projection_reference}
    inputs = {}
    for dtype in dtypes:
        flow = make_flow(kind, batch, height, width, dtype, device)
        weight = torch.rand(batch, 1, height, width, device=device, dtype=dtype) + 0.5 if weighted else None
        inputs[dtype] = (flow, weight) if weighted else (flow,)
    calls = {(dtype, method): (fn, inputs[dtype]) for dtype in dtypes for method, fn in methods.items()}
    rows = []
    for backward in (False, True):
        times = common.time_methods(calls, backward, device, repeats)
        for dtype in dtypes:
            case = {"case": name, "shape": f"{batch}x2x{height}x{width}", "flow": kind,
                    "dtype": str(dtype).replace("torch.", ""), "weighted": weighted}
            traffic = traffic_bytes(batch, height, width, dtype, weighted, backward)
            rows += common.result_rows(case, {method: times[dtype, method] for method in methods}, traffic, device,
                                       backward)
    return common.add_float32_ratio(rows, ("case", "flow", "pass", "method"))


COLUMNS = [
    ("case", "case", "{}"), ("shape", "Bx2xHxW", "{}"), ("flow", "flow", "{}"), ("dtype", "dtype", "{}"),
    ("pass", "pass", "{}"), ("method", "method", "{}"), ("ms", "ms", "{:.3f}"), ("gbps", "GB/s", "{:.1f}"),
    ("peak_share", "of peak", "{:.0%}"), ("speedup_vs_reference", "x ref", "{:.1f}"),
    ("vs_float32", "x f32 time", "{:.2f}"),
]


def main(argv=None):
    parser = common.argument_parser(__doc__, default_dtypes=["float32"], cpu_repeats=7)
    parser.add_argument("--full", action="store_true", help="on a CPU too, the full batch of 16 at 448x256")
    parser.add_argument("--weighted", action="store_true", help="time the weighted (depth-aware) projection")
    args = parser.parse_args(argv)

    def rows_for(device, dtypes, repeats):
        sizes = SIZES if device.type == "cuda" or args.full else CPU_SIZES
        return [row for name, batch, height, width in sizes for kind in FLOWS
                for row in run_case(name, batch, height, width, kind, dtypes, device, repeats, args.weighted)]

    title = "flow_projection, fill_holes=True" + (", weighted" if args.weighted else "")
    common.run_benchmark(parser, args, title, rows_for, COLUMNS)


if __name__ == "__main__":
    main()
