"""The adaptive warping op: its definition (against the pure-PyTorch reference), its gradients,
its dtypes and layouts, its registration, and its errors."""

import math
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

import memc_ops
from memc_ops.reference import adaptive_warp_reference


def make_inputs(batch, channels, height, width, kernel_size, flow_kind="mixed", dtype=torch.float64,
                device="cpu", requires_grad=False):
    image = torch.randn(batch, channels, height, width, dtype=dtype, device=device)
    kernel = torch.randn(batch, kernel_size * kernel_size, height, width, dtype=dtype, device=device)
    scale = torch.tensor([width, height], dtype=dtype, device=device).view(1, 2, 1, 1)
    if flow_kind == "zero":
        flow = torch.zeros(batch, 2, height, width, dtype=dtype, device=device)
    elif flow_kind == "inside":  # small motions, mostly landing in the frame
        flow = torch.randn(batch, 2, height, width, dtype=dtype, device=device) * 1.5
    elif flow_kind == "mixed":  # inside, across the border and beyond the half-size limit
        flow = (torch.rand(batch, 2, height, width, dtype=dtype, device=device) - 0.5) * 1.4 * scale
    elif flow_kind == "outside":  # everything leaves the frame
        flow = torch.full((batch, 2, height, width), 1.0, dtype=dtype, device=device) * (scale + 3)
    elif flow_kind == "border":  # targets exactly on the first and last rows and columns
        ys = torch.arange(height, dtype=dtype, device=device).view(1, height, 1)
        xs = torch.arange(width, dtype=dtype, device=device).view(1, 1, width)
        to_last = torch.stack([(width - 1 - xs).expand(batch, height, width), (height - 1 - ys).expand(batch, height, width)], 1)
        to_first = torch.stack([(-xs).expand(batch, height, width), (-ys).expand(batch, height, width)], 1)
        pick = torch.rand(batch, 1, height, width, device=device) < 0.5
        flow = torch.where(pick, to_last, to_first)
    elif flow_kind == "smooth":  # slow motion, as between video frames: see _smooth_flow
        flow = _smooth_flow(batch, height, width, dtype, device)
    elif flow_kind == "nan":
        flow = torch.randn(batch, 2, height, width, dtype=dtype, device=device)
        flow[torch.rand_like(flow) < 0.3] = float("nan")
    else:
        raise ValueError(flow_kind)
    tensors = (image, flow, kernel)
    return tuple(t.requires_grad_(requires_grad) for t in tensors)


def _smooth_flow(batch, height, width, dtype, device):
    """A few pixels of motion that changes by about one pixel over 16 columns: on the CPU, runs of
    8 or 16 pixels (a vector) whose windows are the same up to one step of a row or column, whose
    taps are loaded rather than gathered; others with larger steps, and windows clamped at the
    border, which are gathered. Rows 2 and 3 point out of the frame (the copy-through branch)."""
    ys = torch.arange(height, dtype=torch.float64).view(height, 1)
    xs = torch.arange(width, dtype=torch.float64).view(1, width) + 17 * torch.arange(batch).view(batch, 1, 1)
    flow_x = 2.5 * torch.sin(xs / 40 + ys / 5) + 0.3
    flow_y = 1.7 * torch.cos(xs / 50 - ys / 4) - 0.2
    flow = torch.stack([flow_x, flow_y], 1)
    flow[:, :, 2:4] *= max(height, width)
    return flow.to(dtype=dtype, device=device)


def away_from_crossings(flow, width, height):
    """Moves each flow to integer + [0.2, 0.8], where the op is differentiable: floor(x + f) and
    the validity tests are constant nearby (sizes must be even so W/2, H/2 are integers)."""
    assert width % 2 == 0 and height % 2 == 0
    return flow.floor() + 0.2 + 0.6 * torch.rand_like(flow)


def grads(fn, inputs, grad_output):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    output = fn(*inputs)
    return (output, *torch.autograd.grad(output, inputs, grad_output))


