"""The adaptive warping op: its definition (against the pure-PyTorch reference), its gradients,
its dtypes and layouts, its registration, and its errors."""

import math

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
    elif flow_kind == "nan":
        flow = torch.randn(batch, 2, height, width, dtype=dtype, device=device)
        flow[torch.rand_like(flow) < 0.3] = float("nan")
    else:
        raise ValueError(flow_kind)
    tensors = (image, flow, kernel)
    return tuple(t.requires_grad_(requires_grad) for t in tensors)


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


def test_cpu_backward_split_into_row_bands_matches_reference():
    """With fewer (batch, channel) planes than threads the CPU backward cuts planes into row bands."""
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        inputs = make_inputs(1, 1, 9, 12, 4, "mixed")
        grad_output = torch.randn(1, 1, 9, 12, dtype=torch.float64)
        ours = grads(memc_ops.adaptive_warp, inputs, grad_output)
        expected = grads(adaptive_warp_reference, inputs, grad_output)
        for got, want in zip(ours, expected):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    finally:
        torch.set_num_threads(threads)


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
