"""Tests for memc_models.septuplets: Vimeo90K septuplets as samples at time t = (j - i) / (k - i)."""

import os
from fractions import Fraction

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from memc_models.io import UserError
from memc_models.septuplets import FRAME_TRIPLES, VimeoSeptuplets, septuplet_folders, triple_time

HEIGHT, WIDTH = 12, 16


def _write_septuplet(folder, base):
    """im1 .. im7, frame n a flat grey of level base + 10 n (so a frame tells which it is), with
    one bright pixel in the top-left corner (so flips show)."""
    os.makedirs(folder, exist_ok=True)
    for n in range(7):
        image = np.full((HEIGHT, WIDTH, 3), base + 10 * n, dtype=np.uint8)
        image[0, 0] = 255
        iio.imwrite(os.path.join(folder, f"im{n + 1}.png"), image)


@pytest.fixture
def vimeo_septuplet(tmp_path):
    """sequences/00001/0001, 00001/0002 (train) and 00002/0001 (test), with the lists."""
    root = tmp_path / "vimeo_septuplet"
    for number, name in enumerate(("00001/0001", "00001/0002", "00002/0001")):
        _write_septuplet(root / "sequences" / name, base=20 + number)
    (root / "sep_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    (root / "sep_testlist.txt").write_text("00002/0001\n")
    return str(root)


def _frame_number(frame, base):
    """Which frame of the septuplet a (3, H, W) tensor is, from its grey level."""
    level = round(float(frame[:, -2, -2].mean()) * 255)  # away from the bright corner, whichever it is
    assert (level - base) % 10 == 0
    return (level - base) // 10


def test_the_35_triples_and_their_times():
    assert len(FRAME_TRIPLES) == 35 and len(set(FRAME_TRIPLES)) == 35
    assert all(0 <= i < j < k <= 6 for i, j, k in FRAME_TRIPLES)
    assert triple_time((0, 3, 6)) == 0.5 and triple_time((1, 2, 5)) == 0.25 and triple_time((0, 5, 6)) == 5 / 6
    times = {Fraction(j - i, k - i) for i, j, k in FRAME_TRIPLES}
    assert times == {Fraction(a, b) for b in range(2, 7) for a in range(1, b)}
    with pytest.raises(ValueError, match="i < j < k"):
        triple_time((2, 2, 4))


def test_lists_and_folders(vimeo_septuplet, tmp_path):
    training, from_list = septuplet_folders(vimeo_septuplet, "train")
    assert from_list and [os.path.relpath(f, vimeo_septuplet) for f in training] == [
        os.path.join("sequences", "00001", "0001"), os.path.join("sequences", "00001", "0002")]
    assert len(septuplet_folders(vimeo_septuplet, "test")[0]) == 1
    # Without lists: every septuplet folder, and validation on the training ones.
    plain = tmp_path / "plain"
    _write_septuplet(plain / "a", 20)
    _write_septuplet(plain / "b", 20)
    os.remove(plain / "b" / "im7.png")  # not a septuplet
    assert septuplet_folders(str(plain), "train") == ([str(plain / "a")], False)
    assert septuplet_folders(str(plain), "test") == ([str(plain / "a")], False)
    # A listed folder that lacks a frame is an error naming it.
    os.remove(os.path.join(vimeo_septuplet, "sequences", "00001", "0002", "im5.png"))
    with pytest.raises(UserError, match=r"sep_trainlist.txt lists 1 folder\(s\) without im1.png .. im7.png, e.g. .*0002"):
        septuplet_folders(vimeo_septuplet, "train")
    with pytest.raises(UserError, match="no Vimeo90K septuplets"):
        septuplet_folders(str(tmp_path / "vimeo_septuplet" / "sequences" / "00001" / "0002"), "train")


def test_validation_samples_are_fixed_triples_with_their_time(vimeo_septuplet):
    dataset = VimeoSeptuplets(vimeo_septuplet, "train")
    assert len(dataset) == 2
    for index in range(2):
        frame0, middle, frame1, t = dataset[index]
        i, j, k = FRAME_TRIPLES[index]
        base = 20 + index
        assert [_frame_number(f, base) for f in (frame0, middle, frame1)] == [i, j, k]
        assert t.dtype == torch.float32 and float(t) == pytest.approx((j - i) / (k - i))
        assert frame0.shape == (3, HEIGHT, WIDTH) and float(frame0[0, 0, 0]) == 1.0  # not flipped
    assert [float(x) for x in dataset[1][3:]] == [float(x) for x in dataset[1][3:]]  # the same every time


def test_training_samples_draw_every_triple_and_keep_t_with_the_frames(vimeo_septuplet):
    torch.manual_seed(0)
    dataset = VimeoSeptuplets(vimeo_septuplet, "train", crop=(8, 8), augment=True)
    seen, swapped, flipped = set(), 0, 0
    for _ in range(400):
        frame0, middle, frame1, t = dataset[0]
        a, b, c = (_frame_number(f, 20) for f in (frame0, middle, frame1))
        assert frame0.shape == (3, 8, 8)
        # t is where the middle frame lies between the other two, whichever way round they come.
        assert float(t) == pytest.approx((b - a) / (c - a))
        swapped += a > c
        seen.add(tuple(sorted((a, b, c))))
    assert seen == set(FRAME_TRIPLES)
    assert 120 < swapped < 280  # the temporal swap, about half the time
    # Flips move the bright corner pixel, in all three frames alike.
    full = VimeoSeptuplets(vimeo_septuplet, "train", augment=True)
    corners = set()
    for _ in range(40):
        frames = torch.stack(full[0][:3])
        corner = tuple(int(x) for x in (frames[0, 0] == 1.0).nonzero()[0])
        assert bool((frames[:, :, corner[0], corner[1]] == 1.0).all())
        corners.add(corner)
    assert corners == {(0, 0), (0, WIDTH - 1), (HEIGHT - 1, 0), (HEIGHT - 1, WIDTH - 1)}


def test_bad_crops_are_refused(vimeo_septuplet):
    with pytest.raises(UserError, match=r"--crop 13 8 is larger than the frames of .* \(12x16, H x W\)"):
        VimeoSeptuplets(vimeo_septuplet, "train", crop=(13, 8))
    with pytest.raises(UserError, match="--crop must be two positive sizes"):
        VimeoSeptuplets(vimeo_septuplet, "train", crop=(0, 8))
