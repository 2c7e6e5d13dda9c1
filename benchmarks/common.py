"""Timing, bandwidth and table helpers shared by the benchmark scripts."""

import argparse
import json
import platform
import statistics
import time

import torch

import memc_ops
from memc_models import atomic
from memc_models.cli.common import keep_freed_memory

# Theoretical DRAM bandwidth (GB/s) of common GPUs, from their vendors' data sheets; matched by
# substring of torch.cuda.get_device_name(), most specific first.
PEAK_BANDWIDTH_GBPS = [
    ("H200", 4800.0),
    ("H100 PCIe", 2000.0),
    ("H100 NVL", 3900.0),
    ("H100", 3350.0),
    ("GH200", 4000.0),
    ("B200", 8000.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100-PCIE-80GB", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
    ("L4", 300.0),
    ("A10", 600.0),
    ("RTX 4090", 1008.0),
    ("RTX 3090", 936.0),
    ("V100", 900.0),
    ("T4", 320.0),
]


def peak_bandwidth_gbps(device):
    """The device's theoretical memory bandwidth in GB/s, or None when unknown (CPU, other GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BANDWIDTH_GBPS:
        if key in name:
            return value
    return None


def time_ms(fn, device, repeats, warmup=2):
    """Median wall time of fn() in milliseconds (CUDA work is synchronised)."""
    for _ in range(warmup):
        fn()
    return statistics.median(_timed_run_ms(fn, device) for _ in range(repeats))


def _timed_run_ms(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def environment(device):
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "date": time.strftime("%Y-%m-%d"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["peak_bandwidth_gbps"] = peak_bandwidth_gbps(device)
    else:
        info["cpu"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


def print_table(rows, columns):
    """Prints rows (dicts) as an aligned text table with the given (key, header, format) columns."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append(["-" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for index, line in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def write_json(path, environment_info, rows):
    text = json.dumps({"environment": environment_info, "results": rows}, indent=2)
    atomic.write_file(path, text.encode())
    print(f"wrote {path}")


def time_methods(calls, backward, device, repeats, requires_grad=None, warmup=2):
    """Median milliseconds of each call: ``calls`` maps a key to ``(method, inputs)``, timed as
    method(*inputs), forward only or forward and backward of a ones gradient; None for a call
    that ran out of memory. With backward, requires_grad (one flag per input; default all) says
    which inputs need gradients.

    The calls take turns, so that a change in the machine's load during the measurement reaches
    every call alike and their ratios stay fair: give one call per method and dtype, and both the
    speed-ups and the dtypes' ratios come from the same rounds. In its turn a call runs twice and
    only the second run is timed: right after another method the first run is slower than the
    same call in a loop (flow_projection, 2x2x256x448, forward+backward: 2.6 ms against 1.8 ms on
    a CPU), which would penalise the faster method most."""

    def step_of(fn, inputs):
        flags = requires_grad if requires_grad is not None else [backward] * len(inputs)
        inputs = [t.detach().requires_grad_(backward and flag) for t, flag in zip(inputs, flags)]

        def step():
            output = fn(*inputs)
            if backward:
                torch.autograd.backward(output, torch.ones_like(output))
                for tensor in inputs:
                    tensor.grad = None
        return step

    steps = {key: step_of(fn, inputs) for key, (fn, inputs) in calls.items()}
    samples = {key: [] for key in calls}
    for round_index in range(warmup + repeats):
        for key, step in steps.items():
            if samples[key] is None:
                continue
            try:
                step()
                milliseconds = _timed_run_ms(step, device)
            except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError is torch 2.5 and later
                samples[key] = None
                torch.cuda.empty_cache()
                continue
            if round_index >= warmup:
                samples[key].append(milliseconds)
    return {key: None if runs is None else statistics.median(runs) for key, runs in samples.items()}


def add_float32_ratio(rows, same):
    """Sets each row's "vs_float32" to its time over that of the float32 row that agrees with it
    in every field of ``same`` (None where there is no such row or no time)."""
    float32_ms = {tuple(row[key] for key in same): row["ms"] for row in rows if row["dtype"] == "float32"}
    for row in rows:
        reference = float32_ms.get(tuple(row[key] for key in same))
        row["vs_float32"] = row["ms"] / reference if reference and row["ms"] is not None else None
    return rows


def result_rows(case, times, traffic, device, backward, pass_name=None):
    """One row per method: the case's fields, time, effective bandwidth, share of the device's
    peak, and speed-up over the method named "reference". pass_name overrides "fwd"/"fwd+bwd"."""
    peak = peak_bandwidth_gbps(device)
    rows = []
    for method, milliseconds in times.items():
        row = dict(case, **{
            "pass": pass_name or ("fwd+bwd" if backward else "fwd"), "method": method, "ms": milliseconds,
            "gbps": None, "peak_share": None, "speedup_vs_reference": None,
        })
        if milliseconds is not None:
            row["gbps"] = traffic / milliseconds / 1e6
            row["peak_share"] = row["gbps"] / peak if peak else None
            if times.get("reference") is not None:
                row["speedup_vs_reference"] = times["reference"] / milliseconds
        rows.append(row)
    return rows


def argument_parser(description, default_dtypes, cpu_repeats):
    """The options every benchmark takes: --device, --dtype, --repeats, --json."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], action="append",
                        help="device(s) to run on (default: the CPU and, when present, the GPU)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], action="append",
                        help=f"dtype(s) to run (default: {' and '.join(default_dtypes)})")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed runs per measurement (default: 20 on GPU, {cpu_repeats} on CPU)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    add_heap_option(parser)
    parser.set_defaults(default_dtypes=default_dtypes, cpu_repeats=cpu_repeats)
    return parser


def add_heap_option(parser):
    parser.add_argument("--hand-back-freed-memory", action="store_true",
                        help="leave the C library's allocator as it is by default, handing freed memory back to "
                             "the system (fresh tensors then page-fault; by default the benchmark keeps freed "
                             "memory for reuse, as the programs do)")


def set_heap(args):
    """Keeps freed memory for reuse, as the programs do (memc_models.cli.common.keep_freed_memory),
    unless --hand-back-freed-memory; returns how the heap is set, for the environment line.

    At glibc's default, whether a method's fresh tensors page-fault depends on what the methods
    before it freed, which moved one method's or one dtype's time by up to 0.8 ms from run to run
    (flow_projection, 2x2x256x448: forward+backward 1.65 ms in a process where no call
    page-faulted, 2.6 ms in one where most did, up to 1121 pages a call)."""
    if not args.hand_back_freed_memory and keep_freed_memory():
        return "freed memory kept"
    return "C library's default"


def selected_devices(parser, args):
    """The devices asked for (default: the CPU and any GPU), checked against this build."""
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not (torch.cuda.is_available() and memc_ops.cuda_kernels_built()):
        parser.error("--device cuda needs a GPU and memc_ops built with its CUDA kernels")
    return [torch.device(name) for name in devices]


def selected_dtypes(args):
    return [getattr(torch, name) for name in (args.dtype or args.default_dtypes)]


def repeats_for(args, device):
    return args.repeats or (20 if device.type == "cuda" else args.cpu_repeats)


def one_dtype_at_a_time(rows_for_dtype):
    """rows_for(device, dtypes, repeats) for :func:`run_benchmark` from a function of one dtype:
    the dtypes one after another (for measurements that need no ratio between dtypes)."""
    return lambda device, dtypes, repeats: [row for dtype in dtypes for row in rows_for_dtype(device, dtype, repeats)]


def run_benchmark(parser, args, title, rows_for, columns):
    """For each selected device: print the environment, collect rows_for(device, dtypes, repeats)
    (the selected dtypes), print them as a table; then write everything to --json if asked.
    Freed memory is kept for reuse first (see :func:`set_heap`)."""
    all_rows, environments = [], []
    dtypes = selected_dtypes(args)
    heap = set_heap(args)
    for device in selected_devices(parser, args):
        info = dict(environment(device), heap=heap)
        environments.append(info)
        print(f"\n# {title}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        rows = rows_for(device, dtypes, repeats_for(args, device))
        print_table(rows, columns)
        all_rows += [dict(row, device=str(device)) for row in rows]
    if args.json:
        write_json(args.json, environments, all_rows)
