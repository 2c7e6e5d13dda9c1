"""Datasets (memc_models.datasets): Vimeo90K triplets for training (lists, crops, augmentation),
the Middlebury and Vimeo90K test finders and the sequences they cannot use, frames of a video."""

import os
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from helpers import (SEPTUPLET_HEIGHT, SEPTUPLET_WIDTH, SHIFT, TRIPLET_HEIGHT as HEIGHT, TRIPLET_WIDTH as WIDTH, iio,
                     write_septuplet, write_triplet)
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


# ---------------------------------------------------------------------------------------------- septuplets


def _frame_number(frame, base):
    """Which frame of the septuplet a (3, H, W) tensor is, from its grey level."""
    level = round(float(frame[:, -2, -2].mean()) * 255)  # away from the bright corner, whichever it is
    assert (level - base) % 10 == 0
    return (level - base) // 10


def test_septuplets_the_35_triples_and_their_times():
    assert len(datasets.FRAME_TRIPLES) == 35 and len(set(datasets.FRAME_TRIPLES)) == 35
    assert all(0 <= i < j < k <= 6 for i, j, k in datasets.FRAME_TRIPLES)
    assert datasets.triple_time((0, 3, 6)) == 0.5 and datasets.triple_time((1, 2, 5)) == 0.25 and datasets.triple_time((0, 5, 6)) == 5 / 6
    times = {Fraction(j - i, k - i) for i, j, k in datasets.FRAME_TRIPLES}
    assert times == {Fraction(a, b) for b in range(2, 7) for a in range(1, b)}
    with pytest.raises(ValueError, match="i < j < k"):
        datasets.triple_time((2, 2, 4))


def test_septuplet_lists_and_folders(vimeo_septuplet, tmp_path):
    training, from_list = datasets.septuplet_folders(vimeo_septuplet, "train")
    assert from_list and [os.path.relpath(f, vimeo_septuplet) for f in training] == [
        os.path.join("sequences", "00001", "0001"), os.path.join("sequences", "00001", "0002")]
    assert len(datasets.septuplet_folders(vimeo_septuplet, "test")[0]) == 1
    # Without lists: every septuplet folder, and validation on the training ones.
    plain = tmp_path / "plain"
    write_septuplet(plain / "a", 20)
    write_septuplet(plain / "b", 20)
    os.remove(plain / "b" / "im7.png")  # not a septuplet
    assert datasets.septuplet_folders(str(plain), "train") == ([str(plain / "a")], False)
    assert datasets.septuplet_folders(str(plain), "test") == ([str(plain / "a")], False)
    # A listed folder that lacks a frame is an error naming it.
    os.remove(os.path.join(vimeo_septuplet, "sequences", "00001", "0002", "im5.png"))
    with pytest.raises(UserError, match=r"sep_trainlist.txt lists 1 folder\(s\) without im1.png .. im7.png, e.g. .*0002"):
        datasets.septuplet_folders(vimeo_septuplet, "train")
    with pytest.raises(UserError, match="no Vimeo90K septuplets"):
        datasets.septuplet_folders(str(tmp_path / "vimeo_septuplet" / "sequences" / "00001" / "0002"), "train")


def test_validation_samples_are_fixed_triples_with_their_time(vimeo_septuplet):
    dataset = datasets.VimeoSeptuplets(vimeo_septuplet, "train")
    assert len(dataset) == 2
    for index in range(2):
        frame0, middle, frame1, t = dataset[index]
        i, j, k = datasets.FRAME_TRIPLES[index]
        base = 20 + index
        assert [_frame_number(f, base) for f in (frame0, middle, frame1)] == [i, j, k]
        assert t.dtype == torch.float32 and float(t) == pytest.approx((j - i) / (k - i))
        assert frame0.shape == (3, SEPTUPLET_HEIGHT, SEPTUPLET_WIDTH) and float(frame0[0, 0, 0]) == 1.0  # not flipped
    assert [float(x) for x in dataset[1][3:]] == [float(x) for x in dataset[1][3:]]  # the same every time


