"""The bicubic warp op: adaptive_warp with the bicubic kernel computed inside the op. Its values
(against adaptive_warp with that kernel and the pure-PyTorch reference), gradients, dtypes,
layouts, edge cases, registration and errors."""

import os
import subprocess
import sys

import pytest
import torch

import memc_ops
from memc_ops.reference import bicubic_warp_reference


def make_flow(batch, height, width, kind, dtype=torch.float64, device="cpu"):
    scale = torch.tensor([width, height], dtype=dtype, device=device).view(1, 2, 1, 1)
    shape = (batch, 2, height, width)
    if kind == "zero":
        return torch.zeros(shape, dtype=dtype, device=device)
    if kind == "integer":  # whole pixels, both signs: fractions exactly 0
        return torch.randint(-3, 4, shape, device=device).to(dtype)
    if kind == "fractional":  # small motions, mostly landing in the frame
        return torch.randn(shape, dtype=dtype, device=device) * 1.5
    if kind == "negative":  # up and to the left, fractional
        return -torch.rand(shape, dtype=dtype, device=device) * 3
    if kind == "mixed":  # inside, across the border and beyond the half-size limit
        return (torch.rand(shape, dtype=dtype, device=device) - 0.5) * 1.4 * scale
    if kind == "outside":  # everything leaves the frame
        return torch.ones(shape, dtype=dtype, device=device) * (scale + 3)
    if kind == "border":  # targets exactly on the last row and column, or the first
        ys = torch.arange(height, dtype=dtype, device=device).view(1, height, 1).expand(batch, height, width)
        xs = torch.arange(width, dtype=dtype, device=device).view(1, 1, width).expand(batch, height, width)
        to_last = torch.stack([width - 1 - xs, height - 1 - ys], 1)
        pick = torch.rand(batch, 1, height, width, device=device) < 0.5
        return torch.where(pick, to_last, torch.stack([-xs, -ys], 1))
    if kind in ("steady", "stepped", "smooth"):
        return _slow_flow(batch, height, width, kind).to(dtype=dtype, device=device)
    if kind == "nan":
        flow = torch.randn(shape, dtype=dtype, device=device)
        flow[torch.rand_like(flow) < 0.3] = float("nan")
        flow[0, 0, 0, 0] = float("inf")
        return flow
    raise ValueError(kind)