CASES = [
    # batch, channels, height, width, kernel size, flow
    (1, 1, 1, 1, 4, "inside"),
    (2, 3, 7, 13, 4, "mixed"),
    (2, 3, 7, 13, 2, "mixed"),
    (2, 3, 7, 13, 6, "mixed"),
    (1, 3, 16, 16, 8, "inside"),
    (3, 1, 9, 5, 4, "inside"),
    (2, 64, 6, 10, 4, "mixed"),
    (2, 3, 8, 8, 4, "zero"),
    (2, 3, 8, 8, 4, "outside"),
    (2, 3, 8, 11, 4, "border"),
    (2, 3, 8, 11, 6, "border"),
    (2, 3, 8, 11, 4, "nan"),
    (1, 2, 1, 9, 4, "mixed"),
    (1, 2, 9, 1, 4, "mixed"),
    (2, 3, 9, 53, 4, "smooth"),
    (1, 2, 8, 40, 2, "smooth"),
    (1, 2, 12, 64, 6, "smooth"),
    (1, 5, 12, 37, 8, "smooth"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_forward_and_backward_match_reference(case, device):
    batch, channels, height, width, kernel_size, flow_kind = case
    inputs = make_inputs(batch, channels, height, width, kernel_size, flow_kind, device=device)
    grad_output = torch.randn(batch, channels, height, width, dtype=torch.float64, device=device)
    ours = grads(memc_ops.adaptive_warp, inputs, grad_output)
    expected = grads(adaptive_warp_reference, inputs, grad_output)
    for name, got, want in zip(["output", "grad image", "grad flow", "grad kernel"], ours, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")


def test_invalid_pixels_copy_the_input_and_pass_gradient_through(device):
    image, flow, kernel = make_inputs(1, 3, 6, 8, 4, "outside", device=device, requires_grad=True)
    output = memc_ops.adaptive_warp(image, flow, kernel)
    assert torch.equal(output, image)
    output.sum().backward()
    assert torch.equal(image.grad, torch.ones_like(image))
    assert torch.equal(flow.grad, torch.zeros_like(flow))
    assert torch.equal(kernel.grad, torch.zeros_like(kernel))


def test_zero_flow_with_a_delta_kernel_is_the_identity(device):
    image, flow, kernel = make_inputs(2, 3, 5, 7, 4, "zero", device=device)
    kernel = torch.zeros_like(kernel)
    kernel[:, 1 * 4 + 1] = 1  # the tap at (j, i) itself; a = b = 0 gives it full bilinear weight
    torch.testing.assert_close(memc_ops.adaptive_warp(image, flow, kernel), image)


def test_quadrant_formula_on_one_pixel():
    """The issue's statement of the definition, evaluated by hand for a single output pixel."""
    image = torch.arange(5 * 6, dtype=torch.float64).view(1, 1, 5, 6) ** 1.5
    kernel = torch.rand(1, 16, 5, 6, dtype=torch.float64)
    flow = torch.zeros(1, 2, 5, 6, dtype=torch.float64)
    y, x, fx, fy = 2, 1, 1.25, 0.6  # target (2.25, 2.6): i = 2, j = 2, a = 0.25, b = 0.6
    flow[0, 0, y, x], flow[0, 1, y, x] = fx, fy
    i, j, a, b = 2, 2, 0.25, 0.6
    quadrant = {"TL": 0.0, "TR": 0.0, "BL": 0.0, "BR": 0.0}
    for row in range(j - 1, j + 3):
        for col in range(i - 1, i + 3):
            tap = (row - (j - 1)) * 4 + (col - (i - 1))
            sample = image[0, 0, min(max(row, 0), 4), min(max(col, 0), 5)]
            key = ("T" if row <= j else "B") + ("L" if col <= i else "R")
            quadrant[key] += kernel[0, tap, y, x].item() * sample.item()
    expected = (1 - a) * (1 - b) * quadrant["TL"] + a * (1 - b) * quadrant["TR"] + (1 - a) * b * quadrant["BL"] + a * b * quadrant["BR"]
    output = memc_ops.adaptive_warp(image, flow, kernel)
    assert math.isclose(output[0, 0, y, x].item(), expected, rel_tol=1e-12)


@pytest.mark.parametrize("kernel_size", [2, 4, 6])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradcheck(kernel_size, seed, device):
    torch.manual_seed(seed)
    image, flow, kernel = make_inputs(2, 2, 6, 8, kernel_size, "mixed", device=device)
    flow = away_from_crossings(flow, 8, 6)
    inputs = tuple(t.requires_grad_(True) for t in (image, flow, kernel))
    assert torch.autograd.gradcheck(memc_ops.adaptive_warp, inputs)


def test_gradcheck_non_contiguous(device):
    image, flow, kernel = make_inputs(2, 2, 8, 6, 4, "mixed", device=device)
    flow = away_from_crossings(flow, 8, 6)
    # Transposed views: same values per (y, x) position after the transpose, strides differ.
    inputs = tuple(t.transpose(2, 3).requires_grad_(True) for t in (image, flow, kernel))
    assert not inputs[0].is_contiguous()
    assert torch.autograd.gradcheck(memc_ops.adaptive_warp, inputs)


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "expanded_kernel"])
def test_layouts_match_contiguous(layout, device):
    image, flow, kernel = make_inputs(2, 5, 9, 12, 4, "mixed", dtype=torch.float32, device=device)
    if layout == "channels_last":
        strided = [t.contiguous(memory_format=torch.channels_last) for t in (image, flow, kernel)]
    elif layout == "sliced":
        strided = [torch.cat([t, t], dim=3)[..., ::2] for t in (image, flow, kernel)]
    else:  # one kernel map shared by the whole batch, as a broadcast view with stride 0
        kernel = kernel[:1].expand_as(kernel)
        strided = [image, flow, kernel]
    expected = memc_ops.adaptive_warp(*(t.contiguous() for t in strided))
    grad_output = torch.randn_like(expected)
    ours = grads(memc_ops.adaptive_warp, strided, grad_output)
    reference = grads(memc_ops.adaptive_warp, [t.contiguous() for t in strided], grad_output)
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(dtype, device):
    image, flow, kernel = make_inputs(2, 3, 16, 20, 4, "inside", dtype=torch.float32, device=device)
    kernel = kernel.abs() / 4  # coefficients of the size a trained network produces
    low = [t.to(dtype) for t in (image, flow, kernel)]
    # Compare against float32 on the same rounded inputs, so only the kernels' arithmetic differs.
    high = [t.float() for t in low]
    grad_output = torch.randn(2, 3, 16, 20, device=device)
    ours = grads(memc_ops.adaptive_warp, low, grad_output.to(dtype))
    expected = grads(memc_ops.adaptive_warp, high, grad_output)
    tolerance = 1e-2 if dtype == torch.float16 else 5e-2
    for name, got, want in zip(["output", "grad image", "grad flow", "grad kernel"], ours, expected):
        assert got.dtype == dtype, name
        scale = want.abs().max().clamp_min(1)
        assert (got.float() - want).abs().max() <= tolerance * scale, name


def _laid_out(tensors, layout):
    if layout == "channels_last":
        return [t.contiguous(memory_format=torch.channels_last) for t in tensors]
    if layout == "sliced":  # rows with a stride of 2
        return [torch.cat([t, t], dim=3)[..., ::2] for t in tensors]
    return list(tensors)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_float32_rounded_once(dtype, layout, device):
    """float16 and bfloat16 are computed in float32 and rounded once: on the same (rounded) inputs,
    the output and the three gradients are float32's results rounded to the dtype, bit for bit,
    whether rows are read as whole vectors (stride 1) or element by element (strided rows and the
    ends of rows: the width, 45, fills no vector exactly)."""
    image, flow, kernel = make_inputs(2, 3, 9, 45, 4, "mixed", dtype=torch.float32, device=device)
    flow[:, :, 0, :5] = float("nan")
    grad_output = torch.randn_like(image)
    low = _laid_out([t.to(dtype) for t in (grad_output, image, flow, kernel)], layout)
    high = [t.float() for t in low]
    ours = (memc_ops.adaptive_warp(*low[1:]), *torch.ops.memc.adaptive_warp_backward(*low))
    expected = (memc_ops.adaptive_warp(*high[1:]), *torch.ops.memc.adaptive_warp_backward(*high))
    if device == "cuda":  # nvcc may fuse multiplies and adds differently per dtype
        for name, got, want in zip(["output", "grad image", "grad flow", "grad kernel"], ours, expected):
            torch.testing.assert_close(got, want.to(dtype), msg=lambda m: f"{name}: {m}")
        return
    for name, got, want in zip(["output", "grad image", "grad flow", "grad kernel"], ours, expected):
        assert got.dtype == dtype, name
        assert torch.equal(got, want.to(dtype)), name


def test_opcheck(device):
    samples = [
        make_inputs(2, 3, 7, 13, 4, "mixed", dtype=torch.float32, device=device),
        make_inputs(1, 1, 5, 6, 2, "inside", dtype=torch.float64, device=device, requires_grad=True),
        make_inputs(2, 4, 6, 8, 6, "inside", dtype=torch.float32, device=device, requires_grad=True),
    ]
    for sample in samples:
        torch.library.opcheck(torch.ops.memc.adaptive_warp.default, sample)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile(backend, device):
    torch._dynamo.reset()

    def warp_and_blend(image, flow, kernel):
        return 0.5 * memc_ops.adaptive_warp(image, flow, kernel) + 0.5 * image

    compiled = torch.compile(warp_and_blend, fullgraph=True, backend=backend)
    inputs = make_inputs(2, 3, 8, 8, 4, "mixed", dtype=torch.float32, device=device, requires_grad=True)
    grad_output = torch.randn(2, 3, 8, 8, device=device)
    ours = grads(compiled, inputs, grad_output)
    expected = grads(warp_and_blend, inputs, grad_output)
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want)


