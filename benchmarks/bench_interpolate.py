"""Times whole-frame interpolation: the training-free path and the MEMC-Net models, per frame.

    python benchmarks/bench_interpolate.py                       # every device present
    python benchmarks/bench_interpolate.py --device cuda --dtype float32 --dtype float16
    python benchmarks/bench_interpolate.py --device cpu --method free-fast --method free --full
    python benchmarks/bench_interpolate.py --device cpu --method free --size 1080p --size 4K

What memc-interpolate does per output frame, from two (1, 3, H, W) frames in memory to the middle
frame: "free-fast" is the training-free path in one orientation (--fast), "free" its default
4-orientation ensemble; both include OpenCV's DIS flow, which runs on the CPU whatever the device.
"memc_s", "memc" and "memc_star" are the networks with random weights (the speed of trained ones
is the same), in eval mode without gradients; float16 and bfloat16 run them under autocast and
apply only to them. The frames are a synthetic textured image moved by a smooth motion of a few
pixels.

Per size, the "yardstick" is one OpenCV DIS flow with its medium preset as shipped
(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, finest scale: half resolution) between the two grey frames,
timed in the same run; "x yard" is a method's time over it, which stays meaningful on a busy or
different machine where milliseconds do not. For the training-free path, "DIS %" is the share of
its time spent in the DIS flows themselves (every orientation, both directions, at the working
resolution), and "peak MiB" the peak memory while it runs: the process's resident memory on a
CPU (sampled every few milliseconds), the allocator's peak on a GPU.

With --stream N, the training-free rows also time memc-interpolate's walk over a stream of N + 1
frames (the two frames in turn, in memory; each output converted to 8-bit as for an encoder) at
--factor 2: "seq ms" per middle frame with its stages one after another, "piped ms" with
reading and DIS on one thread, rendering on another and writing on a third (the default), and
"piped x yard" the latter over the yardstick, "piped peak MiB" its peak memory.

The process runs as memc-interpolate does: OpenMP's waiting threads sleep (OMP_WAIT_POLICY=PASSIVE
unless set; the title says which) and freed memory is kept for the next frames (as in every
benchmark, unless --hand-back-freed-memory; the environment line says which).
"""

import os
import sys
import threading
import time

# OpenMP's waiting threads sleep, as in memc-interpolate (memc_models sets this when it is
# imported before torch, and libgomp reads it when torch is loaded): set here before torch is.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import memc_models  # noqa: E402
from memc_models.classical import _ORIENTATIONS, ClassicalConfig, ClassicalInterpolator, dis_flows  # noqa: E402
from memc_models.frames import to_uint8  # noqa: E402
from memc_models.inference import build_interpolator  # noqa: E402
from memc_models.streaming import StreamFrame, interpolate_stream  # noqa: E402

# (name, height, width)
SIZES = [("vimeo90k", 256, 448), ("middlebury", 480, 640), ("720p", 720, 1280), ("1080p", 1080, 1920),
         ("4K", 2160, 3840)]
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


def classical_config(method):
    return ClassicalConfig(orientations=1 if method == "free-fast" else 4)


def interpolator(method, device, dtype):
    """A function of (frame0, frame1) giving the middle frame, or None where the dtype does not apply."""
    if method.startswith("free"):
        if dtype != torch.float32:
            return None  # the training-free path computes in float32
        path = ClassicalInterpolator(classical_config(method))
        return lambda frame0, frame1: path(frame0, frame1, 0.5)
    model = MODEL_FACTORIES[method]().to(device).eval()

    def run(frame0, frame1):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return model(frame0, frame1, t=0.5)
    return run


def grey(frame):
    """(1, 3, H, W) RGB in [0, 1] -> (H, W) uint8, as OpenCV's RGB2GRAY."""
    import cv2

    pixels = (frame[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def yardstick_ms(frame0, frame1, repeats):
    """Milliseconds of one OpenCV DIS flow with the medium preset exactly as shipped."""
    import cv2

    grey0, grey1 = grey(frame0), grey(frame1)
    return common.time_ms(lambda: cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(grey0, grey1, None),
                          torch.device("cpu"), repeats, warmup=1)


def dis_ms(method, frame0, frame1, device, repeats):
    """Milliseconds of the DIS flows in a training-free frame, computed as the training-free path
    does: every orientation and both directions at once, on the frames at the working resolution."""
    if not method.startswith("free"):
        return None
    path = ClassicalInterpolator(classical_config(method))
    small = path.motion(frame0, frame1).frames
    small0, small1 = small.chunk(2, 0)
    pairs = []
    for dims in _ORIENTATIONS[: path.config.orientations]:
        a, b = (small0.flip(dims), small1.flip(dims)) if dims else (small0, small1)
        pairs += [(a, b), (b, a)]
    return common.time_ms(lambda: dis_flows(pairs, path.config.preset, path.config.finest_scale), device, repeats, warmup=0)


def _resident_mib():
    """The process's resident memory in MiB (Linux), or None."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def peak_mib(fn, device):
    """Peak memory in MiB while fn() runs: the CUDA allocator's peak, or on a CPU the process's
    resident memory sampled every 2 ms (None where it cannot be read)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    if _resident_mib() is None:
        fn()
        return None
    peak, done = [_resident_mib()], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _resident_mib())
            time.sleep(0.002)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _resident_mib())


