"""Shared test set-up: every device test runs on the CPU, and on CUDA when a GPU is present; the
Vimeo90K-style data the training tests share."""

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


@pytest.fixture
def vimeo(tmp_path):
    """A Vimeo90K-style root: sequences/00001/0001, 00001/0002 (train), 00002/0001 (test)."""
    from helpers import write_triplet

    root = tmp_path / "vimeo_triplet"
    for seed, name in enumerate(("00001/0001", "00001/0002", "00002/0001")):
        write_triplet(root / "sequences" / name, seed)
    (root / "tri_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    (root / "tri_testlist.txt").write_text("00002/0001\n")
    return str(root)


@pytest.fixture(scope="module")
def models():
    """One model per released variant name for the module, loaded from a random released-layout
    checkpoint, in eval mode. Tests that change a model's mode or gradients restore them."""
    from helpers import random_original_state_dict
    from memc_models import load_original_checkpoint

    cache = {}

    def get(variant):
        if variant not in cache:
            cache[variant] = load_original_checkpoint(random_original_state_dict(variant), variant)
        return cache[variant]

    return get


@pytest.fixture
def vimeo_septuplet(tmp_path):
    """A Vimeo90K septuplet root: sequences/00001/0001, 00001/0002 (train), 00002/0001 (test);
    frame n of septuplet s is a flat grey of level 20 + s + 10 n (see helpers.write_septuplet)."""
    from helpers import write_septuplet

    root = tmp_path / "vimeo_septuplet"
    for number, name in enumerate(("00001/0001", "00001/0002", "00002/0001")):
        write_septuplet(root / "sequences" / name, base=20 + number)
    (root / "sep_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    (root / "sep_testlist.txt").write_text("00002/0001\n")
    return str(root)