def test_training_samples_draw_every_triple_and_keep_t_with_the_frames(vimeo_septuplet):
    torch.manual_seed(0)
    dataset = datasets.VimeoSeptuplets(vimeo_septuplet, "train", crop=(8, 8), augment=True)
    seen, swapped, flipped = set(), 0, 0
    for _ in range(400):
        frame0, middle, frame1, t = dataset[0]
        a, b, c = (_frame_number(f, 20) for f in (frame0, middle, frame1))
        assert frame0.shape == (3, 8, 8)
        # t is where the middle frame lies between the other two, whichever way round they come.
        assert float(t) == pytest.approx((b - a) / (c - a))
        swapped += a > c
        seen.add(tuple(sorted((a, b, c))))
    assert seen == set(datasets.FRAME_TRIPLES)
    assert 120 < swapped < 280  # the temporal swap, about half the time
    # Flips move the bright corner pixel, in all three frames alike.
    full = datasets.VimeoSeptuplets(vimeo_septuplet, "train", augment=True)
    corners = set()
    for _ in range(40):
        frames = torch.stack(full[0][:3])
        corner = tuple(int(x) for x in (frames[0, 0] == 1.0).nonzero()[0])
        assert bool((frames[:, :, corner[0], corner[1]] == 1.0).all())
        corners.add(corner)
    assert corners == {(0, 0), (0, SEPTUPLET_WIDTH - 1), (SEPTUPLET_HEIGHT - 1, 0), (SEPTUPLET_HEIGHT - 1, SEPTUPLET_WIDTH - 1)}


def test_septuplet_crops_that_do_not_fit_are_refused(vimeo_septuplet):
    with pytest.raises(UserError, match=r"--crop 13 8 is larger than the frames of .* \(12x16, H x W\)"):
        datasets.VimeoSeptuplets(vimeo_septuplet, "train", crop=(13, 8))
    with pytest.raises(UserError, match="--crop must be two positive sizes"):
        datasets.VimeoSeptuplets(vimeo_septuplet, "train", crop=(0, 8))


# ---------------------------------------------------------------------------------------------- both kinds

# What VimeoTriplets and VimeoSeptuplets share: the dataset class, its root fixture, the first
# frame's name and the frames' (H, W).
KINDS = {"triplets": (datasets.VimeoTriplets, "vimeo", "im1.png", (HEIGHT, WIDTH)),
         "septuplets": (datasets.VimeoSeptuplets, "vimeo_septuplet", "im1.png", (SEPTUPLET_HEIGHT, SEPTUPLET_WIDTH))}


@pytest.fixture(params=list(KINDS))
def kind(request):
    """(dataset class, its Vimeo90K root, the first frame's name, (H, W)) for each kind."""
    dataset, fixture, first, size = KINDS[request.param]
    return dataset, request.getfixturevalue(fixture), first, size


def test_limit_keeps_the_first_folders_of_the_list(kind):
    dataset, root, _, size = kind
    whole, limited = dataset(root, "train"), dataset(root, "train", limit=1)
    assert len(whole) == 2 and len(limited) == 1 and limited.folders == whole.folders[:1]
    assert limited.frame_size(0) == size


def test_a_crop_larger_than_the_frames_is_refused_naming_the_folder(kind):
    dataset, root, _, (height, width) = kind
    with pytest.raises(UserError, match=rf"--crop {height + 1} {width} is larger than the frames of .*0001 "
                                        rf"\({height}x{width}, H x W\)"):
        dataset(root, "train", crop=(height + 1, width))
    assert dataset(root, "train", crop=(height, width)).crop == (height, width)


def test_check_files_names_a_missing_and_a_damaged_frame(kind):
    dataset, root, first, _ = kind
    samples = dataset(root, "train")
    samples.check_files()  # all there: no error
    os.remove(os.path.join(samples.folders[0], first))
    with open(os.path.join(samples.folders[1], first), "wb") as handle:
        handle.write(b"not an image")
    with pytest.raises(UserError, match=r"2 input file\(s\) cannot be used: .*0001.im1.png: no such file; "
                                        r".*0002.im1.png: not a readable image"):
        samples.check_files()


def test_frames_that_differ_in_size_are_an_error_naming_the_folder(kind):
    dataset, root, _, (height, width) = kind
    samples = dataset(root, "train")
    folder = samples.folders[0]
    for name in os.listdir(folder):
        if name != "im1.png":
            iio.imwrite(os.path.join(folder, name), np.zeros((height + 2, width, 3), dtype=np.uint8))
    with pytest.raises(UserError, match=rf"{re.escape(folder)}: the three frames differ in size: "):
        samples[0]
