"""Datasets (memc_models.datasets): Vimeo90K triplets for training (lists, crops, augmentation),
the Middlebury and Vimeo90K test finders and the sequences they cannot use, frames of a video."""

import os

import numpy as np
import pytest
import torch

from helpers import SHIFT, TRIPLET_HEIGHT as HEIGHT, TRIPLET_WIDTH as WIDTH, iio, write_triplet
from memc_models import datasets
from memc_models.errors import UserError


def _raw(folder):
    return torch.stack([torch.from_numpy(iio.imread(os.path.join(folder, f"im{k}.png"))).permute(2, 0, 1).float() / 255
                        for k in (1, 2, 3)])


def test_dataset_reads_the_lists_and_returns_the_frames(vimeo):
    training = datasets.VimeoTriplets(vimeo, "train")
    testing = datasets.VimeoTriplets(vimeo, "test")
    assert len(training) == 2 and len(testing) == 1
    assert training.from_list and testing.from_list
    assert testing.folders[0].endswith(os.path.join("00002", "0001"))
    frame0, middle, frame1 = training[1]
    for frame in (frame0, middle, frame1):
        assert frame.shape == (3, HEIGHT, WIDTH) and frame.dtype == torch.float32
    raw = _raw(training.folders[1])
    assert torch.equal(torch.stack((frame0, middle, frame1)), raw)
    # The known motion: im3 is im1 moved by twice SHIFT.
    dy, dx = 2 * SHIFT[0], 2 * SHIFT[1]
    assert torch.equal(frame1[:, dy:, dx:], frame0[:, :-dy, :-dx])


def test_plain_folder_without_lists(tmp_path):
    for seed, name in enumerate(("a", "b/c")):
        write_triplet(tmp_path / name, seed)
    (tmp_path / "not_a_triplet").mkdir()
    folders, from_list = datasets.triplet_folders(str(tmp_path), "train")
    assert not from_list
    assert sorted(os.path.relpath(f, tmp_path) for f in folders) == ["a", os.path.join("b", "c")]
    # Without a test list, validation uses the training triplets.
    assert datasets.triplet_folders(str(tmp_path), "test") == (folders, False)


def test_centred_crop_without_augmentation(vimeo):
    dataset = datasets.VimeoTriplets(vimeo, "test", crop=(16, 32))
    raw = _raw(dataset.folders[0])
    assert torch.equal(torch.stack(dataset[0]), raw[..., 8:24, 16:48])


def test_augment_triplet_swaps_and_flips_all_frames():
    frames = torch.arange(3 * 2 * 4 * 5, dtype=torch.float32).reshape(3, 2, 4, 5)
    swapped = datasets.augment_triplet(frames, False, False, True)
    assert torch.equal(swapped[0], frames[2]) and torch.equal(swapped[1], frames[1]) and torch.equal(swapped[2], frames[0])
    hflipped = datasets.augment_triplet(frames, True, False, False)
    vflipped = datasets.augment_triplet(frames, False, True, False)
    for k in range(3):
        assert torch.equal(hflipped[k], frames[k].flip(-1))
        assert torch.equal(vflipped[k], frames[k].flip(-2))


def test_augmented_crops_keep_the_frames_in_correspondence(vimeo):
    """Every augmented sample is one window, at one place, of one flip/swap of the triplet; over
    many draws every flip and the swap occur both ways."""
    crop = (16, 24)
    dataset = datasets.VimeoTriplets(vimeo, "train", crop=crop, augment=True)
    raw = _raw(dataset.folders[0]).numpy()
    seen = set()
    for _ in range(32):
        sample = torch.stack(dataset[0]).numpy()
        assert sample.shape == (3, 3) + crop
        matches = []
        for hflip in (False, True):
            for vflip in (False, True):
                for swap in (False, True):
                    moved = datasets.augment_triplet(torch.from_numpy(raw), hflip, vflip, swap).numpy()
                    windows = np.lib.stride_tricks.sliding_window_view(moved, crop, axis=(2, 3))  # (3, 3, y, x, h, w)
                    found = (windows == sample[:, :, None, None]).all(axis=(0, 1, 4, 5))
                    if found.any():
                        matches.append((hflip, vflip, swap))
        assert len(matches) == 1, "the three frames must come from one window of one transformed triplet"
        seen.add(matches[0])
    for position in range(3):
        assert {m[position] for m in seen} == {False, True}
