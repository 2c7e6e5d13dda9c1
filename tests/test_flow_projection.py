"""The flow projection op: its definition (against the pure-PyTorch reference and a literal
per-pixel transcription), its gradients (hole filling included), dtypes and layouts, its
registration, and its errors."""

import numpy as np
import pytest
import torch

import memc_ops
from memc_ops.reference import flow_projection_reference


def make_flow(batch, height, width, kind="mixed", dtype=torch.float64, device="cpu"):
    scale = torch.tensor([width, height], dtype=dtype, device=device).view(1, 2, 1, 1)
    if kind == "inside":  # small motions, mostly landing in the frame
        flow = torch.randn(batch, 2, height, width, dtype=dtype, device=device) * 1.5
    elif kind == "mixed":  # inside and leaving the frame, with holes of all sizes
        flow = (torch.rand(batch, 2, height, width, dtype=dtype, device=device) - 0.5) * 1.2 * scale
    elif kind == "outside":  # every source leaves the frame: an all-hole frame
        flow = torch.full((batch, 2, height, width), 1.0, dtype=dtype, device=device) * (scale + 3)
    elif kind == "converge":  # every source aims near the same point: many land on the same pixels
        ys = torch.arange(height, dtype=dtype, device=device).view(1, height, 1)
        xs = torch.arange(width, dtype=dtype, device=device).view(1, 1, width)
        centre_x = (width - 1) / 2 + 0.3 * torch.rand(batch, 1, 1, dtype=dtype, device=device)
        centre_y = (height - 1) / 2 + 0.3 * torch.rand(batch, 1, 1, dtype=dtype, device=device)
        flow = torch.stack([centre_x - xs.expand(batch, height, width), centre_y - ys.expand(batch, height, width)], 1)
    elif kind == "border":  # targets exactly on the last row and column: clamped cells count twice
        ys = torch.arange(height, dtype=dtype, device=device).view(1, height, 1)
        xs = torch.arange(width, dtype=dtype, device=device).view(1, 1, width)
        flow = torch.stack([(width - 1 - xs).expand(batch, height, width),
                            (torch.rand(batch, height, width, dtype=dtype, device=device) * (height - 1)).floor() - ys], 1)
    elif kind == "smooth":  # a motion of a few pixels varying slowly: neighbours land side by side
        ys = torch.arange(height, dtype=dtype, device=device).view(1, height, 1) / height
        xs = torch.arange(width, dtype=dtype, device=device).view(1, 1, width) / width
        phase = torch.rand(batch, 1, 1, dtype=dtype, device=device) * 3
        flow = torch.stack([4 * torch.sin(3 * (xs + ys) + phase), 3 * torch.cos(3 * (2 * xs - ys) + phase)], 1)
    elif kind == "nan":
        flow = torch.randn(batch, 2, height, width, dtype=dtype, device=device) * 2
        flow[torch.rand_like(flow) < 0.3] = float("nan")
    else:
        raise ValueError(kind)
    return flow


def make_weight(batch, height, width, dtype=torch.float64, device="cpu"):
    return torch.rand(batch, 1, height, width, dtype=dtype, device=device) * 4 + 0.25


def away_from_crossings(flow):
    """Moves each flow to integer + [0.2, 0.8]: targets are never on a pixel boundary, so which
    pixels are hit and which are in the frame is constant nearby and the op is differentiable."""
    return flow.floor() + 0.2 + 0.6 * torch.rand_like(flow)


def grads(fn, inputs, grad_output):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    output = fn(*inputs)
    return (output, *torch.autograd.grad(output, inputs, grad_output))


