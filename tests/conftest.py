"""Shared test set-up: every device test runs on the CPU, and on CUDA when a GPU is present."""

import pytest
import torch

import memc_ops

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda" and not memc_ops.cuda_kernels_built():
        pytest.fail("a GPU is present but memc_ops was built without CUDA kernels (rebuild with MEMC_OPS_CUDA=1)")
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