def test_module_wrapper(device):
    inputs = make_inputs(1, 3, 6, 6, 4, "mixed", dtype=torch.float32, device=device)
    torch.testing.assert_close(memc_ops.AdaptiveWarp()(*inputs), memc_ops.adaptive_warp(*inputs))


def test_empty_batch(device):
    image, flow, kernel = make_inputs(0, 3, 4, 4, 4, "zero", dtype=torch.float32, device=device, requires_grad=True)
    output = memc_ops.adaptive_warp(image, flow, kernel)
    assert output.shape == (0, 3, 4, 4)
    output.sum().backward()  # no planes to cut into bands
    assert image.grad.shape == (0, 3, 4, 4) and flow.grad.shape == (0, 2, 4, 4) and kernel.grad.shape == (0, 16, 4, 4)


BAD_INPUTS = [
    # description, (image shape, flow shape, kernel shape), expected fragment of the message
    ("image rank", ((3, 8, 8), (1, 2, 8, 8), (1, 16, 8, 8)), "image must be a 4-D tensor"),
    ("flow channels", ((1, 3, 8, 8), (1, 3, 8, 8), (1, 16, 8, 8)), "flow must have shape (B, 2, H, W) = (1, 2, 8, 8)"),
    ("flow size", ((1, 3, 8, 8), (1, 2, 8, 7), (1, 16, 8, 8)), "flow must have shape (B, 2, H, W) = (1, 2, 8, 8)"),
    ("flow batch", ((2, 3, 8, 8), (1, 2, 8, 8), (2, 16, 8, 8)), "flow must have shape (B, 2, H, W) = (2, 2, 8, 8)"),
    ("kernel not a square", ((1, 3, 8, 8), (1, 2, 8, 8), (1, 15, 8, 8)), "kernel must have K*K channels"),
    ("kernel odd square", ((1, 3, 8, 8), (1, 2, 8, 8), (1, 9, 8, 8)), "kernel must have K*K channels"),
    ("kernel size", ((1, 3, 8, 8), (1, 2, 8, 8), (1, 16, 4, 8)), "kernel must have shape (B, K*K, H, W) = (1, 16, 8, 8)"),
    ("kernel batch", ((2, 3, 8, 8), (2, 2, 8, 8), (1, 16, 8, 8)), "kernel must have shape (B, K*K, H, W) = (2, 16, 8, 8)"),
]


