"""A small CUDA workload touching every kernel path, to run under compute-sanitizer:

    compute-sanitizer --tool memcheck python benchmarks/cuda_workload.py

Forward and backward of every op for every dtype and kernel size, on odd sizes, strided inputs
and flows that stay inside, cross the border, leave the frame or are NaN.
"""

import torch

import memc_ops


def flows(batch, height, width, dtype):
    scale = torch.tensor([width, height], device="cuda", dtype=dtype).view(1, 2, 1, 1)
    mixed = (torch.rand(batch, 2, height, width, device="cuda", dtype=dtype) - 0.5) * 1.4 * scale
    nan = mixed.clone()
    nan[torch.rand_like(nan) < 0.2] = float("nan")
    return {"mixed": mixed, "nan": nan, "outside": torch.full_like(mixed, 1e4)}


def run_adaptive_warp():
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for kernel_size in (2, 4, 6, 8):
            for batch, channels, height, width in ((1, 1, 1, 1), (2, 3, 7, 13), (1, 64, 33, 17)):
                for name, flow in flows(batch, height, width, dtype).items():
                    image = torch.randn(batch, channels, height, width, device="cuda", dtype=dtype, requires_grad=True)
                    kernel = torch.randn(batch, kernel_size**2, height, width, device="cuda", dtype=dtype, requires_grad=True)
                    flow = flow.requires_grad_(True)
                    memc_ops.adaptive_warp(image, flow, kernel).sum().backward()
                    # A strided (channels-last) pass as well.
                    strided = [t.detach().contiguous(memory_format=torch.channels_last) for t in (image, flow, kernel)]
                    memc_ops.adaptive_warp(*strided)
    torch.cuda.synchronize()
    print("adaptive_warp: done")


def run_bicubic_warp():
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for batch, channels, height, width in ((1, 1, 1, 1), (2, 3, 7, 13), (1, 64, 33, 17)):
            for name, flow in flows(batch, height, width, dtype).items():
                image = torch.randn(batch, channels, height, width, device="cuda", dtype=dtype, requires_grad=True)
                memc_ops.bicubic_warp(image, flow.requires_grad_(True)).sum().backward()
                strided = [t.detach().contiguous(memory_format=torch.channels_last) for t in (image, flow)]
                memc_ops.bicubic_warp(*strided)
    torch.cuda.synchronize()
    print("bicubic_warp: done")


def run_flow_projection():
    if not hasattr(memc_ops, "flow_projection"):
        print("flow_projection: not in this build")
        return
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for batch, height, width in ((1, 1, 1), (2, 7, 13), (1, 1, 9), (1, 9, 1), (1, 33, 17)):
            for name, flow in flows(batch, height, width, dtype).items():
                weight = torch.rand(batch, 1, height, width, device="cuda", dtype=dtype) + 0.1
                for fill_holes in (False, True):
                    for w in (None, weight.requires_grad_(True)):
                        f = flow.detach().requires_grad_(True)
                        memc_ops.flow_projection(f, w, fill_holes=fill_holes).sum().backward()
    torch.cuda.synchronize()
    print("flow_projection: done")


if __name__ == "__main__":
    torch.manual_seed(0)
    run_adaptive_warp()
    run_bicubic_warp()
    run_flow_projection()