class _EncoderInput:
    """A sink that only converts each frame to the 8-bit pixels an encoder would be given."""

    def write(self, image, source=None):
        to_uint8(image)


def stream_ms(method, frame0, frame1, device, pairs, pipelined):
    """Milliseconds per middle frame of interpolate_stream over pairs + 1 frames at --factor 2."""
    if not method.startswith("free"):
        return None
    interpolate = build_interpolator(device, fast=method == "free-fast")
    frames = [StreamFrame(frame0 if k % 2 == 0 else frame1, k, f"frame {k}") for k in range(pairs + 1)]
    start = time.perf_counter()
    interpolate_stream(iter(frames), _EncoderInput(), interpolate, [0.5], scene_threshold=0, pipelined=pipelined)
    return (time.perf_counter() - start) * 1e3 / pairs


def rows_for(methods, sizes_for, warmup=1, stream_pairs=0):
    def rows(device, dtype, repeats):
        result = []
        for name, height, width in sizes_for(device):
            frame0, frame1 = moving_frames(height, width, device)
            yardstick = yardstick_ms(frame0, frame1, max(repeats, 3))
            for method in methods:
                run = interpolator(method, device, dtype)
                if run is None:
                    continue
                try:
                    def timed():
                        return common.time_ms(lambda: run(frame0, frame1), device, repeats, warmup=warmup)
                    if method.startswith("free"):  # the peak over the timed runs
                        timings = []
                        peak = peak_mib(lambda: timings.append(timed()), device)
                        milliseconds = timings[0]
                    else:
                        milliseconds, peak = timed(), None
                except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError is torch 2.5 and later
                    milliseconds = peak = None
                    torch.cuda.empty_cache()
                flow = dis_ms(method, frame0, frame1, device, repeats)
                sequential = piped = piped_peak = None
                if stream_pairs and method.startswith("free"):
                    sequential = stream_ms(method, frame0, frame1, device, stream_pairs, pipelined=False)
                    timings = []
                    piped_peak = peak_mib(lambda: timings.append(
                        stream_ms(method, frame0, frame1, device, stream_pairs, pipelined=True)), device)
                    piped = timings[0]
                result.append({
                    "case": name, "size": f"{width}x{height}", "dtype": str(dtype).replace("torch.", ""),
                    "method": method, "ms": milliseconds,
                    "fps": None if milliseconds is None else 1e3 / milliseconds,
                    "yardstick_ms": yardstick,
                    "yardsticks": None if milliseconds is None else milliseconds / yardstick,
                    "flow_ms": flow,
                    "dis_share": None if flow is None or milliseconds is None else 100.0 * flow / milliseconds,
                    "peak_mib": peak,
                    "stream_ms": sequential, "piped_ms": piped, "piped_peak_mib": piped_peak,
                    "piped_yardsticks": None if piped is None else piped / yardstick,
                })
        return result
    return rows


COLUMNS = [
    ("case", "case", "{}"), ("size", "WxH", "{}"), ("dtype", "dtype", "{}"), ("method", "method", "{}"),
    ("ms", "ms/frame", "{:.1f}"), ("fps", "frames/s", "{:.2f}"), ("yardstick_ms", "yardstick ms", "{:.1f}"),
    ("yardsticks", "x yard", "{:.2f}"), ("flow_ms", "DIS ms", "{:.1f}"), ("dis_share", "DIS %", "{:.0f}"),
    ("peak_mib", "peak MiB", "{:.0f}"),
]
STREAM_COLUMNS = [("stream_ms", "seq ms", "{:.1f}"), ("piped_ms", "piped ms", "{:.1f}"),
                  ("piped_yardsticks", "piped x yard", "{:.2f}"), ("piped_peak_mib", "piped peak MiB", "{:.0f}")]


def main(argv=None):
    parser = common.argument_parser(__doc__, default_dtypes=["float32"], cpu_repeats=3)
    parser.add_argument("--method", choices=METHODS, action="append", help="method(s) to time (default: all)")
    parser.add_argument("--full", action="store_true", help="on a CPU too, 640x480, 720p, 1080p and 4K")
    parser.add_argument("--size", choices=[name for name, _, _ in SIZES], action="append",
                        help="size(s) to time (default: all on a GPU or with --full, else 448x256)")
    parser.add_argument("--warmup", type=int, default=1, metavar="N",
                        help="untimed runs before the timed ones (default 1; 0 for a quick look at large sizes)")
    parser.add_argument("--stream", type=int, default=0, metavar="N",
                        help="training-free rows: also time a stream of N pairs, sequential and pipelined")
    args = parser.parse_args(argv)

    def sizes_for(device):
        if args.size:
            return [size for size in SIZES if size[0] in args.size]
        return SIZES if device.type == "cuda" or args.full else CPU_SIZES

    common.run_benchmark(parser, args, "frame interpolation, one middle frame, OMP_WAIT_POLICY="
                         + os.environ.get("OMP_WAIT_POLICY", "unset"),
                         common.one_dtype_at_a_time(rows_for(args.method or METHODS, sizes_for, args.warmup,
                                                             args.stream)),
                         COLUMNS + (STREAM_COLUMNS if args.stream else []))


if __name__ == "__main__":
    main()
