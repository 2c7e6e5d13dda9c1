"""Times memc-train's training step: samples per second per process and in total, per variant,
in one process and in several (DistributedDataParallel, as under torchrun).

    python benchmarks/bench_train.py                          # every device present, 1 and 2 processes
    python benchmarks/bench_train.py --device cuda --dtype float32 --dtype bfloat16 --processes 1
    python benchmarks/bench_train.py --device cpu --variant memc_s --processes 1 --processes 2 --size 64 112

One step is what memc-train does per batch (:func:`memc_models.training.train_step`: forward,
Charbonnier loss, backward, Adamax step with the recipe's learning rates) on random frames of
--size at t = 0.5, --batch-size per process. One process is a plain run; N processes join a gloo
(CPU) or NCCL (CUDA, one GPU each) process group as torchrun would start them, each process
timing its own steps; the total is the sum over the processes. On a CPU the processes share its
cores (each takes cores / N threads), so the total shows what the split costs, not a speed-up.
float16 and bfloat16 are --amp's autocast (float16 with a gradient scaler).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from memc_models import distributed, training  # noqa: E402

VARIANTS = ["memc_s", "memc", "memc_star"]
#: (height, width): Vimeo90K's full frames on a GPU; a quarter of each side on a CPU, where a
#: step of the full networks at full size takes tens of seconds.
GPU_SIZE = (256, 448)
CPU_SIZE = (64, 112)


def time_steps(variant, device, dtype, batch_size, size, steps, warmup, run):
    """Seconds of ``steps`` training steps after ``warmup`` ones, in this process of ``run``."""
    torch.manual_seed(0)
    model = distributed.wrap_model(training.build_model(variant).to(run.device), run)
    optimizer = training.build_optimizer(distributed.bare_model(model))
    amp = None if dtype == torch.float32 else dtype
    scaler = training.grad_scaler(run.device, amp)
    generator = torch.Generator().manual_seed(1 + run.rank)
    batch = [torch.rand(batch_size, 3, *size, generator=generator).to(run.device) for _ in range(3)]

    def step():
        training.train_step(model, optimizer, batch, run.device, amp, scaler)

    for _ in range(warmup):
        step()
    _synchronise(run)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronise(run)
    return time.perf_counter() - start


def _synchronise(run):
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    if run.is_distributed:
        torch.distributed.barrier()


def _worker(options):
    """One process of a several-process measurement (started by :func:`measure`)."""
    device = torch.device(options["device"])
    if options["keep_freed_memory"]:  # as memc-train's processes (and this benchmark's own) do
        common.keep_freed_memory()
    run = distributed.init_distributed(device, timeout=600)
    torch.set_num_threads(options["threads"])
    seconds = time_steps(options["variant"], device, getattr(torch, options["dtype"]), options["batch_size"],
                         tuple(options["size"]), options["steps"], options["warmup"], run)
    with open(os.path.join(options["out"], f"rank{run.rank}.json"), "w") as handle:
        json.dump({"seconds": seconds}, handle)
    distributed.close_distributed(run)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(variant, device, dtype, processes, batch_size, size, steps, warmup, keep_freed_memory=True):
    """Seconds per step of each process, ``processes`` processes training together (each keeping
    freed memory for reuse unless told not to)."""
    threads = max(1, (os.cpu_count() or 1) // processes) if device.type == "cpu" else torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as out:
        options = dict(variant=variant, device=device.type, dtype=str(dtype).replace("torch.", ""),
                       batch_size=batch_size, size=list(size), steps=steps, warmup=warmup, out=out, threads=threads,
                       keep_freed_memory=keep_freed_memory)
        command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(options)]
        port = _free_port()
        # The workers import the memc_models this process imported (a checkout or an install).
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(distributed.__file__)))
        python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        workers = []
        for rank in range(processes):
            environment = dict(os.environ, PYTHONPATH=python_path)
            for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
                environment.pop(name, None)
            if processes > 1:
                environment.update(RANK=str(rank), WORLD_SIZE=str(processes), LOCAL_RANK=str(rank),
                                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            workers.append(subprocess.Popen(command, env=environment))
        codes = [worker.wait() for worker in workers]
        if any(codes):
            raise RuntimeError(f"a benchmark process failed (exit statuses {codes})")
        seconds = []
        for rank in range(processes):
            with open(os.path.join(out, f"rank{rank}.json")) as handle:
                seconds.append(json.load(handle)["seconds"])
    return [value / steps for value in seconds]


def rows_for(variants, process_counts, batch_size, size_for, warmup, keep_freed_memory=True):
    def rows(device, dtype, steps):
        result = []
        counts = [n for n in process_counts if device.type == "cpu" or n <= torch.cuda.device_count()]
        size = size_for(device)
        for variant in variants:
            single = None
            for processes in counts:
                step_seconds = measure(variant, device, dtype, processes, batch_size, size, steps, warmup,
                                       keep_freed_memory)
                per_process = [batch_size / seconds for seconds in step_seconds]
                total = sum(per_process)
                if processes == 1:
                    single = total
                result.append({
                    "variant": variant, "dtype": str(dtype).replace("torch.", ""), "size": f"{size[1]}x{size[0]}",
                    "processes": processes, "batch": batch_size, "global_batch": batch_size * processes,
                    "ms_per_step": 1e3 * max(step_seconds), "samples_per_s_per_process": min(per_process),
                    "samples_per_s": total, "scaling": None if single is None else total / single,
                })
        return result
    return rows


COLUMNS = [
    ("variant", "variant", "{}"), ("dtype", "dtype", "{}"), ("size", "WxH", "{}"), ("processes", "procs", "{}"),
    ("batch", "batch/proc", "{}"), ("global_batch", "global batch", "{}"), ("ms_per_step", "ms/step", "{:.0f}"),
    ("samples_per_s_per_process", "samples/s/proc", "{:.2f}"), ("samples_per_s", "samples/s total", "{:.2f}"),
    ("scaling", "vs 1 proc", "{:.2f}x"),
]


def main(argv=None):
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return _worker(json.loads(sys.argv[2]))
    parser = common.argument_parser(__doc__, default_dtypes=["float32"], cpu_repeats=3)
    parser.add_argument("--variant", choices=VARIANTS, action="append", help="variant(s) to time (default: all)")
    parser.add_argument("--processes", type=int, action="append",
                        help="process counts (default: 1 and 2; on CUDA at most one per GPU)")
    parser.add_argument("--batch-size", type=int, default=1, help="samples per process and step (default: 1)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help=f"frame size (default: {GPU_SIZE[0]} {GPU_SIZE[1]} on a GPU, {CPU_SIZE[0]} {CPU_SIZE[1]} "
                        "on a CPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.processes or ()) or args.batch_size < 1 or args.warmup < 0:
        parser.error("--processes and --batch-size must be at least 1, --warmup at least 0")

    def size_for(device):
        return tuple(args.size) if args.size else (GPU_SIZE if device.type == "cuda" else CPU_SIZE)

    common.run_benchmark(parser, args, "training steps (--repeats: timed steps per process)",
                         common.one_dtype_at_a_time(rows_for(args.variant or VARIANTS, args.processes or [1, 2],
                                                             args.batch_size, size_for, args.warmup,
                                                             not args.hand_back_freed_memory)), COLUMNS)


if __name__ == "__main__":
    main()