def literal_projection(flow, weight=None, fill_holes=True, fill_from_below=True):
    """The issue's definition transcribed pixel by pixel (tiny frames only)."""
    batch, _, height, width = flow.shape
    output = torch.zeros_like(flow)
    for n in range(batch):
        sums = [[[0.0, 0.0] for _ in range(width)] for _ in range(height)]
        counts = [[0.0] * width for _ in range(height)]
        for y in range(height):
            for x in range(width):
                fx, fy = flow[n, 0, y, x].item(), flow[n, 1, y, x].item()
                w = 1.0 if weight is None else weight[n, 0, y, x].item()
                px, py = x + fx, y + fy
                if not (0 <= px <= width - 1 and 0 <= py <= height - 1):
                    continue
                i, j = int(px // 1), int(py // 1)
                for row in (j, min(j + 1, height - 1)):
                    for col in (i, min(i + 1, width - 1)):
                        sums[row][col][0] -= w * fx
                        sums[row][col][1] -= w * fy
                        counts[row][col] += w
        average = [[[s / counts[y][x] for s in sums[y][x]] if counts[y][x] > 0 else None for x in range(width)]
                   for y in range(height)]
        for y in range(height):
            for x in range(width):
                if average[y][x] is not None:
                    output[n, :, y, x] = torch.tensor(average[y][x], dtype=flow.dtype)
                elif fill_holes:
                    found = []
                    searches = ((0, -1), (0, 1), (-1, 0), (1, 0)) if fill_from_below else ((0, -1), (0, 1), (-1, 0))
                    for dy, dx in searches:
                        yy, xx = y + dy, x + dx
                        while 0 <= yy < height and 0 <= xx < width and average[yy][xx] is None:
                            yy, xx = yy + dy, xx + dx
                        if 0 <= yy < height and 0 <= xx < width:
                            found.append(average[yy][xx])
                    if found:
                        output[n, 0, y, x] = sum(v[0] for v in found) / len(found)
                        output[n, 1, y, x] = sum(v[1] for v in found) / len(found)
    return output


# batch, height, width, flow kind
CASES = [
    (1, 1, 1, "inside"),
    (2, 7, 13, "mixed"),
    (2, 7, 13, "inside"),
    (3, 9, 5, "mixed"),
    (2, 8, 8, "outside"),
    (2, 9, 11, "converge"),
    (2, 6, 9, "border"),
    (2, 8, 11, "nan"),
    (1, 16, 24, "mixed"),
]


# (fill_holes, fill_from_below): our fill, the released kernel's fill (no neighbour below), none.
FILL_MODES = [(True, True), (True, False), (False, True)]
FILL_MODE_IDS = ["fill", "release-fill", "nofill"]


@pytest.mark.parametrize("fill_mode", FILL_MODES, ids=FILL_MODE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_forward_and_backward_match_reference(case, weighted, fill_mode, device):
    batch, height, width, kind = case
    fill_holes, fill_from_below = fill_mode
    flow = make_flow(batch, height, width, kind, device=device)
    inputs = [flow] + ([make_weight(batch, height, width, device=device)] if weighted else [])
    grad_output = torch.randn_like(flow)

    def ours(flow, weight=None):
        return memc_ops.flow_projection(flow, weight, fill_holes=fill_holes, fill_from_below=fill_from_below)

    def reference(flow, weight=None):
        return flow_projection_reference(flow, weight, fill_holes=fill_holes, fill_from_below=fill_from_below)

    got, want = grads(ours, inputs, grad_output), grads(reference, inputs, grad_output)
    for name, a, b in zip(["output", "grad flow", "grad weight"], got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("kind", ["mixed", "converge", "border", "inside"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_matches_the_literal_definition(kind, weighted):
    """Checks the reference and the op against a pixel-by-pixel transcription of the issue."""
    flow = make_flow(2, 6, 7, kind)
    weight = make_weight(2, 6, 7) if weighted else None
    for fill_holes, fill_from_below in FILL_MODES:
        expected = literal_projection(flow, weight, fill_holes, fill_from_below)
        torch.testing.assert_close(flow_projection_reference(flow, weight, fill_holes, fill_from_below), expected,
                                   rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(memc_ops.flow_projection(flow, weight, fill_holes, fill_from_below), expected,
                                   rtol=1e-12, atol=1e-12)


def test_sources_landing_on_one_pixel_are_averaged(device):
    flow = torch.zeros(1, 2, 4, 5, dtype=torch.float64, device=device)
    flow[..., :] = 100.0  # everything leaves the frame ...
    flow[0, :, 0, 0] = torch.tensor([2.0, 1.0])  # ... except three sources landing exactly on (y=1, x=2)
    flow[0, :, 3, 4] = torch.tensor([-2.0, -2.0])
    flow[0, :, 1, 1] = torch.tensor([1.0, 0.0])
    weight = torch.ones(1, 1, 4, 5, dtype=torch.float64, device=device)
    weight[0, 0, 3, 4] = 3.0
    out = memc_ops.flow_projection(flow, fill_holes=False)
    # An integer target splats to (1, 2), (1, 3), (2, 2) and (2, 3) alike.
    expected = -(flow[0, :, 0, 0] + flow[0, :, 3, 4] + flow[0, :, 1, 1]) / 3
    for y, x in ((1, 2), (1, 3), (2, 2), (2, 3)):
        torch.testing.assert_close(out[0, :, y, x], expected)
    assert out[0, :, 0].abs().sum() == 0 and out[0, :, 3].abs().sum() == 0
    weighted = memc_ops.flow_projection(flow, weight, fill_holes=False)
    expected = -(flow[0, :, 0, 0] + 3 * flow[0, :, 3, 4] + flow[0, :, 1, 1]) / 5  # the heavy source wins more
    torch.testing.assert_close(weighted[0, :, 1, 2], expected)


def test_last_row_and_column_receive_twice(device):
    flow = torch.full((1, 2, 3, 4), 50.0, dtype=torch.float64, device=device)
    flow[0, :, 0, 0] = torch.tensor([3.0, 2.0])  # lands exactly on the bottom-right corner (2, 3)
    flow[0, :, 2, 1] = torch.tensor([1.5, -0.5])  # lands at (1.5, 2.5): cells (1..2, 2..3)
    weight = torch.ones(1, 1, 3, 4, dtype=torch.float64, device=device)
    out = memc_ops.flow_projection(flow, weight, fill_holes=False)
    # The corner counts source (0, 0) four times and source (2, 1) once.
    torch.testing.assert_close(out[0, :, 2, 3], -(4 * flow[0, :, 0, 0] + flow[0, :, 2, 1]) / 5)
    torch.testing.assert_close(out[0, :, 1, 2], -flow[0, :, 2, 1])


def test_holes_take_the_mean_of_their_nearest_neighbours_in_four_directions(device):
    flow = torch.full((1, 2, 5, 6), 50.0, dtype=torch.float64, device=device)
    # Two sources on the last row and column: each fills exactly one corner pixel (2x2 clamped).
    flow[0, :, 0, 0] = torch.tensor([5.0, 4.0])  # -> (y=4, x=5)
    flow[0, :, 1, 1] = torch.tensor([-1.0, 3.0])  # -> (y=4, x=0)
    out = memc_ops.flow_projection(flow, fill_holes=True)
    right, left = -flow[0, :, 0, 0], -flow[0, :, 1, 1]
    torch.testing.assert_close(out[0, :, 4, 5], right)
    torch.testing.assert_close(out[0, :, 4, 0], left)
    torch.testing.assert_close(out[0, :, 4, 2], (left + right) / 2)  # left and right only
    torch.testing.assert_close(out[0, :, 1, 5], right)  # down only
    torch.testing.assert_close(out[0, :, 1, 2], torch.zeros(2, dtype=torch.float64, device=device))  # none
    torch.testing.assert_close(out, literal_projection(flow.cpu()).to(device))


def released_fill_example(device):
    """A 6x6 frame where three sources each cover a 2x2 block of pixels (integer targets) and the
    rest leave the frame:
        A covers rows 0-1, columns 0-1;  B rows 4-5, columns 4-5;  C rows 4-5, columns 0-1.
    Returns the flow and the three projected values -flow."""
    flow = torch.full((1, 2, 6, 6), 50.0, dtype=torch.float64, device=device)
    flow[0, :, 2, 2] = torch.tensor([-2.0, -2.0])  # A: (2, 2) -> (0, 0)
    flow[0, :, 3, 3] = torch.tensor([1.0, 1.0])  # B: (3, 3) -> (4, 4)
    flow[0, :, 5, 5] = torch.tensor([-5.0, -1.0])  # C: (5, 5) -> (4, 0)
    return flow, -flow[0, :, 2, 2], -flow[0, :, 3, 3], -flow[0, :, 5, 5]


def test_released_fill_leaves_out_the_neighbour_below(device):
    """The released kernel never searches downward (its loop condition is an assignment):
    fill_from_below=False leaves the nearest received pixel below a hole out of the mean."""
    flow, a, b, c = released_fill_example(device)
    ours = memc_ops.flow_projection(flow)
    released = memc_ops.flow_projection(flow, fill_from_below=False)
    zero = torch.zeros(2, dtype=torch.float64, device=device)
    # Hole (2, 0): A above, C below, nothing across.
    torch.testing.assert_close(ours[0, :, 2, 0], (a + c) / 2)
    torch.testing.assert_close(released[0, :, 2, 0], a)
    # Hole (2, 4): its only received neighbour is B, below. Released: no neighbour at all, so 0,
    # as for any hole without neighbours.
    torch.testing.assert_close(ours[0, :, 2, 4], b)
    torch.testing.assert_close(released[0, :, 2, 4], zero)
    # Hole (4, 2): C to the left, B to the right: the same in both modes.
    torch.testing.assert_close(ours[0, :, 4, 2], (b + c) / 2)
    torch.testing.assert_close(released[0, :, 4, 2], (b + c) / 2)
    # Hole (3, 2): nothing in its row or column: 0 in both modes.
    torch.testing.assert_close(ours[0, :, 3, 2], zero)
    torch.testing.assert_close(released[0, :, 3, 2], zero)
    # Received pixels are unchanged; both modes match the literal definition everywhere.
    torch.testing.assert_close(released[0, :, 5, 0], c)
    torch.testing.assert_close(ours, literal_projection(flow.cpu(), fill_from_below=True).to(device))
    torch.testing.assert_close(released, literal_projection(flow.cpu(), fill_from_below=False).to(device))


@pytest.mark.parametrize("fill_from_below", [True, False], ids=["ours", "released"])
def test_released_fill_gradient_leaves_out_the_neighbour_below(fill_from_below, device):
    """Hole (2, 0) takes (A + C) / 2 with our fill and A alone with the released one: C's flow
    gets a share of the hole's gradient only in the first. Hole (2, 4), filled from B below
    only, passes B nothing in the released mode (its value is the constant 0)."""
    flow, _, _, _ = released_fill_example(device)
    flow.requires_grad_(True)
    out = memc_ops.flow_projection(flow, fill_from_below=fill_from_below)
    out[0, 0, 2, 0].backward(retain_graph=True)
    assert flow.grad[0, 0, 2, 2].item() == (-0.5 if fill_from_below else -1.0)  # A
    assert flow.grad[0, 0, 5, 5].item() == (-0.5 if fill_from_below else 0.0)  # C
    flow.grad = None
    out[0, 0, 2, 4].backward()
    assert flow.grad[0, 0, 3, 3].item() == (-1.0 if fill_from_below else 0.0)  # B
    assert flow.grad.abs().sum().item() == (1.0 if fill_from_below else 0.0)


@pytest.mark.parametrize("fill_holes", [True, False])
def test_all_hole_frame_is_zero_with_zero_gradient(fill_holes, device):
    flow = make_flow(2, 5, 7, "outside", device=device).requires_grad_(True)
    weight = make_weight(2, 5, 7, device=device).requires_grad_(True)
    out = memc_ops.flow_projection(flow, weight, fill_holes)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert torch.equal(flow.grad, torch.zeros_like(flow)) and torch.equal(weight.grad, torch.zeros_like(weight))


@pytest.mark.parametrize("shape", [(2, 1, 17), (2, 17, 1)], ids=["single-row", "single-column"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_single_row_and_single_column(shape, weighted, device):
    batch, height, width = shape
    flow = make_flow(batch, height, width, "mixed", device=device)
    # In a single row only sources that keep their row project (and the reverse for a column).
    flow[:, 1 if height == 1 else 0] = 0
    flow[:, :, :, ::3] = 99.0  # some sources leave: holes to fill
    weight = make_weight(batch, height, width, device=device) if weighted else None
    for fill_holes in (True, False):
        ours = memc_ops.flow_projection(flow, weight, fill_holes)
        torch.testing.assert_close(ours, flow_projection_reference(flow, weight, fill_holes), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours.cpu(), literal_projection(flow.cpu(), None if weight is None else weight.cpu(),
                                                                  fill_holes), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fill_mode", FILL_MODES, ids=FILL_MODE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradcheck(seed, weighted, fill_mode, device):
    torch.manual_seed(seed)
    fill_holes, fill_from_below = fill_mode
    flow = away_from_crossings(make_flow(2, 6, 8, "mixed", device=device)).requires_grad_(True)
    inputs = [flow] + ([make_weight(2, 6, 8, device=device).requires_grad_(True)] if weighted else [])

    def project(flow, weight=None):
        return memc_ops.flow_projection(flow, weight, fill_holes=fill_holes, fill_from_below=fill_from_below)

    assert torch.autograd.gradcheck(project, inputs)


def test_gradient_flows_through_filled_holes(device):
    """The released kernels drop this path: a filled hole's value depends on its neighbours' flow."""
    flow = torch.full((1, 2, 4, 6), 50.0, dtype=torch.float64, device=device)
    flow[0, :, 0, 0] = torch.tensor([5.0, 3.0])  # fills only the bottom-right corner
    flow.requires_grad_(True)
    out = memc_ops.flow_projection(flow, fill_holes=True)
    assert out[0, 0, 0, 5] == -5.0  # a hole whose only received neighbour is the corner, below it
    out[0, 0, 0, 5].backward()
    assert flow.grad[0, 0, 0, 0] == -1.0 and flow.grad[0, 1, 0, 0] == 0.0


def test_gradcheck_non_contiguous(device):
    flow = away_from_crossings(make_flow(2, 8, 6, "mixed", device=device))
    weight = make_weight(2, 8, 6, device=device)
    inputs = [flow.transpose(2, 3).requires_grad_(True), weight.transpose(2, 3).requires_grad_(True)]
    assert not inputs[0].is_contiguous()
    assert torch.autograd.gradcheck(memc_ops.flow_projection, inputs)


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
def test_layouts_match_contiguous(layout, device):
    flow = make_flow(2, 9, 12, "mixed", dtype=torch.float32, device=device)
    weight = make_weight(2, 9, 12, dtype=torch.float32, device=device)
    if layout == "channels_last":
        strided = [t.contiguous(memory_format=torch.channels_last) for t in (flow, weight)]
    else:
        strided = [torch.cat([t, t], dim=3)[..., ::2] for t in (flow, weight)]
    grad_output = torch.randn_like(flow)
    ours = grads(memc_ops.flow_projection, strided, grad_output)
    expected = grads(memc_ops.flow_projection, [t.contiguous() for t in strided], grad_output)
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want)
    if layout == "channels_last":
        assert ours[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_close_to_float64(dtype, device):
    flow = make_flow(2, 16, 20, "inside", dtype=torch.float64, device=device)
    weight = make_weight(2, 16, 20, device=device)
    low = [t.to(dtype) for t in (flow, weight)]
    high = [t.double() for t in low]  # the same rounded inputs: only the kernels' arithmetic differs
    grad_output = torch.randn(2, 2, 16, 20, dtype=torch.float64, device=device).to(dtype)
    ours = grads(memc_ops.flow_projection, low, grad_output)
    expected = grads(memc_ops.flow_projection, high, grad_output.double())
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}[dtype]
    for name, got, want in zip(["output", "grad flow", "grad weight"], ours, expected):
        assert got.dtype == dtype, name
        scale = want.abs().max().clamp_min(1)
        assert (got.double() - want).abs().max() <= tolerance * scale, name


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_float32_rounded_once(dtype, layout, device):
    """float16 and bfloat16 are computed in float32 and rounded once: on the same (rounded) inputs,
    the output and both gradients are float32's results rounded to the dtype, bit for bit on the
    CPU, whether rows are converted as whole vectors (stride 1) or element by element (strided
    rows, and the ends of rows: the width, 45, fills no vector exactly)."""
    flow = make_flow(2, 11, 45, "mixed", dtype=torch.float32, device=device)
    weight = make_weight(2, 11, 45, dtype=torch.float32, device=device)
    grad_output = torch.randn_like(flow)
    low = [t.to(dtype) for t in (flow, weight, grad_output)]
    if layout == "channels_last":
        low = [t.contiguous(memory_format=torch.channels_last) for t in low]
    elif layout == "sliced":  # rows with a stride of 2
        low = [torch.cat([t, t], dim=3)[..., ::2] for t in low]
    high = [t.float() for t in low]
    ours = grads(memc_ops.flow_projection, low[:2], low[2])
    expected = grads(memc_ops.flow_projection, high[:2], high[2])
    for name, got, want in zip(["output", "grad flow", "grad weight"], ours, expected):
        assert got.dtype == dtype, name
        if device == "cuda":  # atomic sums arrive in any order
            torch.testing.assert_close(got, want.to(dtype), msg=lambda m: f"{name}: {m}")
        else:
            assert torch.equal(got, want.to(dtype)), name


def test_opcheck(device):
    samples = []
    for weighted in (False, True):
        for fill_holes, fill_from_below in FILL_MODES:
            for requires_grad in (False, True):
                dtype = torch.float64 if requires_grad else torch.float32
                flow = make_flow(2, 7, 9, "mixed", dtype=dtype, device=device).requires_grad_(requires_grad)
                weight = make_weight(2, 7, 9, dtype=dtype, device=device).requires_grad_(requires_grad) if weighted else None
                samples.append((flow, weight, fill_holes, fill_from_below))
    # Only the flow needs a gradient: the autograd test sees the weight's gradient skipped.
    flow = make_flow(2, 7, 9, "mixed", device=device).requires_grad_(True)
    samples.append((flow, make_weight(2, 7, 9, device=device), True, True))
    for sample in samples:
        torch.library.opcheck(torch.ops.memc.flow_projection.default, sample)
        flow, weight, fill_holes, fill_from_below = (t.detach() if isinstance(t, torch.Tensor) else t for t in sample)
        _, projected = torch.ops.memc.flow_projection.default(flow, weight, fill_holes, fill_from_below)
        for output_mask in ([True, True], [True, False], [False, True]):
            backward_sample = (torch.randn_like(flow), flow, weight, projected, fill_holes, fill_from_below,
                               output_mask)
            torch.library.opcheck(torch.ops.memc.flow_projection_backward.default, backward_sample)


@pytest.mark.parametrize("fill_from_below", [True, False], ids=["ours", "released"])
def test_backward_computes_only_the_gradients_in_its_output_mask(fill_from_below, device):
    """A gradient left out of output_mask (flow, weight) comes back as an empty tensor; the other is
    the same as with the full mask."""
    flow = make_flow(2, 7, 9, "mixed", device=device)
    weight = make_weight(2, 7, 9, device=device)
    _, projected = torch.ops.memc.flow_projection.default(flow, weight, True, fill_from_below)
    grad_output = torch.randn_like(flow)

    def backward(output_mask):
        return torch.ops.memc.flow_projection_backward.default(grad_output, flow, weight, projected, True,
                                                               fill_from_below, output_mask)

    full_flow, full_weight = backward([True, True])
    assert full_flow.shape == flow.shape and full_weight.shape == weight.shape
    flow_only, no_weight = backward([True, False])
    assert torch.equal(flow_only, full_flow) and no_weight.numel() == 0
    no_flow, weight_only = backward([False, True])
    assert torch.equal(weight_only, full_weight) and no_flow.numel() == 0
    neither = backward([False, False])
    assert neither[0].numel() == 0 and neither[1].numel() == 0


def test_autograd_asks_only_for_the_gradients_needed(device):
    """The output mask comes from which inputs require a gradient: a weight computed without
    gradient (the usual case, e.g. from an occlusion test) gets none computed."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class RecordMasks(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.masks = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.memc.flow_projection_backward.default:
                # Arguments equal to their schema default may arrive left out.
                names = [argument.name for argument in func._schema.arguments]
                given = dict(zip(names, args), **(kwargs or {}))
                self.masks.append(list(given.get("output_mask", [True, True])))
            return func(*args, **(kwargs or {}))

    flow = make_flow(1, 6, 7, "mixed", device=device)
    weight = make_weight(1, 6, 7, device=device)
    for flow_grad, weight_grad in ((True, False), (False, True), (True, True)):
        inputs = [flow.clone().requires_grad_(flow_grad), weight.clone().requires_grad_(weight_grad)]
        with RecordMasks() as recorder:
            memc_ops.flow_projection(*inputs).sum().backward()
        assert recorder.masks == [[flow_grad, weight_grad]]
        assert (inputs[0].grad is not None) == flow_grad and (inputs[1].grad is not None) == weight_grad
        if flow_grad:
            expected = grads(flow_projection_reference, [flow, weight], torch.ones_like(flow))[1]
            torch.testing.assert_close(inputs[0].grad, expected)


def test_backward_makes_no_zero_gradient_for_the_projected_sums(device):
    """The op's second output (the projected sums kept for the backward) never has a gradient:
    autograd must not fill a zero tensor of its size for it on every backward."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class RecordOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    flow = make_flow(2, 6, 7, "mixed", device=device).requires_grad_()
    output = memc_ops.flow_projection(flow)
    grad_output = torch.ones_like(output)
    with RecordOps() as recorder:
        output.backward(grad_output)
    assert "flow_projection_backward" in recorder.ops
    assert not {"zeros", "zeros_like", "new_zeros", "zero_", "fill_"} & set(recorder.ops), recorder.ops


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile(backend, device):
    torch._dynamo.reset()

    def project_and_scale(flow, weight):
        return 2.0 * memc_ops.flow_projection(flow, weight, fill_holes=True) + flow

    compiled = torch.compile(project_and_scale, fullgraph=True, backend=backend)
    inputs = [make_flow(2, 8, 8, "mixed", dtype=torch.float32, device=device),
              make_weight(2, 8, 8, dtype=torch.float32, device=device)]
    grad_output = torch.randn(2, 2, 8, 8, device=device)
    ours = grads(compiled, inputs, grad_output)
    expected = grads(project_and_scale, inputs, grad_output)
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want)


def test_project_to_time(device):
    flow = make_flow(3, 6, 7, "mixed", device=device)
    torch.testing.assert_close(memc_ops.project_to_time(flow, 0.25), memc_ops.flow_projection(0.25 * flow))
    torch.testing.assert_close(memc_ops.project_to_time(flow, 0.25, fill_from_below=False),
                               memc_ops.flow_projection(0.25 * flow, fill_from_below=False))
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, device=device)
    expected = torch.cat([memc_ops.flow_projection(t[i].item() * flow[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(memc_ops.project_to_time(flow, t), expected)
    half = memc_ops.project_to_time(flow.half(), torch.tensor(0.5, device=device))
    assert half.dtype == torch.float16
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        memc_ops.project_to_time(flow, 1.5)


def test_module_wrapper(device):
    flow = make_flow(1, 6, 6, "mixed", dtype=torch.float32, device=device)
    torch.testing.assert_close(memc_ops.FlowProjection(fill_holes=False)(flow), memc_ops.flow_projection(flow, None, False))
    released = memc_ops.FlowProjection(fill_from_below=False)
    assert repr(released) == "FlowProjection(fill_holes=True, fill_from_below=False)"
    torch.testing.assert_close(released(flow), memc_ops.flow_projection(flow, None, True, fill_from_below=False))


def test_empty_batch(device):
    flow = torch.zeros(0, 2, 4, 4, device=device, requires_grad=True)
    out = memc_ops.flow_projection(flow)
    assert out.shape == (0, 2, 4, 4)
    out.sum().backward()
    assert flow.grad.shape == (0, 2, 4, 4)


@pytest.mark.parametrize("shape", [(1, 2, 0, 5), (1, 2, 5, 0), (0, 2, 3, 3)], ids=["no-rows", "no-columns", "no-images"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_empty_sizes(shape, weighted, device):
    flow = torch.zeros(shape, device=device, requires_grad=True)
    weight = torch.ones(shape[0], 1, *shape[2:], device=device, requires_grad=True) if weighted else None
    out = memc_ops.flow_projection(flow, weight)
    assert out.shape == shape
    out.sum().backward()
    assert flow.grad.shape == shape
    if weighted:
        assert weight.grad.shape == weight.shape


def float32_projection(flow, weight, fill_holes, fill_from_below):
    """The definition computed in float32 one operation at a time, in the CPU kernel's order: the
    sources in row-major order, each adding -w*m*flow and w*m (m: how many nominal cells a clamped
    cell stands for) to its distinct cells; a hole's sum from its left, right, below and above
    neighbours in that order, then divided. Returns (output, projected) as float32 arrays."""
    f32 = np.float32
    flow = flow.numpy()
    weight = None if weight is None else weight.numpy()
    batch, _, height, width = flow.shape
    projected = np.zeros((batch, 3, height, width), np.float32)
    output = np.zeros((batch, 2, height, width), np.float32)
    for n in range(batch):
        sums = np.zeros((height, width, 3), np.float32)
        for y in range(height):
            for x in range(width):
                flow_x, flow_y = flow[n, 0, y, x], flow[n, 1, y, x]
                w = f32(1) if weight is None else weight[n, 0, y, x]
                target_x, target_y = f32(x) + flow_x, f32(y) + flow_y
                if not (0 <= target_x <= f32(width - 1) and 0 <= target_y <= f32(height - 1) and 0 < w < np.inf):
                    continue
                row, col = min(int(target_y), height - 1), min(int(target_x), width - 1)
                rows = [row] + ([row + 1] if row + 1 < height else [])
                cols = [col] + ([col + 1] if col + 1 < width else [])
                share = w * f32((3 - len(rows)) * (3 - len(cols)))
                values = np.array([-share * flow_x, -share * flow_y, share], np.float32)
                for r in rows:
                    for c in cols:
                        sums[r, c] = sums[r, c] + values
        received = sums[:, :, 2] > 0
        for y in range(height):
            for x in range(width):
                if received[y, x]:
                    projected[n, :2, y, x] = sums[y, x, :2] / sums[y, x, 2]
                    projected[n, 2, y, x] = sums[y, x, 2]
        average = projected[n, :2].copy()
        for y in range(height):
            for x in range(width):
                if received[y, x] or not fill_holes:
                    continue
                found, value = 0, np.zeros(2, np.float32)
                steps = [(0, -1), (0, 1), (1, 0), (-1, 0)] if fill_from_below else [(0, -1), (0, 1), (-1, 0)]
                for dy, dx in steps:
                    yy, xx = y + dy, x + dx
                    while 0 <= yy < height and 0 <= xx < width and not received[yy, xx]:
                        yy, xx = yy + dy, xx + dx
                    if 0 <= yy < height and 0 <= xx < width:
                        value = value + average[:, yy, xx]
                        found += 1
                projected[n, :2, y, x] = value / f32(found) if found else 0
                projected[n, 2, y, x] = -f32(found)
        output[n] = projected[n, :2]
    return output, projected


@pytest.mark.parametrize("fill_mode", FILL_MODES, ids=FILL_MODE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", [(2, 7, 13, "mixed"), (1, 9, 1, "mixed"), (2, 1, 9, "inside"), (3, 6, 17, "border"),
                                  (2, 11, 5, "converge"), (2, 8, 11, "nan"), (2, 9, 37, "smooth")],
                         ids=lambda c: "x".join(map(str, c)))
def test_cpu_float32_is_the_definition_in_float32_bit_for_bit(case, weighted, fill_mode):
    """The CPU kernel adds each cell's sums as one SIMD vector, finishes rows and sweeps columns in
    SIMD lanes: the float32 results are still those of the definition computed one float32
    operation at a time in the kernel's order, bit for bit (odd widths, single rows and columns,
    clamped cells, NaN flows; one image per thread, so no band splits an image's sums)."""
    batch, height, width, kind = case
    fill_holes, fill_from_below = fill_mode
    flow = make_flow(batch, height, width, kind, dtype=torch.float32)
    weight = make_weight(batch, height, width, dtype=torch.float32) if weighted else None
    want_output, want_projected = float32_projection(flow, weight, fill_holes, fill_from_below)
    for threads in (1, batch):
        output, projected = cpu_projection_with_threads(threads, flow, weight, fill_holes, fill_from_below)
        np.testing.assert_array_equal(output.numpy(), want_output)
        np.testing.assert_array_equal(projected.numpy(), want_projected)


def float32_projection_backward(flow, weight, projected, grad_output, fill_holes, fill_from_below):
    """The backward's definition in float32 one operation at a time, in the CPU kernel's order, from
    the forward's `projected`: each pixel's gradient g starts as grad_output; each hole's becomes
    its share g / k (k: the neighbours its fill found, 1 / k rounded once) and the shares of a run
    of holes, summed from 0, go to the pixel left then right of the run (along the rows), then
    above and (with fill_from_below) below it (down the columns); a received pixel's g becomes
    p = g * (1 / T) and q = p . average; a source sums p and q over its cells from 0 (top left, top
    right, bottom left, bottom right) and takes -w m sum(p) and m (-(f . sum(p)) - sum(q)) (m: how
    many nominal cells each cell stands for). Returns (grad_flow, grad_weight) as float32 arrays."""
    f32 = np.float32
    flow, projected, grad_output = flow.numpy(), projected.numpy(), grad_output.numpy()
    weight = None if weight is None else weight.numpy()
    batch, _, height, width = flow.shape
    grad_flow = np.zeros((batch, 2, height, width), np.float32)
    grad_weight = np.zeros((batch, 1, height, width), np.float32)

    def inverse(k):
        return {1: f32(1), 2: f32(0.5), 3: f32(1) / f32(3), 4: f32(0.25)}[int(k)]

    def hole_runs(received_line, shares_line):
        """(share, start, end) of each run of holes along a line, holes start..end-1, the share
        summed from 0 in order."""
        runs, i = [], 0
        while i < len(received_line):
            if received_line[i]:
                i += 1
                continue
            start, share = i, np.zeros(2, np.float32)
            while i < len(received_line) and not received_line[i]:
                share = share + shares_line[i]
                i += 1
            runs.append((share, start, i))
        return runs

    for n in range(batch):
        total = projected[n, 2]
        received = total > 0
        g = grad_output[n].transpose(1, 2, 0).copy()  # (H, W, 2)
        if fill_holes:
            shares = np.zeros_like(g)
            for y in range(height):
                for x in range(width):
                    if not received[y, x] and -total[y, x] > 0:
                        shares[y, x] = g[y, x] * inverse(-total[y, x])
            runs = []  # (share, first pixel, second pixel): the two ends of a run, in the order they gain
            for y in range(height):
                for share, start, end in hole_runs(received[y], shares[y]):
                    runs.append((share, (y, start - 1) if start > 0 else None, (y, end) if end < width else None))
            for share, left, right in runs:
                for end in (left, right):
                    if end is not None:
                        g[end] = g[end] + share
            for x in range(width):  # the column runs, ending top to bottom
                for share, start, end in hole_runs(received[:, x], shares[:, x]):
                    if start > 0:
                        g[start - 1, x] = g[start - 1, x] + share
                    if end < height and fill_from_below:
                        g[end, x] = g[end, x] + share
        p = np.zeros_like(g)
        q = np.zeros((height, width), np.float32)
        for y in range(height):
            for x in range(width):
                if received[y, x]:
                    p[y, x] = g[y, x] * (f32(1) / total[y, x])
                    q[y, x] = p[y, x, 0] * projected[n, 0, y, x] + p[y, x, 1] * projected[n, 1, y, x]
        for y in range(height):
            for x in range(width):
                flow_x, flow_y = flow[n, 0, y, x], flow[n, 1, y, x]
                w = f32(1) if weight is None else weight[n, 0, y, x]
                target_x, target_y = f32(x) + flow_x, f32(y) + flow_y
                if not (0 <= target_x <= f32(width - 1) and 0 <= target_y <= f32(height - 1) and 0 < w < np.inf):
                    continue
                row, col = int(target_y), int(target_x)
                has_below, has_right = row + 1 < height, col + 1 < width
                m = f32((1 + (not has_below)) * (1 + (not has_right)))
                sums = np.zeros(3, np.float32)
                for r, c, exists in ((row, col, True), (row, col + 1, has_right), (row + 1, col, has_below),
                                     (row + 1, col + 1, has_below and has_right)):
                    cell = np.array([p[r, c, 0], p[r, c, 1], q[r, c]], np.float32) if exists else np.zeros(3, np.float32)
                    sums = sums + cell
                sum_x, sum_y = sums[0] * m, sums[1] * m
                grad_flow[n, 0, y, x] = -w * sum_x
                grad_flow[n, 1, y, x] = -w * sum_y
                grad_weight[n, 0, y, x] = -(flow_x * sum_x + flow_y * sum_y) - m * sums[2]
    return grad_flow, grad_weight


def zoom_flow(batch, height, width, zoom=0.5):
    """Every source moved towards the centre: the frame's outer part receives nothing (wide runs
    of holes in rows and columns), the inner part several sources per pixel."""
    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1).expand(batch, height, width)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width).expand(batch, height, width)
    jitter = 0.2 * torch.rand(batch, 2, height, width)
    return torch.stack([zoom * ((width - 1) / 2 - xs), zoom * ((height - 1) / 2 - ys)], 1) + jitter


@pytest.mark.parametrize("fill_mode", FILL_MODES, ids=FILL_MODE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", [(2, 7, 13, "mixed"), (1, 9, 1, "mixed"), (2, 1, 9, "inside"), (3, 6, 17, "border"),
                                  (2, 8, 11, "nan"), (2, 9, 37, "smooth"), (2, 27, 75, "zoom")],
                         ids=lambda c: "x".join(map(str, c)))
def test_cpu_float32_backward_is_the_definition_in_float32_bit_for_bit(case, weighted, fill_mode):
    """The CPU backward sums each cell with its neighbours in SIMD lanes before the sources gather
    those sums, and adds the shares of rows of holes in lanes: both gradients (and the flow's alone)
    are still those of the definition computed one float32 operation at a time, bit for bit, with
    one thread and with as many as images and more (bands of rows, stripes of columns)."""
    batch, height, width, kind = case
    fill_holes, fill_from_below = fill_mode
    flow = zoom_flow(batch, height, width) if kind == "zoom" else make_flow(batch, height, width, kind, torch.float32)
    weight = make_weight(batch, height, width, dtype=torch.float32) if weighted else None
    grad_output = torch.randn(batch, 2, height, width)
    _, projected = torch.ops.memc.flow_projection.default(flow, weight, fill_holes, fill_from_below)
    want_flow, want_weight = float32_projection_backward(flow, weight, projected, grad_output, fill_holes,
                                                         fill_from_below)
    backward = torch.ops.memc.flow_projection_backward.default
    previous = torch.get_num_threads()
    try:
        for threads in sorted({1, batch, 3}):
            torch.set_num_threads(threads)
            grad_flow, grad_weight = backward(grad_output, flow, weight, projected, fill_holes, fill_from_below,
                                              [True, True])
            np.testing.assert_array_equal(grad_flow.numpy(), want_flow, err_msg=f"{threads} threads")
            if weighted:
                np.testing.assert_array_equal(grad_weight.numpy(), want_weight, err_msg=f"{threads} threads")
            alone, _ = backward(grad_output, flow, weight, projected, fill_holes, fill_from_below, [True, False])
            np.testing.assert_array_equal(alone.numpy(), want_flow, err_msg=f"{threads} threads, flow alone")
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fill_mode", FILL_MODES, ids=FILL_MODE_IDS)
@pytest.mark.parametrize("kind", ["mixed", "converge", "border", "smooth", "nan"])
def test_cpu_flow_gradient_does_not_depend_on_the_weight_gradient(kind, fill_mode, dtype):
    """Without the weight's gradient the CPU backward keeps two values per pixel instead of four
    (no q): the flow's gradient is still the same bits, with 1 and 2 threads (image per thread,
    and rows and column stripes shared by threads); an unweighted projection gives those of
    weights of 1."""
    fill_holes, fill_from_below = fill_mode
    flow = make_flow(1, 29, 70, kind, dtype=dtype)
    flow = torch.cat([flow, make_flow(1, 29, 70, "mixed", dtype=dtype)])
    grad_output = torch.randn_like(flow)
    for weight, ones in ((make_weight(2, 29, 70, dtype=dtype), False), (torch.ones(2, 1, 29, 70, dtype=dtype), True)):
        _, projected = torch.ops.memc.flow_projection.default(flow, weight, fill_holes, fill_from_below)
        backward = torch.ops.memc.flow_projection_backward.default
        previous = torch.get_num_threads()
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                both, _ = backward(grad_output, flow, weight, projected, fill_holes, fill_from_below, [True, True])
                alone, _ = backward(grad_output, flow, weight, projected, fill_holes, fill_from_below, [True, False])
                assert torch.equal(alone, both), f"{threads} threads"
                if ones:
                    unweighted, _ = backward(grad_output, flow, None, projected, fill_holes, fill_from_below,
                                             [True, False])
                    assert torch.equal(unweighted, both), f"{threads} threads, unweighted"
        finally:
            torch.set_num_threads(previous)


@pytest.mark.parametrize("fill_mode", FILL_MODES, ids=FILL_MODE_IDS)
@pytest.mark.parametrize("kind", ["mixed", "smooth", "converge"])
def test_cpu_backward_of_one_image_is_the_same_bits_on_any_number_of_threads(kind, fill_mode):
    """One image on several threads shares its rows (bands, each recounting the holes at its
    edges) and its columns (stripes of the hole sweep: width 260 gives several): both gradients,
    and the flow's alone, are the bits of one thread."""
    fill_holes, fill_from_below = fill_mode
    flow = make_flow(1, 29, 260, kind, dtype=torch.float32)
    weight = make_weight(1, 29, 260, dtype=torch.float32)
    grad_output = torch.randn_like(flow)
    _, projected = torch.ops.memc.flow_projection.default(flow, weight, fill_holes, fill_from_below)
    backward = torch.ops.memc.flow_projection_backward.default
    previous = torch.get_num_threads()
    try:
        results = {}
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            for mask in ([True, True], [True, False]):
                results[threads, tuple(mask)] = backward(grad_output, flow, weight, projected, fill_holes,
                                                         fill_from_below, mask)
    finally:
        torch.set_num_threads(previous)
    for (threads, mask), (grad_flow, grad_weight) in results.items():
        want_flow, want_weight = results[1, mask]
        assert torch.equal(grad_flow, want_flow), f"{threads} threads, mask {mask}"
        assert torch.equal(grad_weight, want_weight), f"{threads} threads, mask {mask}"
    assert torch.equal(results[1, (True, False)][0], results[1, (True, True)][0])


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_precision_in_column_stripes(dtype, layout):
    """One image on several threads: the hole fill's column sweeps run in stripes of columns, each
    writing its part of the output rows; half results are still float32's rounded once."""
    flow = make_flow(1, 23, 200, "mixed", dtype=torch.float32).to(dtype)
    if layout == "channels_last":
        flow = flow.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        flow = torch.cat([flow, flow], dim=3)[..., ::2]
    for threads in (1, 2, 3):
        output, _ = cpu_projection_with_threads(threads, flow)
        expected, _ = cpu_projection_with_threads(threads, flow.float())
        assert torch.equal(output, expected.to(dtype)), f"{threads} threads"


def shifted_flow(kind, batch, height, width):
    """Flows whose target rows lie far from their source rows: "down"/"up" move every source 5 rows
    (the CPU splat's ring of open target rows wraps around many times), "flip" sends row y to row
    H-1-y (every band's sources reach every row: a ring as tall as the image). Multiples of 1/8."""
    ys = torch.arange(height, dtype=torch.float64).view(1, height, 1).expand(batch, height, width)
    jitter = (torch.rand(batch, 2, height, width, dtype=torch.float64) * 8).round() / 8
    if kind == "down":
        flow_y = torch.full_like(ys, 5.25)
    elif kind == "up":
        flow_y = torch.full_like(ys, -5.5)
    else:
        flow_y = height - 1 - 2 * ys + 0.125
    return torch.stack([jitter[:, 0] - 0.5, flow_y + jitter[:, 1] * 0.25], 1)


@pytest.mark.parametrize("kind", ["down", "up", "flip"])
@pytest.mark.parametrize("batch", [1, 3])
def test_cpu_targets_far_from_their_source_rows(kind, batch):
    """Against the reference, and the same bits with 1 to 4 threads (image bands, shared rows)."""
    flow = shifted_flow(kind, batch, 41, 19)
    weight = (make_weight(batch, 41, 19) * 8).round() / 8
    grad_output = torch.randn_like(flow)
    got = grads(memc_ops.flow_projection, [flow, weight], grad_output)
    want = grads(flow_projection_reference, [flow, weight], grad_output)
    for name, a, b in zip(["output", "grad flow", "grad weight"], got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")
    expected = cpu_projection_with_threads(1, flow, weight)
    for threads in (2, 3, 4):
        for a, b in zip(cpu_projection_with_threads(threads, flow, weight), expected):
            assert torch.equal(a, b), f"{threads} threads"


def cpu_projection_with_threads(threads, flow, weight=None, fill_holes=True, fill_from_below=True):
    """The raw op's (output, projected) on the CPU computed with `threads` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return torch.ops.memc.flow_projection.default(flow, weight, fill_holes, fill_from_below)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("zoom", [1.0, 0.5], ids=["to-a-point", "to-the-centre"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("batch", [1, 2])
def test_cpu_row_bands_give_the_single_thread_result(batch, weighted, zoom):
    """With fewer images than threads the CPU splat cuts each image into bands of rows, each adding
    into its own copy of the sums. Sources from every band land on the same pixels (a converging
    flow); flows and weights are multiples of 1/8, so that every sum is exact in any order and a
    lost, doubled or misplaced add cannot hide in rounding."""
    flow = (zoom * make_flow(batch, 37, 23, "converge") * 8).round() / 8
    weight = (make_weight(batch, 37, 23) * 8).round() / 8 if weighted else None
    expected_output, expected_projected = cpu_projection_with_threads(1, flow, weight)
    for threads in (2, 3, 4):
        output, projected = cpu_projection_with_threads(threads, flow, weight)
        assert torch.equal(projected, expected_projected), f"{threads} threads"
        assert torch.equal(output, expected_output), f"{threads} threads"


@pytest.mark.parametrize("kind", ["converge", "mixed"])
def test_cpu_row_bands_are_deterministic(kind):
    """With inexact sums the bands' copies change the rounding, not the result: the same bits on
    every run with a given number of threads (the copies are summed in band order), and the
    single-thread result up to rounding."""
    flow = make_flow(1, 37, 23, kind, dtype=torch.float32)
    weight = make_weight(1, 37, 23, dtype=torch.float32)
    single_thread = cpu_projection_with_threads(1, flow, weight)
    for threads in (2, 3, 4):
        first = cpu_projection_with_threads(threads, flow, weight)
        for _ in range(3):
            again = cpu_projection_with_threads(threads, flow, weight)
            assert all(torch.equal(a, b) for a, b in zip(again, first)), f"{threads} threads"
        for got, want in zip(first, single_thread):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_unusable_weights_are_rejected(bad, device):
    flow = make_flow(1, 4, 5, "inside", device=device)
    weight = make_weight(1, 4, 5, device=device)
    weight[0, 0, 2, 3] = bad
    with pytest.raises(ValueError, match="weight must be positive and finite"):
        memc_ops.flow_projection(flow, weight)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_raw_op_skips_sources_with_unusable_weights(bad, device):
    """torch.ops.memc.flow_projection (no value check) treats them like sources leaving the frame."""
    flow = make_flow(2, 5, 6, "inside", device=device)
    weight = make_weight(2, 5, 6, device=device)
    weight[0, 0, 2, 3] = bad
    weight[1, 0, 0, 0] = bad
    raw, _ = torch.ops.memc.flow_projection.default(flow, weight, True)
    gone = flow.clone()
    gone[0, :, 2, 3] = 1e6
    gone[1, :, 0, 0] = 1e6
    torch.testing.assert_close(raw, memc_ops.flow_projection(gone, weight.clamp(0.1, 10).nan_to_num(1.0)))
    torch.testing.assert_close(raw, flow_projection_reference(flow, weight))


BAD_INPUTS = [
    # description, (flow shape, weight shape or None), expected fragment of the message
    ("flow rank", ((2, 8, 8), None), "flow must be a 4-D tensor"),
    ("flow channels", ((1, 3, 8, 8), None), "flow must have shape (B, 2, H, W); got (1, 3, 8, 8)"),
    ("weight channels", ((1, 2, 8, 8), (1, 2, 8, 8)), "weight must have shape (B, 1, H, W) = (1, 1, 8, 8)"),
    ("weight size", ((1, 2, 8, 8), (1, 1, 8, 7)), "weight must have shape (B, 1, H, W) = (1, 1, 8, 8)"),
    ("weight batch", ((2, 2, 8, 8), (1, 1, 8, 8)), "weight must have shape (B, 1, H, W) = (2, 1, 8, 8)"),
    ("weight rank", ((1, 2, 8, 8), (1, 8, 8)), "weight must be a 4-D tensor"),
]


@pytest.mark.parametrize("description, shapes, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_shapes_are_rejected_with_a_clear_message(description, shapes, message):
    flow_shape, weight_shape = shapes
    flow = torch.zeros(flow_shape)
    weight = None if weight_shape is None else torch.ones(weight_shape)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        memc_ops.flow_projection(flow, weight)


def test_integer_and_mixed_dtypes_are_rejected():
    flow, weight = torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match="flow must be float32, float64, float16 or bfloat16; got Long"):
        memc_ops.flow_projection(flow.long())
    with pytest.raises(ValueError, match="weight must have the dtype of flow"):
        memc_ops.flow_projection(flow, weight.double())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mixed_devices_are_rejected():
    flow, weight = torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4)
    with pytest.raises(RuntimeError, match="weight must be on the device of flow"):
        memc_ops.flow_projection(flow, weight.cuda())


def test_target_rounded_onto_the_width_stays_inside_the_frame():
    """float32 cannot hold W - 1 = 2^24 + 3: a target of W - 1 rounds to W, which must still land in
    the last column (not one past it, in the next channel's memory)."""
    width = 2**24 + 4
    flow = torch.zeros(1, 2, 1, width)
    flow[0, 0, 0, width - 2] = 1.0  # target W - 1, stored as float(W - 1) = W
    output = memc_ops.flow_projection(flow, fill_holes=False)
    assert output[0, :, 0, 0].tolist() == [0.0, 0.0]  # where the stray write landed before
    # The last column averages its own zero flow and the -1 it received.
    assert output[0, :, 0, width - 1].tolist() == [-0.5, 0.0]


def test_non_tensor_arguments_are_rejected_naming_the_argument():
    flow = torch.zeros(1, 2, 4, 4)
    with pytest.raises(TypeError) as error:
        memc_ops.flow_projection(None)
    assert str(error.value) == "flow_projection: flow must be a torch.Tensor of shape (B, 2, H, W); got None"
    with pytest.raises(TypeError) as error:
        memc_ops.flow_projection(flow.numpy())
    assert str(error.value) == ("flow_projection: flow must be a torch.Tensor of shape (B, 2, H, W); "
                                "got numpy.ndarray (convert it with torch.from_numpy)")
    with pytest.raises(TypeError) as error:
        memc_ops.flow_projection(flow, torch.ones(1, 1, 4, 4).numpy())
    assert str(error.value) == ("flow_projection: weight must be a torch.Tensor of shape (B, 1, H, W) or None; "
                                "got numpy.ndarray (convert it with torch.from_numpy)")
    with pytest.raises(TypeError) as error:
        memc_ops.project_to_time(None, 0.5)
    assert str(error.value) == "project_to_time: flow_0to1 must be a torch.Tensor of shape (B, 2, H, W); got None"


@pytest.mark.parametrize("fill_holes, shown", [("no", "str 'no'"), (None, "None"), (1, "int 1")])
def test_fill_holes_must_be_a_bool(fill_holes, shown):
    with pytest.raises(TypeError) as error:
        memc_ops.flow_projection(torch.zeros(1, 2, 4, 4), None, fill_holes)
    assert str(error.value) == f"flow_projection: fill_holes must be True or False; got {shown}"
    with pytest.raises(TypeError) as error:
        memc_ops.FlowProjection(fill_holes=fill_holes)
    assert str(error.value) == f"FlowProjection: fill_holes must be True or False; got {shown}"
    with pytest.raises(TypeError) as error:
        memc_ops.flow_projection(torch.zeros(1, 2, 4, 4), None, True, fill_holes)
    assert str(error.value) == f"flow_projection: fill_from_below must be True or False; got {shown}"


def test_tensors_on_different_devices_are_rejected_naming_the_devices():
    flow = torch.zeros(1, 2, 4, 4)
    with pytest.raises(RuntimeError) as error:
        memc_ops.flow_projection(flow, torch.ones(1, 1, 4, 4, device="meta"))
    assert str(error.value) == "flow_projection: weight must be on the device of flow (cpu); got meta"
    with pytest.raises(RuntimeError) as error:
        memc_ops.project_to_time(flow.to("meta"), torch.tensor([0.5]))
    assert str(error.value) == "project_to_time: t must be on the device of flow_0to1 (meta); got cpu"
    # A 0-dim t is a scalar and may stay on the CPU.
    assert memc_ops.project_to_time(flow.to("meta"), torch.tensor(0.5)).device.type == "meta"


def test_project_to_time_needs_one_time_per_sample_or_one_for_all():
    flow = make_flow(2, 5, 6, "mixed")
    with pytest.raises(ValueError) as error:
        memc_ops.project_to_time(flow, torch.tensor([0.1, 0.2, 0.3]))
    assert str(error.value) == "project_to_time: t must hold one time per sample of flow_0to1 (B = 2); got shape (3,)"
    with pytest.raises(ValueError, match=r"one time per sample of flow_0to1 \(B = 2\); got shape \(3, 1, 1, 1\)"):
        memc_ops.project_to_time(flow, torch.full((3, 1, 1, 1), 0.5))
    # One time in a (1,) tensor applies to every sample, like a number.
    torch.testing.assert_close(memc_ops.project_to_time(flow, torch.tensor([0.25], dtype=torch.float64)),
                               memc_ops.project_to_time(flow, 0.25))


def test_gradients_of_gradients_are_an_error_not_a_silent_zero(device):
    flow = make_flow(1, 6, 7, device=device).requires_grad_()
    weight = make_weight(1, 6, 7, device=device).requires_grad_()
    grads_ = torch.autograd.grad(memc_ops.flow_projection(flow, weight).sum(), [flow, weight], create_graph=True)
    with pytest.raises(RuntimeError, match="memc::flow_projection_backward is not implemented"):
        sum(grad.sum() for grad in grads_).backward()