@pytest.mark.parametrize("description, shapes, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_shapes_are_rejected_with_a_clear_message(description, shapes, message):
    image, flow, kernel = (torch.zeros(shape) for shape in shapes)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        memc_ops.adaptive_warp(image, flow, kernel)


def test_integer_and_mixed_dtypes_are_rejected():
    image, flow, kernel = torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4), torch.zeros(1, 16, 4, 4)
    with pytest.raises(ValueError, match="image must be float32, float64, float16 or bfloat16; got Long"):
        memc_ops.adaptive_warp(image.long(), flow, kernel)
    with pytest.raises(ValueError, match="flow must have the dtype of image"):
        memc_ops.adaptive_warp(image, flow.double(), kernel)
    with pytest.raises(ValueError, match="kernel must have the dtype of image"):
        memc_ops.adaptive_warp(image, flow, kernel.half())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mixed_devices_are_rejected():
    image, flow, kernel = torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4), torch.zeros(1, 16, 4, 4)
    with pytest.raises(RuntimeError, match="flow must be on the device of image"):
        memc_ops.adaptive_warp(image, flow.cuda(), kernel)


def test_flows_of_half_the_frame_or_more_copy_the_input(device):
    """The released kernels' rule: |f_x| < W/2 and |f_y| < H/2, even when the target is inside."""
    image, flow, kernel = make_inputs(1, 2, 6, 8, 4, "zero", device=device)
    flow[0, 0, 1, 0] = 4.0  # x = 0 -> 4: inside the frame, but |f_x| = W/2
    flow[0, 1, 0, 2] = 3.0  # y = 0 -> 3: inside the frame, but |f_y| = H/2
    flow[0, 0, 2, 1] = 3.5  # just under the limit: warped
    output = memc_ops.adaptive_warp(image, flow, kernel)
    torch.testing.assert_close(output[0, :, 1, 0], image[0, :, 1, 0], rtol=0, atol=0)
    torch.testing.assert_close(output[0, :, 0, 2], image[0, :, 0, 2], rtol=0, atol=0)
    assert not torch.allclose(output[0, :, 2, 1], image[0, :, 2, 1])
    torch.testing.assert_close(output, adaptive_warp_reference(image, flow, kernel), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("batch,channels,flow_kind", [(1, 1, "mixed"), (1, 3, "smooth"), (1, 3, "mixed"),
                                                      (2, 3, "smooth"), (1, 16, "smooth")])
def test_cpu_backward_split_into_row_bands_matches_reference(threads, batch, channels, flow_kind):
    """With fewer images than threads the CPU backward splits each image's scatter into row bands
    (each later band adding into a copy of only the rows it reaches), or, with many channels, into
    channel groups."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        inputs = make_inputs(batch, channels, 19, 40, 4, flow_kind)
        grad_output = torch.randn(batch, channels, 19, 40, dtype=torch.float64)
        ours = grads(memc_ops.adaptive_warp, inputs, grad_output)
        expected = grads(adaptive_warp_reference, inputs, grad_output)
        for got, want in zip(ours, expected):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        # The same on a channels-last image, whose gradient is channels-last too.
        image = inputs[0].contiguous(memory_format=torch.channels_last)
        grad_image, _, _ = torch.ops.memc.adaptive_warp_backward(grad_output, image, *inputs[1:])
        assert grad_image.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(grad_image, expected[1], rtol=1e-10, atol=1e-10)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("height,width", [(96, 128), (7, 1200), (300, 3)])
def test_cpu_forward_and_flow_kernel_pass_give_the_same_bits_on_any_number_of_threads(height, width):
    """The forward and the flow/kernel-gradient pass hand rows out to threads in tasks from a shared
    counter (so many tasks here, with rows long and short); rows are independent, so the split
    never changes a bit."""
    image, flow, kernel = make_inputs(2, 3, height, width, 4, "inside", dtype=torch.float32)
    grad_output = torch.randn_like(image)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 5):
            torch.set_num_threads(threads)
            output = torch.ops.memc.adaptive_warp(image, flow, kernel)
            _, grad_flow, grad_kernel = torch.ops.memc.adaptive_warp_backward(
                grad_output, image, flow, kernel, [False, True, True])
            results.append((output, grad_flow, grad_kernel))
    finally:
        torch.set_num_threads(previous)
    for result in results[1:]:
        for got, want in zip(result, results[0]):
            assert torch.equal(got, want)
    assert (results[0][2] != 0).double().mean() > 0.2  # not vacuous: many windows are warped


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kernel_size", [4, 6])
@pytest.mark.parametrize("batch,channels,flow_kind,dtype,layout", [
    (2, 3, "smooth", torch.float32, "contiguous"), (1, 3, "mixed", torch.float32, "contiguous"),
    (1, 16, "smooth", torch.float32, "contiguous"), (2, 3, "smooth", torch.float32, "sliced"),
    (2, 3, "smooth", torch.float16, "contiguous"), (1, 5, "smooth", torch.float32, "channels_last"),
    (2, 3, "mixed", torch.float64, "contiguous"),
])
def test_cpu_flow_and_kernel_gradients_computed_with_the_scatter_have_the_same_bits(
        threads, kernel_size, batch, channels, flow_kind, dtype, layout):
    """Where the CPU backward scatters the image gradient with one task per row (no channel groups),
    that task also computes the row's flow and kernel gradients; asked for without the image's
    (or with channel groups: many channels, fewer images than threads) they come from a pass of
    their own. Both give the same bits, and the image gradient is the same either way."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        image, flow, kernel = make_inputs(batch, channels, 19, 45, kernel_size, flow_kind, dtype=torch.float32)
        flow[:, :, 4, 7:9] = float("nan")
        grad_output = torch.randn_like(image)
        tensors = _laid_out([t.to(dtype) for t in (grad_output, image, flow, kernel)], layout)
        grad_image, grad_flow, grad_kernel = torch.ops.memc.adaptive_warp_backward(*tensors)
        _, alone_flow, alone_kernel = torch.ops.memc.adaptive_warp_backward(*tensors, [False, True, True])
        alone_image, _, _ = torch.ops.memc.adaptive_warp_backward(*tensors, [True, False, False])
        assert torch.equal(grad_flow, alone_flow)
        assert torch.equal(grad_kernel, alone_kernel)
        assert torch.equal(grad_image, alone_image)
        # Not vacuous: many pixels are warped (a quarter of the mixed flows' pixels, most of the
        # smooth ones'), and their gradients are not zero.
        assert (grad_kernel != 0).double().mean() > 0.2 and (grad_flow != 0).double().mean() > 0.2
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("threads", [3, 4])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_cpu_backward_row_bands_reach_the_row_that_rounding_lands_on(threads, memory_format):
    """In float32, y + f_y rounds to y for a tiny negative f_y, so a window starts one row below
    where y + floor(f_y) says: a middle band's copy must hold that row too (it was one row short:
    the adds landed in the next plane's rows, or past the copy's end)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        height, width = 64, 24
        image = torch.rand(1, 3, height, width).contiguous(memory_format=memory_format)
        flow = torch.zeros(1, 2, height, width)
        flow[:, 1] = -1e-6
        kernel = torch.rand(1, 16, height, width)
        # That row's taps have bilinear weight 0: an infinite output gradient in one column of the
        # first plane makes them NaN, which shows where they land.
        grad_output = torch.randn(1, 3, height, width)
        grad_output[:, 0, :, 5] = float("inf")
        grad_image, _, _ = torch.ops.memc.adaptive_warp_backward(grad_output, image, flow, kernel)
        image_ref = image.detach().clone().requires_grad_()
        adaptive_warp_reference(image_ref, flow, kernel).backward(grad_output)
        assert torch.equal(grad_image.isnan(), image_ref.grad.isnan())
        torch.testing.assert_close(grad_image, image_ref.grad, rtol=1e-5, atol=1e-5, equal_nan=True)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("argument", ["image", "flow", "kernel"])
def test_non_tensor_arguments_are_rejected_naming_the_argument(argument):
    inputs = {"image": torch.zeros(1, 3, 4, 4), "flow": torch.zeros(1, 2, 4, 4), "kernel": torch.zeros(1, 16, 4, 4)}
    shapes = {"image": "(B, C, H, W)", "flow": "(B, 2, H, W)", "kernel": "(B, K*K, H, W)"}
    expected = f"adaptive_warp: {argument} must be a torch.Tensor of shape {shapes[argument]}; got"
    with pytest.raises(TypeError) as error:
        memc_ops.adaptive_warp(**{**inputs, argument: None})
    assert str(error.value) == f"{expected} None"
    with pytest.raises(TypeError) as error:
        memc_ops.adaptive_warp(**{**inputs, argument: inputs[argument].numpy()})
    assert str(error.value) == f"{expected} numpy.ndarray (convert it with torch.from_numpy)"


def test_tensors_on_different_devices_are_rejected_naming_the_devices():
    """A 'meta' tensor among CPU tensors would select the fake kernel and return an uninitialised
    CPU tensor; the wrapper refuses before calling the op."""
    image, flow, kernel = torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4), torch.zeros(1, 16, 4, 4)
    with pytest.raises(RuntimeError) as error:
        memc_ops.adaptive_warp(image, flow, kernel.to("meta"))
    assert str(error.value) == "adaptive_warp: kernel must be on the device of image (cpu); got meta"
    with pytest.raises(RuntimeError) as error:
        memc_ops.adaptive_warp(image.to("meta"), flow, kernel)
    assert str(error.value) == "adaptive_warp: flow must be on the device of image (meta); got cpu"
    # All on 'meta' is shape propagation, as torch.compile uses it.
    output = memc_ops.adaptive_warp(image.to("meta"), flow.to("meta"), kernel.to("meta"))
    assert output.device.type == "meta" and output.shape == (1, 3, 4, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("wanted", [(False, True, True), (True, False, False), (False, True, False),
                                    (False, False, True), (True, True, False), (True, False, True),
                                    (True, True, True), (False, False, False)],
                         ids=lambda w: "".join("ifk"[i] if w[i] else "-" for i in range(3)))
def test_backward_computes_only_the_gradients_asked_for(wanted, dtype, device):
    """output_mask (image, flow, kernel): gradients not asked for come back as None, as from ATen's
    backward ops; the others are exactly those of the full backward (the flow and kernel gradients
    share a pass that computes and writes only those asked for)."""
    image, flow, kernel = make_inputs(2, 3, 7, 21, 4, "mixed", dtype=torch.float32, device=device)
    flow[:, :, 0, :3] = float("nan")
    image, flow, kernel = (t.to(dtype) for t in (image, flow, kernel))
    grad_output = torch.randn_like(image)
    full = torch.ops.memc.adaptive_warp_backward(grad_output, image, flow, kernel)
    masked = torch.ops.memc.adaptive_warp_backward(grad_output, image, flow, kernel, list(wanted))
    for name, want, got, expected in zip(["image", "flow", "kernel"], wanted, masked, full):
        if want:
            assert torch.equal(got, expected), name
        else:
            assert got is None, name


@pytest.mark.parametrize("needs_grad", [(False, True, True), (True, False, True), (True, True, False),
                                        (False, False, True)], ids=lambda w: "".join("ifk"[i] if w[i] else "-" for i in range(3)))
def test_autograd_asks_only_for_the_gradients_of_inputs_that_need_them(needs_grad, device):
    inputs = make_inputs(2, 3, 7, 13, 4, "mixed", device=device)
    grad_output = torch.randn_like(inputs[0])
    expected = grads(adaptive_warp_reference, inputs, grad_output)[1:]
    leaves = [t.detach().clone().requires_grad_(needs) for t, needs in zip(inputs, needs_grad)]
    memc_ops.adaptive_warp(*leaves).backward(grad_output)
    for name, leaf, needs, want in zip(["image", "flow", "kernel"], leaves, needs_grad, expected):
        if needs:
            torch.testing.assert_close(leaf.grad, want, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")
        else:
            assert leaf.grad is None, name


def test_opcheck_with_gradients_masked(device):
    image, flow, kernel = make_inputs(2, 3, 7, 13, 4, "mixed", dtype=torch.float32, device=device)
    grad_output = torch.randn_like(image)
    for mask in ([False, True, True], [True, False, False], [False, True, False], [False, False, True],
                 [False, False, False]):
        torch.library.opcheck(torch.ops.memc.adaptive_warp_backward.default, (grad_output, image, flow, kernel, mask))


def test_images_without_channels(device):
    """C = 0 with pixels: an empty output and image gradient, zero flow and kernel gradients."""
    image, flow, kernel = make_inputs(2, 0, 5, 6, 4, "mixed", dtype=torch.float32, device=device, requires_grad=True)
    output = memc_ops.adaptive_warp(image, flow, kernel)
    assert output.shape == (2, 0, 5, 6)
    (output.sum() + (flow * 0).sum() + (kernel * 0).sum()).backward()
    grad_image, grad_flow, grad_kernel = torch.ops.memc.adaptive_warp_backward(
        torch.zeros_like(image), image.detach(), flow.detach(), kernel.detach())
    assert grad_image.shape == (2, 0, 5, 6)
    assert torch.equal(grad_flow, torch.zeros_like(flow)) and torch.equal(grad_kernel, torch.zeros_like(kernel))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_image_gradient_follows_the_memory_format_of_the_image(dtype, device):
    image, flow, kernel = make_inputs(2, 5, 6, 9, 4, "mixed", dtype=dtype, device=device)
    channels_last = image.contiguous(memory_format=torch.channels_last)
    for given, memory_format in ((image, torch.contiguous_format), (channels_last, torch.channels_last)):
        grad_image, _, _ = torch.ops.memc.adaptive_warp_backward(torch.ones_like(image), given, flow, kernel)
        assert grad_image.is_contiguous(memory_format=memory_format), memory_format
        reference, _, _ = torch.ops.memc.adaptive_warp_backward(torch.ones_like(image), image, flow, kernel)
        assert torch.equal(grad_image, reference)


def _loadable_vectors(flow, kernel_size, lanes, steps):
    """The share of runs of `lanes` pixels (x = 0, lanes, 2 lanes, ...; whole runs only) whose taps
    the CPU kernels load rather than gather: every pixel warped, no tap clamped to the border, the
    windows the same up to one row or column (none when not `steps`, as for the image gradient)."""
    batch, _, height, width = flow.shape
    flow = flow.double()
    ys = torch.arange(height, dtype=torch.float64).view(height, 1)
    xs = torch.arange(width, dtype=torch.float64).view(1, width)
    target_x, target_y = xs + flow[:, 0], ys + flow[:, 1]
    valid = ((target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
             & (flow[:, 0].abs() < width / 2) & (flow[:, 1].abs() < height / 2))
    shift_x, floor_y = target_x.floor() - xs, target_y.floor()
    runs = width // lanes
    cut = lambda t: t[..., :runs * lanes].reshape(batch, height, runs, lanes)  # noqa: E731
    valid, shift_x, floor_y = cut(valid), cut(shift_x), cut(floor_y)
    spread = 1 if steps else 0
    x0 = torch.arange(runs, dtype=torch.float64).view(1, 1, runs) * lanes
    half = kernel_size // 2
    shift_x = shift_x.nan_to_num(0)
    floor_y = floor_y.nan_to_num(0)
    loadable = (valid.all(-1)
                & (shift_x.amax(-1) - shift_x.amin(-1) <= spread) & (floor_y.amax(-1) - floor_y.amin(-1) <= spread)
                & (x0 + shift_x.amin(-1) + 1 - half >= 0) & (x0 + lanes - 1 + shift_x.amax(-1) + half <= width - 1)
                & (floor_y.amin(-1) + 1 - half >= 0) & (floor_y.amax(-1) + half <= height - 1))
    return loadable.double().mean().item()


@pytest.mark.parametrize("kernel_size", [2, 4, 6, 8])
@pytest.mark.parametrize("dtype,layout", [(torch.float32, "contiguous"), (torch.float64, "contiguous"),
                                          (torch.float16, "contiguous"), (torch.bfloat16, "sliced"),
                                          (torch.float32, "channels_last"), (torch.float32, "sliced")])
def test_cpu_loaded_taps_give_the_bits_of_gathered_taps(dtype, layout, kernel_size):
    """The CPU kernels load the taps of a vector of pixels whose windows are the same up to one
    step (smooth flow), and gather them otherwise; for the image gradient they add a vector of
    pixels' taps with vector adds where the windows have no step, in the order of the pixel-by-pixel
    scatter. A pixel's output and flow and kernel gradients depend only on its own flow and kernel,
    so turning some pixels invalid (NaN flow) and their gradient to zero, which moves their
    neighbours' vectors from loads to gathers and scalar adds, must leave every other pixel's
    results, and the image gradient, the same to the bit."""
    batch, channels, height, width = 2, 3, 13, 61  # odd width: full vectors and a tail
    image, flow, kernel = make_inputs(batch, channels, height, width, kernel_size, "smooth", dtype=torch.float32)
    grad_output = torch.randn_like(image)
    generator = torch.Generator().manual_seed(kernel_size)
    broken = torch.zeros(batch, 1, height, width, dtype=torch.bool)
    for n in range(batch):
        for y in range(0, height, 2):
            broken[n, 0, y, torch.randint(width, (1,), generator=generator)] = True
    inputs = _laid_out([t.to(dtype) for t in (grad_output, image, flow, kernel)], layout)
    inputs[0] = inputs[0].masked_fill(broken, 0)
    perturbed = list(inputs)
    perturbed[2] = inputs[2].masked_fill(broken, float("nan"))
    results = []
    for grad_output, image, flow, kernel in (inputs, perturbed):
        results.append((memc_ops.adaptive_warp(image, flow, kernel),
                        *torch.ops.memc.adaptive_warp_backward(grad_output, image, flow, kernel)))
    (output, grad_image, grad_flow, grad_kernel), (output2, grad_image2, grad_flow2, grad_kernel2) = results
    kept = ~broken
    assert torch.equal(output.masked_select(kept), output2.masked_select(kept))
    assert torch.equal(grad_flow.masked_select(kept), grad_flow2.masked_select(kept))
    assert torch.equal(grad_kernel.masked_select(kept), grad_kernel2.masked_select(kept))
    assert torch.equal(grad_image, grad_image2)
    # Not vacuous: the smooth flow warps where it points inside, and where the image's rows have
    # stride 1 some vectors of 8 and 16 float32 pixels (AVX2, AVX-512; 4 and 8 for float64) load
    # their taps, with steps in both runs and without steps in the first.
    assert not torch.equal(output[:, :, 5:], image[:, :, 5:])
    for lanes in (4, 8, 16):
        assert _loadable_vectors(perturbed[2], kernel_size, lanes, steps=True) > 0.1
        assert _loadable_vectors(inputs[2], kernel_size, lanes, steps=False) > 0


# ------------------------------------------------------------------------------------------------
# The CPU kernels are compiled once per CPU capability (csrc/cpu/capability.h); ATen picks the
# capability once per process, from the CPU or the environment variable ATEN_CPU_CAPABILITY, so
# each is run in a child process.

def _capability_cases():
    """Inputs for every dtype, layout and kernel size, with NaN flows, flows beyond the frame,
    targets on the border and row ends that fill part of a vector. Made here, not in the child
    processes: ATen's random generators give other numbers under other capabilities."""
    cases = []
    for dtype, b, c, h, w, k, layout in [
        (torch.float32, 2, 3, 9, 37, 4, "contiguous"), (torch.float32, 1, 5, 8, 21, 4, "channels_last"),
        (torch.float32, 1, 2, 7, 40, 2, "sliced"), (torch.float32, 1, 2, 6, 19, 6, "contiguous"),
        (torch.float32, 1, 1, 9, 17, 8, "contiguous"), (torch.float64, 2, 3, 7, 23, 4, "contiguous"),
        (torch.float16, 2, 3, 9, 37, 4, "contiguous"), (torch.bfloat16, 1, 4, 8, 33, 4, "channels_last"),
        (torch.bfloat16, 2, 3, 9, 37, 4, "contiguous"), (torch.float16, 1, 2, 7, 40, 4, "sliced"),
    ]:
        image, flow, kernel = make_inputs(b, c, h, w, k, "mixed")
        flow[torch.rand_like(flow) < 0.05] = float("nan")
        cases.append(_capability_case(dtype, image, flow, kernel, layout))
    # Smooth flows, whose taps are loaded where whole vectors' windows allow (8 or 16 pixels).
    for dtype, b, c, h, w, k, layout in [
        (torch.float32, 2, 3, 12, 77, 4, "contiguous"), (torch.float32, 1, 5, 12, 64, 6, "contiguous"),
        (torch.float32, 1, 2, 10, 50, 2, "contiguous"), (torch.float64, 1, 3, 9, 53, 4, "contiguous"),
        (torch.float16, 2, 3, 12, 77, 4, "contiguous"), (torch.bfloat16, 1, 3, 12, 53, 8, "sliced"),
    ]:
        image, flow, kernel = make_inputs(b, c, h, w, k, "smooth")
        flow[:, :, 5, 20] = float("nan")
        cases.append(_capability_case(dtype, image, flow, kernel, layout))
    return cases


def _capability_case(dtype, image, flow, kernel, layout):
    """(grad_output, image, flow, kernel) in dtype and layout, with targets on the last column and row."""
    height, width = image.shape[2:]
    flow[:, 0, 0, 0], flow[:, 1, 0, 1] = width - 1.0, height - 1.0
    tensors = [t.to(dtype) for t in (torch.randn_like(image), image, flow, kernel)]
    return _laid_out(tensors, layout)


_CAPABILITY_WORKER = r"""
import sys, torch, memc_ops
torch.set_num_threads(2)
results = {"capability": torch.backends.cpu.get_cpu_capability(), "cases": []}
for grad_output, image, flow, kernel in torch.load(sys.argv[1]):
    results["cases"].append((torch.ops.memc.adaptive_warp(image, flow, kernel),
                             *torch.ops.memc.adaptive_warp_backward(grad_output, image, flow, kernel)))
torch.save(results, sys.argv[2])
"""


def _run_with_capability(capability, cases_path, results_path):
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    subprocess.run([sys.executable, "-c", _CAPABILITY_WORKER, str(cases_path), str(results_path)], env=env,
                   check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(memc_ops.__file__))))
    return torch.load(results_path)