def _slow_flow(batch, height, width, kind):
    """Slow motion, as between video frames, for the CPU kernel's loaded taps: where a vector of
    pixels (4 to 16 lanes) has every window inside the frame and the same up to one step of a row
    or column, it loads its taps instead of gathering them.
      steady: one fractional motion everywhere: vectors load their taps with no step (those whose
        windows reach past the border gather theirs).
      stepped: whole-pixel steps of the motion every 5 columns in x and every 7 in y: vectors load
        their taps with steps of one row and one column between lanes.
      smooth: motion varying by a pixel over some 16 columns, its rows 2 and 3 pointing out of the
        frame: loads with and without steps, and gathers where the steps are larger."""
    ys = torch.arange(height, dtype=torch.float64).view(height, 1)
    xs = torch.arange(width, dtype=torch.float64).view(1, width) + 11 * torch.arange(batch).view(batch, 1, 1)
    if kind == "steady":
        flow_x, flow_y = 0.3 + 0 * xs + 0 * ys, -0.6 + 0 * xs + 0 * ys
    elif kind == "stepped":
        flow_x, flow_y = 0.4 + (xs // 5 % 2) + 0 * ys, -0.3 - (xs // 7 % 2) + 0 * ys
    else:
        flow_x = 2.5 * torch.sin(xs / 40 + ys / 5) + 0.3
        flow_y = 1.7 * torch.cos(xs / 50 - ys / 4) - 0.2
    flow = torch.stack([flow_x, flow_y], 1)
    if kind == "smooth":
        flow[:, :, 2:4] *= max(height, width)
    return flow


def make_inputs(batch, channels, height, width, kind, dtype=torch.float64, device="cpu"):
    image = torch.randn(batch, channels, height, width, dtype=dtype, device=device)
    return image, make_flow(batch, height, width, kind, dtype, device)


def grads(fn, inputs, grad_output):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    output = fn(*inputs)
    return (output, *torch.autograd.grad(output, inputs, grad_output))


FLOWS = ["zero", "integer", "fractional", "negative", "mixed", "outside", "border", "nan"]
SIZES = [(2, 3, 7, 13), (1, 1, 1, 1), (1, 2, 1, 9), (1, 2, 9, 1), (3, 5, 16, 20), (1, 3, 33, 70)]


@pytest.mark.parametrize("kind", FLOWS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_adaptive_warp_with_the_bicubic_kernel(kind, size, dtype, device):
    image, flow = make_inputs(*size, kind, dtype=dtype, device=device)
    expected = memc_ops.adaptive_warp(image, flow, memc_ops.bicubic_kernel(flow))
    # The same function summed in another order (per row, then over the rows): equal up to rounding.
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(memc_ops.bicubic_warp(image, flow), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("kind", ["fractional", "mixed", "border", "nan", "integer"])
def test_forward_and_backward_match_reference(kind, device):
    image, flow = make_inputs(2, 3, 8, 11, kind, device=device)
    grad_output = torch.randn_like(image)
    ours = grads(memc_ops.bicubic_warp, (image, flow), grad_output)
    expected = grads(bicubic_warp_reference, (image, flow), grad_output)
    for name, got, want in zip(["output", "grad image", "grad flow"], ours, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")


def test_is_keys_bicubic_on_one_pixel():
    """One pixel by hand: Keys' cubic (a = -0.5) at the distances of the 4 x 4 window's samples."""
    def keys(d):
        d = abs(d)
        return 1.5 * d**3 - 2.5 * d**2 + 1 if d <= 1 else -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2

    image = torch.arange(6 * 7, dtype=torch.float64).view(1, 1, 6, 7) ** 1.3
    flow = torch.zeros(1, 2, 6, 7, dtype=torch.float64)
    y, x = 2, 3
    flow[0, 0, y, x], flow[0, 1, y, x] = -0.7, 0.4  # target (2.3, 2.4)
    expected = sum(keys(row - 2.4) * keys(col - 2.3) * image[0, 0, row, col].item()
                   for row in range(1, 5) for col in range(1, 5))
    assert memc_ops.bicubic_warp(image, flow)[0, 0, y, x].item() == pytest.approx(expected, rel=1e-12)


def test_invalid_pixels_copy_the_input_and_pass_gradient_through(device):
    image, flow = make_inputs(1, 3, 6, 8, "outside", device=device)
    image.requires_grad_(True)
    flow.requires_grad_(True)
    output = memc_ops.bicubic_warp(image, flow)
    assert torch.equal(output, image)
    output.sum().backward()
    assert torch.equal(image.grad, torch.ones_like(image))
    assert torch.equal(flow.grad, torch.zeros_like(flow))


def test_integer_flows_shift_the_image_exactly(device):
    image = torch.randn(1, 2, 8, 9, dtype=torch.float32, device=device)
    flow = torch.zeros(1, 2, 8, 9, device=device)
    flow[:, 0], flow[:, 1] = -1.0, 2.0  # output(y, x) = image(y + 2, x - 1)
    output = memc_ops.bicubic_warp(image, flow)
    assert torch.equal(output[:, :, :6, 1:], image[:, :, 2:, :-1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed, device):
    torch.manual_seed(seed)
    image, flow = make_inputs(2, 2, 6, 8, "mixed", device=device)
    flow = flow.floor() + 0.1 + 0.8 * torch.rand_like(flow)  # away from the window's steps
    inputs = (image.requires_grad_(True), flow.requires_grad_(True))
    assert torch.autograd.gradcheck(memc_ops.bicubic_warp, inputs)


def test_gradcheck_non_contiguous(device):
    image, flow = make_inputs(2, 2, 8, 6, "fractional", device=device)
    flow = flow.floor() + 0.1 + 0.8 * torch.rand_like(flow)
    inputs = tuple(t.transpose(2, 3).requires_grad_(True) for t in (image, flow))
    assert not inputs[0].is_contiguous()
    assert torch.autograd.gradcheck(memc_ops.bicubic_warp, inputs)


def _laid_out(tensors, layout):
    if layout == "channels_last":
        return [t.contiguous(memory_format=torch.channels_last) for t in tensors]
    if layout == "sliced":  # rows with a stride of 2
        return [torch.cat([t, t], dim=3)[..., ::2] for t in tensors]
    if layout == "transposed":
        return [t.transpose(2, 3).contiguous().transpose(2, 3) for t in tensors]
    if layout == "padded":  # stride 1 along x, rows longer than the image (a crop of a wider one)
        return [torch.cat([t, t[..., :3]], dim=3)[..., :t.shape[3]] for t in tensors]
    return [tensors[0], tensors[1][:1].expand_as(tensors[1])]  # one flow for the batch, stride 0


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "transposed", "expanded_flow"])
def test_layouts_give_the_bits_of_contiguous(layout, device):
    image, flow = make_inputs(2, 5, 9, 12, "mixed", dtype=torch.float32, device=device)
    image.requires_grad_(True)
    flow.requires_grad_(True)
    strided = _laid_out((image, flow), layout)
    contiguous = [t.contiguous() for t in strided]
    assert not all(t.is_contiguous() for t in strided)
    output = memc_ops.bicubic_warp(*strided)
    expected = memc_ops.bicubic_warp(*contiguous)
    assert torch.equal(output, expected)
    grad_output = torch.randn_like(output)
    ours = torch.autograd.grad(output, (image, flow), grad_output)
    reference = torch.autograd.grad(expected, (image, flow), grad_output)
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got, want)


def test_output_has_the_memory_format_of_the_image(device):
    image, flow = make_inputs(2, 3, 5, 6, "mixed", dtype=torch.float32, device=device)
    output = memc_ops.bicubic_warp(image.contiguous(memory_format=torch.channels_last), flow)
    assert output.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_float32_rounded_once(dtype, device):
    image, flow = make_inputs(2, 3, 9, 45, "mixed", dtype=torch.float32, device=device)
    flow[:, :, 0, :5] = float("nan")
    low = [t.to(dtype) for t in (image, flow)]
    output = memc_ops.bicubic_warp(*low)
    expected = memc_ops.bicubic_warp(*(t.float() for t in low)).to(dtype)
    assert output.dtype == dtype
    if device.type == "cuda":  # nvcc may fuse multiplies and adds differently per dtype
        torch.testing.assert_close(output, expected)
    else:
        assert torch.equal(output, expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gradients_close_to_float32(dtype, device):
    image, flow = make_inputs(2, 3, 16, 20, "fractional", dtype=torch.float32, device=device)
    low = [t.to(dtype) for t in (image, flow)]
    grad_output = torch.randn(2, 3, 16, 20, device=device)
    ours = grads(memc_ops.bicubic_warp, low, grad_output.to(dtype))
    expected = grads(memc_ops.bicubic_warp, [t.float() for t in low], grad_output)
    tolerance = 1e-2 if dtype == torch.float16 else 5e-2
    for name, got, want in zip(["output", "grad image", "grad flow"], ours, expected):
        assert got.dtype == dtype, name
        assert (got.float() - want).abs().max() <= tolerance * want.abs().max().clamp_min(1), name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_flow_gradient_is_float32_rounded_once_on_a_smooth_image(dtype, device):
    # On a smooth image the flow gradient is a small difference of two large parts (the kernel
    # held fixed, and the kernel's own dependence on the flow): computed in float32 and rounded
    # once, it keeps the half type's relative precision at every pixel.
    height, width = 16, 20
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    image = torch.stack((0.03 * xs, 0.02 * ys, 0.01 * (xs + ys))).unsqueeze(0).float().to(dtype)
    flow = make_flow(1, height, width, "fractional", torch.float32, device).to(dtype)
    grad_output = torch.ones(1, 3, height, width, device=device, dtype=dtype)
    _, _, ours = grads(memc_ops.bicubic_warp, [image, flow], grad_output)
    _, _, expected = grads(memc_ops.bicubic_warp, [image.float(), flow.float()], grad_output.float())
    half_ulp = torch.finfo(dtype).eps / 2
    assert ((ours.float() - expected).abs() <= half_ulp * expected.abs() + 1e-7).all()


def test_bicubic_kernel_is_the_kernel_the_op_applies():
    flow = make_flow(2, 7, 9, "mixed", torch.float32)
    kernel = memc_ops.bicubic_kernel(flow)
    assert kernel.shape == (2, 16, 7, 9) and kernel.dtype == torch.float32
    # Each pixel's 16 coefficients times adaptive_warp's bilinear factors sum to 1 (Keys' weights do).
    a = torch.stack((flow[:, 0] + torch.arange(9.0), flow[:, 1] + torch.arange(7.0).view(7, 1)), 1).remainder(1.0)
    factor = [1 - a, 1 - a, a, a]
    taps = kernel.view(2, 4, 4, 7, 9)
    total = sum(taps[:, r, c] * factor[r][:, 1] * factor[c][:, 0] for r in range(4) for c in range(4))
    torch.testing.assert_close(total, torch.ones_like(total))
    assert memc_ops.bicubic_kernel(flow.half()).dtype == torch.float16


@pytest.mark.parametrize("flow, error, message", [
    (torch.zeros(2, 7, 9), ValueError, r"bicubic_kernel: flow must have shape \(B, 2, H, W\); got \(2, 7, 9\)"),
    (torch.zeros(1, 3, 7, 9), ValueError, r"bicubic_kernel: flow must have shape \(B, 2, H, W\); got \(1, 3, 7, 9\)"),
    (torch.zeros(1, 2, 7, 9, dtype=torch.long), ValueError, "bicubic_kernel: flow must be a floating-point tensor"),
    ([[0.0]], TypeError, "bicubic_kernel: flow must be a torch.Tensor"),
])
def test_bicubic_kernel_rejects_bad_flows(flow, error, message):
    with pytest.raises(error, match=message):
        memc_ops.bicubic_kernel(flow)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4), (1, 3, 1, 1)])
