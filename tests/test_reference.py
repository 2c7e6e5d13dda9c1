"""memc_ops.reference.warp_valid: the rule for where the warps sample the image, as the ops apply it."""

import os
import subprocess
import sys

import pytest
import torch

import memc_ops
from memc_ops.reference import warp_valid


def _edge_flows(height: int, width: int) -> torch.Tensor:
    """(1, 2, H, W) flows whose targets sit on, just inside and just outside each border, and whose
    size is just under, at and over half the frame."""
    generator = torch.Generator().manual_seed(0)
    frame = torch.tensor([width, height], dtype=torch.float32).view(1, 2, 1, 1)
    flow = (torch.rand(1, 2, height, width, generator=generator) - 0.5) * frame * 1.2
    xs = torch.arange(width, dtype=torch.float32)
    flow[0, 0, 0] = -xs                        # onto x' = 0
    flow[0, 0, 1] = -xs - 1e-3                 # just left of the frame
    flow[0, 0, 2] = (width - 1) - xs           # onto x' = W - 1
    flow[0, 0, 3] = (width - 1) - xs + 1e-3    # just right of it
    flow[0, 0, 4, :] = width / 2               # |f_x| = W / 2: not under half the frame
    flow[0, 0, 5, :] = -(width / 2 - 0.25)
    flow[0, 1, 6, :] = height / 2
    flow[0, 1, 7, :] = float("nan")
    return flow


@pytest.mark.parametrize("height,width", [(9, 16), (12, 7)])
def test_adaptive_warp_copies_the_input_exactly_where_warp_valid_is_false(height, width, device):
    flow = _edge_flows(height, width).to(device)
    image = torch.rand(1, 3, height, width, device=device) + 1  # never 0: a zero kernel's output tells the two apart
    zero_kernel = torch.zeros(1, 16, height, width, device=device)
    valid = warp_valid(flow).unsqueeze(1).expand_as(image)
    warped = memc_ops.adaptive_warp(image, flow, zero_kernel)
    assert torch.equal(warped, torch.where(valid, torch.zeros_like(image), image))
    assert 0 < valid[:, 0].sum() < height * width  # both kinds of pixel occur


@pytest.mark.parametrize("height,width", [(9, 16), (12, 7)])
def test_bicubic_warp_copies_the_input_where_warp_valid_is_false(height, width, device):
    flow = _edge_flows(height, width).to(device)
    image = torch.rand(1, 2, height, width, device=device)
    invalid = ~warp_valid(flow).unsqueeze(1).expand_as(image)
    warped = memc_ops.bicubic_warp(image, flow)
    assert torch.equal(warped[invalid], image[invalid])
    assert invalid.any() and not invalid.all()


def test_the_reference_is_reachable_after_import_memc_ops_alone():
    # In a fresh interpreter: this one has imported memc_ops.reference explicitly above.
    program = "import memc_ops, torch; print(memc_ops.reference.warp_valid(torch.zeros(1, 2, 3, 4)).all().item())"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