def test_every_cpu_capability_gives_the_same_bits(tmp_path):
    """The vectorised kernels compute the per-pixel formulas lane by lane, in the same order and
    with no fused multiply-add, so DEFAULT (plain scalar code), AVX2 and AVX-512 agree bit for bit:
    outputs and the three gradients."""
    torch.save(_capability_cases(), tmp_path / "cases.pt")
    results = {name: _run_with_capability(name, tmp_path / "cases.pt", tmp_path / f"{name}.pt")
               for name in ("default", "avx2", "avx512")}
    assert results["default"]["capability"] in ("DEFAULT", "NO AVX")
    reference = results["default"]["cases"]
    for name in ("avx2", "avx512"):
        ran = results[name]["capability"]
        if ran != name.upper():
            pytest.skip(f"this CPU cannot run {name} (ATen chose {ran})")
        for case, (ours, expected) in enumerate(zip(results[name]["cases"], reference)):
            for what, got, want in zip(["output", "grad image", "grad flow", "grad kernel"], ours, expected):
                assert torch.equal(got, want), f"{name}, case {case}: {what} differs from DEFAULT"


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_only_the_capability_kernels_use_avx_instructions():
    """One build runs on any x86-64 CPU: AVX2 and AVX-512 instructions appear only in functions of
    the AVX2 and AVX512 namespaces (chosen at run time), none in code every CPU runs, such as an
    inline function of c10 that a capability's translation unit emitted; the AVX512 kernels do use
    the 512-bit zmm registers."""
    library = memc_ops._C.__file__
    if not library.endswith(".so") or os.uname().machine != "x86_64":
        pytest.skip("checks an x86-64 ELF build")
    listing = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", library], capture_output=True, text=True,
                             check=True).stdout
    function, leaks, avx512_kernels = None, {}, set()
    for line in listing.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            function = header.group(1)
            continue
        if function is None or "\t" not in line:
            continue
        instruction = line.split("\t")[-1].strip()
        uses_avx = instruction.startswith("v") or "%ymm" in instruction or "%zmm" in instruction
        if uses_avx and "AVX2::" not in function and "AVX512::" not in function:
            leaks.setdefault(function, instruction)
        if "%zmm" in instruction and function.startswith(("void memc::AVX512::", "memc::AVX512::")):
            avx512_kernels.add(function)
    assert not leaks, f"AVX instructions outside the capability kernels: {list(leaks.items())[:5]}"
    assert any("forward_rows" in name for name in avx512_kernels)
    assert any("kernel_flow_grad_rows" in name for name in avx512_kernels)


def test_gradients_of_gradients_are_an_error_not_a_silent_zero(device):
    """The first gradient may be taken with create_graph=True (it equals the plain one); a
    backward through it raises instead of treating the backward op as a constant."""
    inputs = [t.requires_grad_() for t in make_inputs(1, 3, 6, 7, 4, "inside", device=device)]
    plain = torch.autograd.grad(memc_ops.adaptive_warp(*inputs).sum(), inputs)
    with_graph = torch.autograd.grad(memc_ops.adaptive_warp(*inputs).sum(), inputs, create_graph=True)
    for first, second in zip(plain, with_graph):
        torch.testing.assert_close(first, second.detach())
    with pytest.raises(RuntimeError, match="memc::adaptive_warp_backward is not implemented"):
        sum(grad.sum() for grad in with_graph).backward()