def test_edge_shapes(shape, device):
    image = torch.randn(shape, device=device, requires_grad=True)
    flow = torch.full((shape[0], 2, *shape[2:]), 0.25, device=device, requires_grad=True)
    output = memc_ops.bicubic_warp(image, flow)
    assert output.shape == shape
    # Empty tensors, and a 1 x 1 frame: every flow of at least half its size copies the pixel.
    assert torch.equal(output, image)
    output.sum().backward()
    assert image.grad.shape == shape and flow.grad.shape == flow.shape
    assert torch.equal(flow.grad, torch.zeros_like(flow))


def test_opcheck(device):
    samples = [
        make_inputs(2, 3, 7, 13, "mixed", dtype=torch.float32, device=device),
        make_inputs(1, 2, 5, 6, "nan", dtype=torch.float32, device=device),
        tuple(t.requires_grad_(True) for t in make_inputs(1, 1, 5, 6, "fractional", device=device)),
        tuple(t.requires_grad_(True) for t in make_inputs(2, 4, 6, 8, "mixed", dtype=torch.float32, device=device)),
    ]
    for sample in samples:
        torch.library.opcheck(torch.ops.memc.bicubic_warp.default, sample)


def test_torch_compile(device):
    torch._dynamo.reset()

    def warp_and_blend(image, flow):
        return 0.5 * memc_ops.bicubic_warp(image, flow) + 0.5 * image

    compiled = torch.compile(warp_and_blend, fullgraph=True, backend="aot_eager")
    inputs = make_inputs(2, 3, 8, 8, "mixed", dtype=torch.float32, device=device)
    grad_output = torch.randn(2, 3, 8, 8, device=device)
    for got, want in zip(grads(compiled, inputs, grad_output), grads(warp_and_blend, inputs, grad_output)):
        torch.testing.assert_close(got, want)


def test_module_wrapper(device):
    inputs = make_inputs(1, 3, 6, 6, "mixed", dtype=torch.float32, device=device)
    assert torch.equal(memc_ops.BicubicWarp()(*inputs), memc_ops.bicubic_warp(*inputs))


def test_only_the_gradients_asked_for(device):
    image, flow = make_inputs(1, 2, 5, 6, "fractional", device=device)
    output = memc_ops.bicubic_warp(image, flow.requires_grad_(True))
    output.sum().backward()
    assert image.grad is None and flow.grad is not None


BAD_SHAPES = [
    # description, (image shape, flow shape), expected fragment of the message
    ("image rank", ((3, 8, 8), (1, 2, 8, 8)), "image must be a 4-D tensor"),
    ("flow rank", ((1, 3, 8, 8), (2, 8, 8)), "flow must be a 4-D tensor"),
    ("flow channels", ((1, 3, 8, 8), (1, 3, 8, 8)), "flow must have shape (B, 2, H, W) = (1, 2, 8, 8)"),
    ("flow size", ((1, 3, 8, 8), (1, 2, 8, 7)), "flow must have shape (B, 2, H, W) = (1, 2, 8, 8)"),
    ("flow batch", ((2, 3, 8, 8), (1, 2, 8, 8)), "flow must have shape (B, 2, H, W) = (2, 2, 8, 8)"),
]


@pytest.mark.parametrize("description, shapes, message", BAD_SHAPES, ids=[b[0] for b in BAD_SHAPES])
def test_bad_shapes_are_rejected_with_a_clear_message(description, shapes, message):
    image, flow = (torch.zeros(shape) for shape in shapes)
    with pytest.raises(ValueError, match="bicubic_warp: " + message.replace("(", r"\(").replace(")", r"\)")):
        memc_ops.bicubic_warp(image, flow)


def test_integer_and_mixed_dtypes_are_rejected():
    image, flow = torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="image must be float32, float64, float16 or bfloat16; got Long"):
        memc_ops.bicubic_warp(image.long(), flow)
    with pytest.raises(ValueError, match="flow must have the dtype of image"):
        memc_ops.bicubic_warp(image, flow.double())


@pytest.mark.parametrize("argument", ["image", "flow"])
def test_non_tensor_arguments_are_rejected_naming_the_argument(argument):
    inputs = {"image": torch.zeros(1, 3, 4, 4), "flow": torch.zeros(1, 2, 4, 4)}
    inputs[argument] = inputs[argument].numpy()
    with pytest.raises(TypeError, match=f"bicubic_warp: {argument} must be a torch.Tensor .*torch.from_numpy"):
        memc_ops.bicubic_warp(**inputs)


def test_tensors_on_different_devices_are_rejected_naming_the_devices():
    with pytest.raises(RuntimeError, match=r"bicubic_warp: flow must be on the device of image \(cpu\); got meta"):
        memc_ops.bicubic_warp(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4, device="meta"))


# ------------------------------------------------------------------------------------------------
# The CPU kernel runs the formula of memc/bicubic_warp.h in SIMD lanes, one pixel per lane, with
# its operations in the scalar order and no fused multiply-add: its results are the formula's,
# computed in that order, to the bit, whichever of the CPU capabilities (csrc/cpu/capability.h)
# runs it, and whether a vector of pixels gathers its taps or loads them.

def bicubic_in_formula_order(image, flow):
    """bicubic_warp computed with PyTorch's elementwise operations (each rounded once) in the op's
    arithmetic type (float32 for the half types) and in the order of memc/bicubic_warp.h: the
    target and validity of adaptive_warp's window, cubic_weights' polynomials as factored there,
    each row's sum over its columns, then over the rows; rounded to the image's dtype once."""
    opmath = torch.float64 if image.dtype == torch.float64 else torch.float32
    batch, channels, height, width = image.shape
    pixels, flow = image.to(opmath), flow.to(opmath)
    flow_x, flow_y = flow[:, 0], flow[:, 1]
    target_x = torch.arange(width, dtype=opmath).view(1, 1, width) + flow_x
    target_y = torch.arange(height, dtype=opmath).view(1, height, 1) + flow_y
    valid = ((target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
             & (flow_x < 0.5 * width) & (flow_x > -0.5 * width) & (flow_y < 0.5 * height) & (flow_y > -0.5 * height))
    floor_x = torch.where(valid, target_x.floor(), 0)
    floor_y = torch.where(valid, target_y.floor(), 0)

    def cubic_weights(frac):
        g = 1 - frac
        half_frac_g = 0.5 * frac * g
        return [-half_frac_g * g, g * (1 + frac * (1 - 1.5 * frac)), frac * (1 + g * (1 - 1.5 * g)),
                -half_frac_g * frac]

    weight_x, weight_y = cubic_weights(target_x - floor_x), cubic_weights(target_y - floor_y)
    channels_last = pixels.permute(0, 2, 3, 1)
    n = torch.arange(batch).view(batch, 1, 1)
    total = torch.zeros(batch, height, width, channels, dtype=opmath)
    for r in range(4):
        rows = (floor_y.long() - 1 + r).clamp(0, height - 1)
        row_sum = torch.zeros_like(total)
        for c in range(4):
            cols = (floor_x.long() - 1 + c).clamp(0, width - 1)
            row_sum = row_sum + weight_x[c].unsqueeze(-1) * channels_last[n, rows, cols]
        total = total + weight_y[r].unsqueeze(-1) * row_sum
    warped = torch.where(valid.unsqueeze(-1), total, channels_last).permute(0, 3, 1, 2)
    return warped.to(image.dtype)


def test_formula_order_model_is_bicubic_warp_in_float64():
    image, flow = make_inputs(2, 3, 9, 14, "mixed")
    torch.testing.assert_close(bicubic_in_formula_order(image, flow), bicubic_warp_reference(image, flow),
                               rtol=1e-12, atol=1e-12)


CPU_FLOWS = ["steady", "stepped", "smooth", "mixed", "nan", "outside", "integer", "border", "zero"]
CPU_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Widths that leave a tail in the last vector of every lane count (4, 8, 16), and one that fills it.
# Images one pixel wide, and of one pixel, too.
CPU_SIZES = [(2, 3, 9, 37), (1, 5, 12, 64), (1, 7, 6, 21), (1, 1, 3, 3), (1, 3, 4, 1), (1, 2, 1, 1)]


def _cpu_case(size, kind, dtype, layout):
    image, flow = make_inputs(*size, kind, dtype=torch.float32)
    height, width = size[2:]
    if kind in ("smooth", "stepped"):
        flow[:, :, height // 2, width // 3] = float("nan")  # one copied pixel amid loaded vectors
    tensors = [image.to(dtype), flow.to(dtype)]
    return tensors if layout == "contiguous" else _laid_out(tensors, layout)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed", "sliced", "padded"])
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
@pytest.mark.parametrize("kind", CPU_FLOWS)
def test_cpu_kernel_is_the_formula_bit_for_bit(kind, dtype, layout):
    for size in CPU_SIZES:
        image, flow = _cpu_case(size, kind, dtype, layout)
        output = memc_ops.bicubic_warp(image, flow)
        assert torch.equal(output, bicubic_in_formula_order(image, flow)), f"size {size}"


def _capability_cases():
    """Inputs for every dtype, layout and kind of flow, made here, not in the child processes:
    ATen's random generators give other numbers under other capabilities."""
    cases = []
    for size, kind, dtype, layout in [
        ((2, 3, 9, 37), "smooth", torch.float32, "contiguous"),
        ((1, 5, 12, 64), "stepped", torch.float32, "contiguous"),
        ((1, 3, 8, 41), "steady", torch.float32, "contiguous"),
        ((2, 3, 9, 37), "mixed", torch.float32, "channels_last"),
        ((1, 2, 7, 40), "nan", torch.float32, "sliced"),
        ((1, 7, 6, 21), "smooth", torch.float32, "transposed"),
        ((2, 3, 9, 37), "smooth", torch.float64, "contiguous"),
        ((1, 4, 8, 23), "mixed", torch.float64, "channels_last"),
        ((2, 3, 9, 37), "smooth", torch.float16, "contiguous"),
        ((1, 3, 8, 33), "stepped", torch.float16, "channels_last"),
        ((2, 3, 9, 37), "smooth", torch.bfloat16, "contiguous"),
        ((1, 2, 7, 40), "nan", torch.bfloat16, "sliced"),
        ((1, 3, 6, 19), "outside", torch.float32, "contiguous"),
        ((1, 3, 6, 19), "integer", torch.float16, "contiguous"),
    ]:
        cases.append(_cpu_case(size, kind, dtype, layout))
    return cases


_CAPABILITY_WORKER = r"""
import sys, torch, memc_ops
torch.set_num_threads(2)
results = {"capability": torch.backends.cpu.get_cpu_capability(),
           "outputs": [torch.ops.memc.bicubic_warp(image, flow) for image, flow in torch.load(sys.argv[1])]}
torch.save(results, sys.argv[2])
"""


def test_every_cpu_capability_computes_the_formula_bit_for_bit(tmp_path):
    """DEFAULT (at::vec's plain scalar code), AVX2 and AVX-512, each run in a child process
    (ATen picks the capability once per process, here from ATEN_CPU_CAPABILITY)."""
    cases = _capability_cases()
    torch.save(cases, tmp_path / "cases.pt")
    root = os.path.dirname(os.path.dirname(os.path.abspath(memc_ops.__file__)))
    for name in ("default", "avx2", "avx512"):
        env = dict(os.environ, ATEN_CPU_CAPABILITY=name)
        subprocess.run([sys.executable, "-c", _CAPABILITY_WORKER, str(tmp_path / "cases.pt"),
                        str(tmp_path / f"{name}.pt")], env=env, check=True, cwd=root)
        results = torch.load(tmp_path / f"{name}.pt")
        if name == "default":
            assert results["capability"] in ("DEFAULT", "NO AVX")
        elif results["capability"] != name.upper():
            pytest.skip(f"this CPU cannot run {name} (ATen chose {results['capability']})")
        for case, ((image, flow), output) in enumerate(zip(cases, results["outputs"])):
            assert torch.equal(output, bicubic_in_formula_order(image, flow)), f"{name}, case {case}"


def test_gradients_of_gradients_are_an_error_not_a_silent_zero(device):
    image, flow = (t.requires_grad_() for t in make_inputs(1, 3, 6, 7, "fractional", device=device))
    grad_flow, = torch.autograd.grad(memc_ops.bicubic_warp(image, flow).sum(), flow, create_graph=True)
    with pytest.raises(RuntimeError, match="memc::adaptive_warp_backward is not implemented"):
        grad_flow.sum().backward()
